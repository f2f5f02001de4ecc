"""Rollout tables and their conversion to and from the policy's plain records.

``rollouts`` holds the spec and the progress of each rollout (optimistic locking:
``row_version`` makes a driver tick that raced an operator's pause/abort fail
instead of overwriting it); ``rollout_devices`` holds every device's record in a
rollout; ``server_leases`` elects the one server replica that drives rollouts.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String, Text, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from fleet_server.db import Base
from fleet_server.rollouts.records import (
    ACTIVE_STATUSES,
    DeviceProgress,
    DeviceState,
    Progress,
    RolloutStatus,
)
from fleet_server.rollouts.spec import Selector, Strategy

LOG_KEEP = 300  # rollout log lines kept in the row


class RolloutRow(Base):
    __tablename__ = "rollouts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    slot: Mapped[str] = mapped_column(String(32))
    selector: Mapped[dict[str, Any]] = mapped_column(JSON)
    strategy: Mapped[dict[str, Any]] = mapped_column(JSON)
    stage_names: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)
    stage: Mapped[int] = mapped_column(Integer, default=-1)
    stage_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    stage_settled_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    halt_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    halt_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    failure_baseline: Mapped[int] = mapped_column(Integer, default=0)
    outcome_baseline: Mapped[int] = mapped_column(Integer, default=0)
    accepted_stage: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[float] = mapped_column(Float, default=time.time)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    log: Mapped[list[list[Any]]] = mapped_column(JSON, default=list,
                                                 doc="[unix time, text], newest last")
    row_version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": row_version}


class RolloutDeviceRow(Base):
    __tablename__ = "rollout_devices"

    rollout_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    stage: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    notified_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    changed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    retry_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_event_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_event_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    from_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rollback_sent: Mapped[bool] = mapped_column(Boolean, default=False)


class ServerLease(Base):
    """A named lease one server replica holds at a time (``rollout-driver``)."""

    __tablename__ = "server_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    until: Mapped[float] = mapped_column(Float)


# --- conversions -----------------------------------------------------------------------------

def strategy_of(row: RolloutRow) -> Strategy:
    return Strategy.model_validate(row.strategy)


def selector_of(row: RolloutRow) -> Selector:
    return Selector.model_validate(row.selector)


def progress_of(row: RolloutRow) -> Progress:
    status: RolloutStatus = row.status  # type: ignore[assignment]
    return Progress(status=status, stage=row.stage, stage_started_at=row.stage_started_at,
                    stage_settled_at=row.stage_settled_at, halt_reason=row.halt_reason,
                    halt_detail=row.halt_detail, failure_baseline=row.failure_baseline,
                    outcome_baseline=row.outcome_baseline, accepted_stage=row.accepted_stage)


def store_progress(row: RolloutRow, progress: Progress, now: float) -> None:
    changed = progress != progress_of(row)
    row.status = progress.status
    row.stage = progress.stage
    row.stage_started_at = progress.stage_started_at
    row.stage_settled_at = progress.stage_settled_at
    row.halt_reason = progress.halt_reason
    row.halt_detail = progress.halt_detail
    row.failure_baseline = progress.failure_baseline
    row.outcome_baseline = progress.outcome_baseline
    row.accepted_stage = progress.accepted_stage
    if changed:
        row.updated_at = now
    if progress.status not in ACTIVE_STATUSES and row.finished_at is None:
        row.finished_at = now


def append_log(row: RolloutRow, lines: list[str] | tuple[str, ...], now: float) -> None:
    if lines:
        row.log = [*row.log, *[[now, line] for line in lines]][-LOG_KEEP:]


def device_of(row: RolloutDeviceRow) -> DeviceProgress:
    state: DeviceState = row.state  # type: ignore[assignment]
    return DeviceProgress(device_id=row.device_id, stage=row.stage, state=state,
                          reason=row.reason, detail=row.detail, attempts=row.attempts,
                          notified_at=row.notified_at, changed_at=row.changed_at,
                          retry_at=row.retry_at)


def store_device(row: RolloutDeviceRow, dev: DeviceProgress) -> None:
    row.stage = dev.stage
    row.state = dev.state
    row.reason = dev.reason
    row.detail = dev.detail
    row.attempts = dev.attempts
    row.notified_at = dev.notified_at
    row.changed_at = dev.changed_at
    row.retry_at = dev.retry_at


def device_rows(session: Session, rollout_id: str) -> list[RolloutDeviceRow]:
    return list(session.scalars(select(RolloutDeviceRow).where(
        RolloutDeviceRow.rollout_id == rollout_id).order_by(RolloutDeviceRow.device_id)))


def active_rollout_ids(session: Session) -> list[str]:
    return list(session.scalars(select(RolloutRow.id).where(
        RolloutRow.status.in_(sorted(ACTIVE_STATUSES))).order_by(RolloutRow.created_at)))


def take_lease(session: Session, name: str, owner: str, now: float, ttl: float) -> bool:
    """Hold (or renew) the lease ``name`` for ``ttl`` seconds; False if another owner
    holds an unexpired one."""
    won = session.execute(update(ServerLease).where(
        ServerLease.name == name,
        (ServerLease.owner == owner) | (ServerLease.until < now)).values(
            owner=owner, until=now + ttl)).rowcount  # type: ignore[attr-defined]
    if won:
        return True
    if session.get(ServerLease, name) is None:
        session.add(ServerLease(name=name, owner=owner, until=now + ttl))
        session.flush()  # a replica inserting at the same time fails on the primary key
        return True
    return False


def release_lease(session: Session, name: str, owner: str) -> None:
    session.execute(update(ServerLease).where(ServerLease.name == name,
                                              ServerLease.owner == owner).values(until=0.0))
