"""Write the next schema revision (for developers; operators run `nanofleet server migrate`).

::

    python -m fleet_server.migrations new "add device metrics"

builds a scratch SQLite database at the newest revision, compares it with the models
(:mod:`fleet_server.schema`), and writes ``versions/NNNN_add_device_metrics.py`` with
the differences as ``op.*`` steps. Read and complete it (autogenerate cannot see
renames or data moves), then run ``tests/test_migrations.py``.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from alembic import command

from fleet_server import migrations
from fleet_server.db import Database


def next_revision_id() -> str:
    numbers = [int(rev.revision) for rev in migrations.scripts().walk_revisions()
               if re.fullmatch(r"\d{4}", rev.revision)]
    return f"{max(numbers, default=0) + 1:04d}"


def new_revision(message: str) -> Path:
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite:///{Path(scratch) / 'head.db'}")
        try:
            migrations.upgrade(db)
            rev_id = next_revision_id()
            with db.engine.begin() as conn:
                script = command.revision(migrations.alembic_config(conn), message,
                                          autogenerate=True, rev_id=rev_id)
        finally:
            db.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet_server.migrations",
                                     description="Write the next schema revision.")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="write versions/NNNN_<message>.py from the models")
    new.add_argument("message", help="what the revision does, e.g. 'add device metrics'")
    args = parser.parse_args(argv)
    path = new_revision(args.message)
    print(f"wrote {path}: read it, complete it, then run tests/test_migrations.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
