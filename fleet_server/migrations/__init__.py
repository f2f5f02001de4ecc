"""Schema migrations of the fleet server's database (Alembic), shipped in the package.

``nanofleet server run`` upgrades the database to the newest revision before it
serves, and ``nanofleet server migrate`` does only that (for deployments that upgrade
first, then start replicas). Revisions live in ``versions/``, numbered ``0001``,
``0002``, ...; each names the one before it. ``0001`` is the baseline: the schema
as ``create_all`` made it before migrations existed, so a database of that time is
adopted (its missing tables created, the revision recorded) and upgraded like any
other. docs/fleet-server.md says how to write the next revision.

A database upgraded by a newer nanofleet has a revision this code does not know:
:class:`SchemaTooNew` says so and nothing is touched (there is no automatic
downgrade; the newer version or a backup is the way back).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url

from fleet_server.db import Database

log = logging.getLogger("nanofleet.server.migrations")
MIGRATIONS_DIR = Path(__file__).resolve().parent
BASELINE = "0001"
# PostgreSQL advisory lock held while migrating: replicas starting together take turns.
_PG_LOCK_KEY = zlib.crc32(b"nanofleet-schema-migrations")


class SchemaTooNew(RuntimeError):
    """The database was upgraded by a newer nanofleet than this one."""


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did: revisions before and after (None: no schema yet)."""

    before: str | None
    after: str
    adopted: bool  # a database made by create_all before migrations existed

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code (there is no alembic.ini to ship)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = scripts().get_current_head()
    if head is None:  # only a broken checkout has no revisions
        raise RuntimeError(f"no migrations in {MIGRATIONS_DIR / 'versions'}")
    return head


def current_revision(db: Database) -> str | None:
    """The revision recorded in the database (None: never migrated)."""
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _display(db: Database) -> str:
    return make_url(db.url).render_as_string(hide_password=True)


def check_known(db: Database, revision: str | None) -> None:
    """Raise :class:`SchemaTooNew` when ``revision`` is not one of ours."""
    if revision is None:
        return
    known = {rev.revision for rev in scripts().walk_revisions()}
    if revision not in known:
        raise SchemaTooNew(
            f"the database {_display(db)} has schema revision {revision!r}, which this "
            f"nanofleet does not know (its newest is {head_revision()!r}): a newer nanofleet "
            "upgraded it. Run that newer version, or restore the database backup taken "
            "before the upgrade; nanofleet does not downgrade a database by itself.")


def upgrade(db: Database) -> Upgrade:
    """Bring the database to the newest revision, in one transaction where the database
    allows it (PostgreSQL; SQLite commits each table change by itself)."""
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        before = MigrationContext.configure(conn).get_current_revision()
        check_known(db, before)
        adopted = before is None and conn.dialect.has_table(conn, "devices")
        command.upgrade(alembic_config(conn), "head")
        after = MigrationContext.configure(conn).get_current_revision()
    assert after is not None
    return Upgrade(before, after, adopted)


def upgrade_logged(db: Database) -> Upgrade:
    """:func:`upgrade`, saying in the server's log what changed (nothing when current)."""
    result = upgrade(db)
    if result.adopted:
        log.info("database %s: made before migrations; adopted as revision %s",
                 _display(db), BASELINE)
    if result.changed:
        log.info("database %s: schema upgraded from %s to %s", _display(db),
                 result.before or "empty", result.after)
    return result
