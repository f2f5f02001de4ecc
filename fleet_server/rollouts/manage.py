"""Operator actions on rollouts: create, pause, resume, abort, and the views.

Each action is one transaction that also writes the audit log; the decisions
themselves are pure: stage assignment in :mod:`fleet_server.rollouts.policy`, pause,
resume and abort in :mod:`fleet_server.rollouts.actions`. Abort stages the
rollback documents in the same transaction and publishes them after the commit.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from contract.bundle_features import missing_features
from fleet_server.db import AuditEntry, Database, Device, ModelVersion
from fleet_server.desired import DesiredStates
from fleet_server.rollouts import actions, policy
from fleet_server.rollouts.actions import InvalidOperation
from fleet_server.rollouts.driver import live_view, needs_of
from fleet_server.rollouts.records import ACTIVE_STATUSES
from fleet_server.rollouts.spec import Selector
from fleet_server.rollouts.store import (
    RolloutDeviceRow,
    RolloutRow,
    append_log,
    device_of,
    device_rows,
    progress_of,
    store_device,
    store_progress,
)
from fleet_server.rollouts.views import (
    RolloutActionResult,
    RolloutCreate,
    RolloutView,
    rollout_view,
)


@dataclass
class OperationRefused(Exception):
    """An action the operator must change; ``message`` says how."""

    status: int
    code: str
    message: str

    def __str__(self) -> str:
        return self.message


def select_devices(session: Session, selector: Selector) -> tuple[list[str], set[str]]:
    """(device ids, the online ones). ``ids`` alone may name devices that never
    reported (they catch up when they first connect); with other criteria, ids only
    narrow the inventory's matches."""
    if selector.ids is not None and not (selector.all or selector.group or selector.tags):
        ids = list(dict.fromkeys(selector.ids))
        return ids, set(session.scalars(select(Device.device_id).where(
            Device.device_id.in_(ids), Device.state == "online")))
    query = select(Device)
    if selector.group:
        query = query.where(Device.group_name == selector.group)
    wanted_ids = set(selector.ids) if selector.ids is not None else None
    wanted_tags = set(selector.tags)
    chosen: list[str] = []
    online: set[str] = set()
    for d in session.scalars(query.order_by(Device.device_id)):
        if wanted_ids is not None and d.device_id not in wanted_ids:
            continue
        if not wanted_tags <= set(d.tags or []):
            continue
        chosen.append(d.device_id)
        if d.state == "online":
            online.add(d.device_id)
    return chosen, online


def _published_slot(session: Session, model: str, version: int) -> str:
    row = session.scalars(select(ModelVersion).where(
        ModelVersion.model == model, ModelVersion.version == version,
        ModelVersion.listed)).first()
    if row is None:
        known = sorted(session.scalars(select(ModelVersion.version).where(
            ModelVersion.model == model, ModelVersion.listed)))
        hint = f"published versions of {model}: {known}" if known else \
            f"no model {model!r} is published"
        raise OperationRefused(404, "unknown-version", f"{model} v{version} is not published "
                               f"({hint}); publish it first with nanofleet model publish")
    return row.slot


def _busy_devices(session: Session, ids: list[str]) -> dict[str, str]:
    busy: dict[str, str] = {}
    for i in range(0, len(ids), 900):
        busy.update(session.execute(
            select(RolloutDeviceRow.device_id, RolloutDeviceRow.rollout_id)
            .join(RolloutRow, RolloutRow.id == RolloutDeviceRow.rollout_id)
            .where(RolloutDeviceRow.device_id.in_(ids[i:i + 900]),
                   RolloutRow.status.in_(sorted(ACTIVE_STATUSES)))).all())
    return busy


def _unreadable_note(session: Session, ids: list[str], model: str,
                     version: int) -> list[str]:
    """What the operator should know at once: devices whose agent said it cannot read the
    bundle (the policy skips them when their stage starts, ``cannot-read``)."""
    needs = needs_of(session, model, version)
    if not needs:
        return []
    live = live_view(session, ids, model)
    lacking = [missing_features(needs, live[d].reads) for d in ids if d in live]
    lacking = [lacks for lacks in lacking if lacks]
    if not lacking:
        return []
    per_feature = Counter(f for lacks in lacking for f in lacks)
    return [f"{len(lacking)} of {len(ids)} device(s) will be skipped when their stage starts: "
            "their agent cannot read " + ", ".join(
                f"{f} ({n})" for f, n in sorted(per_feature.items()))
            + " of this bundle; upgrade the agent package first"]


class Rollouts:
    def __init__(self, db: Database, desired: DesiredStates,
                 wake: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.desired = desired
        self.wake = wake

    # --- actions ---------------------------------------------------------------------------
    def create(self, request: RolloutCreate, actor: str) -> RolloutView:
        now = time.time()
        rollout_id = f"r-{secrets.token_hex(4)}"
        with self.db.session() as session:
            slot = _published_slot(session, request.model, request.version)
            ids, online = select_devices(session, request.select)
            if not ids:
                raise OperationRefused(400, "no-devices", f"no device matches "
                                       f"{request.select.describe()} (see nanofleet devices "
                                       "list; tag devices with nanofleet devices tag)")
            busy = _busy_devices(session, ids)
            if busy:
                shown = ", ".join(sorted(busy)[:5]) + (", …" if len(busy) > 5 else "")
                owners = ", ".join(sorted(set(busy.values())))
                raise OperationRefused(409, "devices-busy", f"{len(busy)} selected device(s) "
                                       f"are in active rollout {owners} ({shown}): wait for "
                                       "it to complete, or abort it")
            names, stages = policy.assign_stages(ids, online, request.strategy, rollout_id)
            row = RolloutRow(
                id=rollout_id, model=request.model, version=request.version, slot=slot,
                selector=request.select.model_dump(mode="json"),
                strategy=request.strategy.model_dump(mode="json"), stage_names=names,
                status="running", stage=-1, created_at=now, created_by=actor, updated_at=now,
                failure_baseline=0, outcome_baseline=0, log=[])
            sizes = ", ".join(f"{name}: {sum(1 for s in stages.values() if s == i)}"
                              for i, name in enumerate(names))
            append_log(row, [f"created by {actor}: {request.model} v{request.version} to "
                             f"{len(ids)} device(s) in {len(names)} stage(s) ({sizes})",
                             *_unreadable_note(session, ids, request.model,
                                               request.version)], now)
            session.add(row)
            session.add_all(RolloutDeviceRow(rollout_id=rollout_id, device_id=d, stage=s,
                                             state="pending", attempts=0, rollback_sent=False)
                            for d, s in stages.items())
            session.add(AuditEntry(actor=actor, action="rollout-create", subject=rollout_id,
                                   at=now, detail={"model": request.model,
                                                   "version": request.version,
                                                   "devices": len(ids),
                                                   "select": request.select.describe(),
                                                   "strategy": row.strategy}))
            session.flush()
            view = self._view(session, row, now, with_devices=False)
        self.wake()
        return view

    def pause(self, rollout_id: str, actor: str) -> RolloutActionResult:
        return self._simple(rollout_id, actor, "pause")

    def resume(self, rollout_id: str, actor: str) -> RolloutActionResult:
        return self._simple(rollout_id, actor, "resume")

    def _simple(self, rollout_id: str, actor: str, action: str) -> RolloutActionResult:
        now = time.time()
        with self.db.session() as session:
            row = self._row(session, rollout_id)
            progress = progress_of(row)
            try:
                if action == "pause":
                    new = actions.pause(progress)
                else:
                    devices = [device_of(r) for r in device_rows(session, rollout_id)]
                    new = actions.resume(progress, devices)
            except InvalidOperation as exc:
                raise OperationRefused(409, "invalid-state", f"cannot {action} {rollout_id}: "
                                       f"{exc}") from None
            store_progress(row, new, now)
            row.updated_at = now
            note = "" if progress.status != "halted" else \
                f" (override of the halt: {progress.halt_reason})"
            append_log(row, [f"{action}d by {actor}{note}"], now)
            session.add(AuditEntry(actor=actor, action=f"rollout-{action}", subject=rollout_id,
                                   at=now, detail={"from": progress.status}))
            session.flush()
            view = self._view(session, row, now)
        self.wake()
        return RolloutActionResult(rollout=view)

    def abort(self, rollout_id: str, actor: str) -> RolloutActionResult:
        now = time.time()
        with self.db.session() as session:
            row = self._row(session, rollout_id)
            rows = {r.device_id: r for r in device_rows(session, rollout_id)}
            try:
                progress, changed, rollback = actions.plan_abort(
                    progress_of(row), [device_of(r) for r in rows.values()], now)
            except InvalidOperation as exc:
                raise OperationRefused(409, "invalid-state", f"cannot abort {rollout_id}: "
                                       f"{exc}") from None
            for device_id, dev in changed.items():
                store_device(rows[device_id], dev)
            for device_id in rollback:
                rows[device_id].rollback_sent = True
            store_progress(row, progress, now)
            row.updated_at = now
            append_log(row, [f"aborted by {actor}: rollback sent to {len(rollback)} "
                             f"device(s)"], now)
            if rollback:
                self.desired.stage(session, rollback, slot=row.slot, model=row.model,
                                   version=row.version, rollout_id=rollout_id,
                                   action="rollback")
            session.add(AuditEntry(actor=actor, action="rollout-abort", subject=rollout_id,
                                   at=now, detail={"rollback": rollback}))
            session.flush()
            view = self._view(session, row, now)
        for i in range(0, len(rollback), 1000):
            self.desired.publish(rollback[i:i + 1000])
        return RolloutActionResult(rollout=view, rollback_sent=rollback)

    # --- views -----------------------------------------------------------------------------
    def get(self, rollout_id: str, *, with_devices: bool = False,
            log_lines: int = 50) -> RolloutView:
        with self.db.session() as session:
            row = self._row(session, rollout_id)
            return self._view(session, row, time.time(), with_devices=with_devices,
                              log_lines=log_lines)

    def list(self, status: str | None = None, limit: int = 50) -> list[RolloutView]:
        now = time.time()
        with self.db.session() as session:
            query = select(RolloutRow).order_by(RolloutRow.created_at.desc()).limit(limit)
            if status is not None:
                query = query.where(RolloutRow.status == status)
            return [self._view(session, r, now, log_lines=0) for r in session.scalars(query)]

    def _row(self, session: Session, rollout_id: str) -> RolloutRow:
        row = session.get(RolloutRow, rollout_id)
        if row is None:
            raise OperationRefused(404, "unknown-rollout", f"no rollout {rollout_id!r} (see "
                                   "nanofleet rollout list)")
        return row

    def _view(self, session: Session, row: RolloutRow, now: float, *,
              with_devices: bool = True, log_lines: int = 50) -> RolloutView:
        rows = device_rows(session, row.id)
        live = live_view(session, [r.device_id for r in rows], row.model)
        return rollout_view(row, rows, live, now, with_devices=with_devices,
                            log_lines=log_lines)
