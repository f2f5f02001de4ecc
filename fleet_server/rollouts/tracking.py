"""Device OTA reports moving rollout records on (inside the ingest transaction).

An :class:`~contract.messages.OtaEvent` carries the ``rollout_id`` of the desired
state the device is working on. :func:`apply_event` (pure) decides what it means for
the device's record in that rollout; :func:`track_reports` applies a batch of
reports to the database.

Order: events are applied only if newer than the last one applied, by the device's
own (timestamp, sequence number). Comparing device times with device times keeps
clock skew between device and server out of it; a spool replay after an outage or
an at-least-once duplicate never undoes newer news.

Progress, not chatter (review, December 2026: one device re-sending ``downloading``
every 50 minutes kept its record, and so its stage, in flight for ever):

- only a change of state moves ``changed_at``, from which the policy measures
  ``device_timeout_s``; a repeat of the state the record has (an agent restarted in
  ``downloading`` reports it again) updates reason and detail, not the clock (the
  record keeps no byte count to see a download advance by). Changes of state go on
  restarting it, so the policy also bounds a whole attempt from its ``notified_at``
  (:data:`~fleet_server.rollouts.policy.ATTEMPT_TIMEOUTS`);
- an event moves a record *into* an in-flight state only while its attempt is open
  (``notified`` or in flight). A record that is ``pending`` (never notified), finished
  (``committed``, ``failed``, ``rolled_back``, ``skipped``, ``cancelled``) or waiting for
  its retry (``retrying``) keeps its state; a later *outcome* still replaces it (a late
  ``rolled_back`` after an inferred commit, a ``committed`` after a timeout), except a
  transient ``failed`` for a record in ``retrying``: that attempt failed already, and
  moving the record back to ``failed`` would schedule its retry afresh (re-sent, it
  postponed the retry for ever). A genuine retry is reopened by the policy
  (``retrying`` -> ``notified``, a new attempt with a new ``notified_at``), so the events
  of the new attempt find the record open. Events carry no desired-state revision, and
  device times are not compared with server times, so this is how an event of a newer
  attempt is told from one of a finished attempt (an agent retrying a transient failure
  on its own before the server does goes on; its reports count once re-notified).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from contract.messages import OtaEvent
from contract.reasons import is_transient
from fleet_server.device_reports import Report
from fleet_server.rollouts.records import IN_FLIGHT, DeviceProgress, DeviceState
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
    """The record after ``event``, or None when the event is not applied (older than the
    last one applied, not about this rollout's version, ``idle``, an in-flight state for
    a record with no open attempt, or a transient failure for one waiting for its retry:
    see the module docstring). A repeat of the
    record's state keeps ``changed_at``: only progress restarts the device timeout."""
    state = _AGENT_TO_ROLLOUT.get(event.state)
    if state is None:
        return None
    if event.to_version is not None and event.to_version != target_version:
        return None
    if last is not None and (event.ts, event.seq) <= (last.ts, last.seq):
        return None
    if state in IN_FLIGHT and dev.state not in IN_FLIGHT:
        return None  # no open attempt: not notified, finished, or waiting for its retry
    if dev.state == "retrying" and state == "failed" and is_transient(event.reason):
        return None  # the failure of the attempt being retried, again
    changed_at = dev.changed_at if state == dev.state else received_at
    return replace(dev, state=state, reason=event.reason,
                   detail=(event.detail or "")[:2000] or None, changed_at=changed_at,
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
        old = device_of(row)
        new = apply_event(old, last, event, versions[row.rollout_id], received_at)
        if new is None:
            continue
        store_device(row, new)
        row.last_event_ts, row.last_event_seq = event.ts, event.seq
        if event.from_version is not None:
            row.from_version = event.from_version
        changed += new != old  # an identical repeat does not wake the driver
    return changed
