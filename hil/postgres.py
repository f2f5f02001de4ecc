"""A throwaway PostgreSQL server on a free loopback port (tests and rigs).

Uses the machine's PostgreSQL binaries (``initdb``, ``pg_ctl``). PostgreSQL refuses
to run as root, so as root the cluster belongs to the ``postgres`` user (created by
the Debian package) and commands run through ``runuser``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from hil.broker import free_port, wait_port

_DEBIAN_BIN = Path("/usr/lib/postgresql")


def find_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(_DEBIAN_BIN.glob(f"*/bin/{name}"), reverse=True)
    return str(versions[0]) if versions else None


def available() -> bool:
    return find_binary("initdb") is not None and find_binary("pg_ctl") is not None


class Postgres:
    """``start()`` runs a fresh cluster (trust auth on 127.0.0.1); ``url`` is for SQLAlchemy
    with the psycopg driver; ``stop()`` removes everything."""

    def __init__(self, database: str = "fleet") -> None:
        if not available():
            raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) are not installed")
        self.port = free_port()
        self.database = database
        self.user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
        # Not under pytest's tmp dirs: as root those are 0700 and the postgres user
        # could not enter them.
        self.dir = Path(tempfile.mkdtemp(prefix="nanofleet-pg-"))
        self.data = self.dir / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def new_database(self) -> str:
        """A new, empty database on this cluster (for a test that must not share rows or
        leases with another); its SQLAlchemy URL."""
        from sqlalchemy import create_engine, text

        name = f"t_{uuid.uuid4().hex[:12]}"
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name}"))
        finally:
            engine.dispose()
        return self.url.rsplit("/", 1)[0] + "/" + name

    def _run(self, *argv: str) -> None:
        cmd = list(argv)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed: {out.stdout}{out.stderr}")

    def start(self) -> Postgres:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
        assert initdb and pg_ctl
        self._run(initdb, "-D", str(self.data), "--auth=trust", "-U", self.user, "-E", "UTF8")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                  "-w", "start")
        wait_port(self.port)
        createdb = find_binary("createdb")
        assert createdb
        self._run(createdb, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                  self.database)
        return self

    def stop(self) -> None:
        pg_ctl = find_binary("pg_ctl")
        if pg_ctl and (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):  # removed below either way
                self._run(pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
