"""The fleet server's database (SQLAlchemy 2.0): releases, devices, desired state, events.

SQLite by default, PostgreSQL through its SQLAlchemy URL: only portable column
types are used (JSON, Float unix times, no database-specific features).

The signed TUF repository on disk is the source of truth for *what is published*;
``model_versions`` and ``delta_artifacts`` are an index of it, rebuilt from the
repository at start (:func:`fleet_server.releases.sync_releases`). Everything
about devices lives only here.

Tables issue 5 builds on: ``devices.group_name``/``tags`` (selection),
``desired_states.rollout_id`` and ``ota_events.rollout_id`` (per-device rollout
progress), ``audit_log`` (who did what, when).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker


class Base(DeclarativeBase):
    pass


class ModelVersion(Base):
    """A full model bundle the operators signed and the server published."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model", "version", name="uq_model_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(64), index=True)
    slot: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(Integer)
    target_path: Mapped[str] = mapped_column(String(255), unique=True)
    targets_version: Mapped[int] = mapped_column(Integer, doc="targets metadata that listed it")
    published_at: Mapped[float] = mapped_column(Float, default=time.time)
    published_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    listed: Mapped[bool] = mapped_column(Boolean, default=True,
                                         doc="still listed in the current targets metadata")
    needs: Mapped[list[str] | None] = mapped_column(
        JSON, nullable=True, doc="manifest features an agent must read to use the bundle "
        "(contract.bundle_features); None: not known yet (read from the bundle at sync)")


class DeltaArtifact(Base):
    """A delta target the server computed and listed in the delegated delta role."""

    __tablename__ = "delta_artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    base_version: Mapped[int] = mapped_column(Integer)
    target_path: Mapped[str] = mapped_column(String(255), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(Integer)
    delta_format: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    listed: Mapped[bool] = mapped_column(Boolean, default=True)


class Device(Base):
    """What the server knows about a device, from its status, metrics and ota reports."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen: Mapped[float] = mapped_column(Float, default=time.time)
    last_seen: Mapped[float | None] = mapped_column(Float, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="unknown",
                                       doc="online / offline / stopped / unknown")
    agent_version: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    health: Mapped[str] = mapped_column(String(16), default="unknown")
    models: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, doc="live models per slot (contract.messages.ModelInfo)")
    last_status_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_status_seq: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="seq of the stored status: orders one agent run's statuses")
    last_status_connection: Mapped[int | None] = mapped_column(
        Integer, nullable=True, doc="the agent's broker connection number of the stored status "
        "or Will: orders a Will against the next connection's statuses")
    online_since: Mapped[float | None] = mapped_column(
        Float, nullable=True, doc="arrival of the status that made it online (None: not online)")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict,
                                                    doc="last counters and gauges")
    last_metrics_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_ota_slot: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_ota_state: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_ota_to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_ota_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_ota_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_ota_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_ota_rollout_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    group_name: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    reads: Mapped[list[str] | None] = mapped_column(
        JSON, nullable=True, doc="bundle manifest features its agent reads, from its latest "
        "status; None: that status did not say (an older agent), or none came yet")


class DesiredStateRow(Base):
    """The retained desired-state document of one device and whether the broker has it."""

    __tablename__ = "desired_states"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    document: Mapped[dict[str, Any]] = mapped_column(JSON, doc="contract.messages.DesiredState")
    updated_at: Mapped[float] = mapped_column(Float, default=time.time)
    published_revision: Mapped[int] = mapped_column(
        Integer, default=0, doc="newest revision the broker acknowledged (retained)")
    rollout_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class OtaEventRow(Base):
    """Every OTA state change a device reported (deduplicated by msg_id)."""

    __tablename__ = "ota_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    msg_id: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    ts: Mapped[float] = mapped_column(Float)
    received_at: Mapped[float] = mapped_column(Float, default=time.time)
    slot: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32))
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    to_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rollout_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    artifact: Mapped[str | None] = mapped_column(String(16), nullable=True)
    bytes_downloaded: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    is_historical: Mapped[bool] = mapped_column(Boolean, default=False)


class AuditEntry(Base):
    """Who did what, when (every state-changing API call)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[float] = mapped_column(Float, default=time.time, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: the MQTT ingest thread writes while API requests read. busy_timeout: two
    # writers wait for each other instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


class Database:
    """Engine plus session factory; ``session()`` is a transaction (commit or roll back)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
