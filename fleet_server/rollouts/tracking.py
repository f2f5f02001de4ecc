"""Device OTA reports moving rollout records on (inside the ingest transaction).

An :class:`~contract.messages.OtaEvent` carries the ``rollout_id`` of the desired
state the device is working on. :func:`apply_event` (pure) decides what it means for
the device's record in that rollout; :func:`track_reports` applies a batch of
reports to the database.

Order: events are applied only if newer than the last one applied, by the device's
own (timestamp, sequence number). Comparing device times with device times keeps
clock skew between device and server out of it; a spool replay after an outage or
an at-least-once duplicate never undoes newer news.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from contract.messages import OtaEvent
from fleet_server.inventory import Report
from fleet_server.rollouts.records import DeviceProgress, DeviceState
from fleet_server.rollouts.store import RolloutDeviceRow, RolloutRow, device_of, store_device

_AGENT_TO_ROLLOUT: dict[str, DeviceState] = {
    "downloading": "downloading", "verifying": "verifying", "staged": "staged",
    "smoke_testing": "smoke_testing", "trial": "trial", "committed": "committed",
    "failed": "failed", "rolled_back": "rolled_back"}


@dataclass(frozen=True)
class EventKey:
    ts: float
    seq: int


def apply_event(dev: DeviceProgress, last: EventKey | None, event: OtaEvent,
                target_version: int, received_at: float) -> DeviceProgress | None:
    """The record after ``event``, or None when the event does not change it (older than
    the last one applied, not about this rollout's version, or ``idle``)."""
    state = _AGENT_TO_ROLLOUT.get(event.state)
    if state is None:
        return None
    if event.to_version is not None and event.to_version != target_version:
        return None
    if last is not None and (event.ts, event.seq) <= (last.ts, last.seq):
        return None
    return replace(dev, state=state, reason=event.reason,
                   detail=(event.detail or "")[:2000] or None, changed_at=received_at,
                   retry_at=None)


def track_reports(session: Session, reports: Sequence[Report]) -> int:
    """Apply the OTA events among ``reports`` to their rollouts; returns records changed."""
    events = [(r.message, r.message.rollout_id, r.received_at) for r in reports
              if isinstance(r.message, OtaEvent) and r.message.rollout_id]
    if not events:
        return 0
    keys = {(rid, e.device_id) for e, rid, _ in events}
    # Locked (in key order) for the transaction: another replica applying the same
    # device's next event waits, then sees this one, instead of overwriting it with a
    # decision taken on a stale record.
    rows = {(r.rollout_id, r.device_id): r for r in session.scalars(
        select(RolloutDeviceRow).where(
            tuple_(RolloutDeviceRow.rollout_id, RolloutDeviceRow.device_id).in_(sorted(keys)))
        .order_by(RolloutDeviceRow.rollout_id, RolloutDeviceRow.device_id).with_for_update())}
    if not rows:
        return 0
    versions = dict(session.execute(select(RolloutRow.id, RolloutRow.version).where(
        RolloutRow.id.in_({k[0] for k in rows}))).all())
    changed = 0
    for event, rollout_id, received_at in events:
        row = rows.get((rollout_id, event.device_id))
        if row is None:
            continue
        last = None if row.last_event_ts is None else EventKey(row.last_event_ts,
                                                               row.last_event_seq or 0)
        new = apply_event(device_of(row), last, event, versions[row.rollout_id], received_at)
        if new is None:
            continue
        store_device(row, new)
        row.last_event_ts, row.last_event_seq = event.ts, event.seq
        if event.from_version is not None:
            row.from_version = event.from_version
        changed += 1
    return changed
