"""Device inventory: what the devices report (status, metrics, ota) turned into rows.

The update rules are pure functions (:func:`apply_status`, :func:`apply_metrics`,
:func:`apply_ota`); :func:`ingest` is the I/O around them, one transaction per batch of
reports (parsed by :func:`fleet_server.device_reports.parse_report`). What the API shows
of the rows is :mod:`fleet_server.device_views`; an operator's groups and tags,
:mod:`fleet_server.device_labels`.

Rules worth knowing:

- statuses are applied in arrival order: the broker delivers one device's
  messages in order, and the Last Will ("offline") is stamped with the time the
  agent connected, so a timestamp rule would wrongly ignore it. An "offline"
  status changes only the state: the Will carries no live model list. Several
  replicas share the reports (a shared subscription hands consecutive messages of
  one device to different replicas), so "arrival" is the time a replica received
  the status, and one older than the status already stored is not applied (the
  replicas' clocks must agree to within the time between two statuses of a device);
- a batch locks the rows of its devices (in id order: no deadlock between replicas)
  before it reads them, so two replicas never overwrite each other's update;
- an OTA event is always logged (once per ``msg_id``); it becomes the device's
  "last OTA state" only if it is not older than the current one (a spool replay
  after an outage must not undo newer news); metrics likewise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contract.messages import Alert, Metrics, ModelInfo, OtaEvent, Status
from fleet_server.db import Device, OtaEventRow
from fleet_server.device_reports import Report
from fleet_server.retention import MinuteBudget

LAST_DETAIL_CHARS = 1000  # of the last OTA event's detail, kept on the device row


def _seen(device: Device, at: float) -> None:
    device.last_seen = max(device.last_seen or 0.0, at)


def _run_order(state: str, connection: int, seq: int) -> tuple[int, int, int]:
    """Where a status falls in its agent run: by connection, a connection's Will after its
    statuses (the Will reports that connection's loss), then by ``seq``."""
    return connection, int(state == "offline"), 0 if state == "offline" else seq


def status_is_newer(device: Device, status: Status, received_at: float) -> bool:
    """Whether ``status`` replaces the stored one.

    Within one agent run (the same ``started_at``) the agent's own numbers order its
    statuses: replicas stamp the arrival time on their own threads, and one that is
    busy for longer than the gap between two statuses stamps the older one later
    (seen in CI with two replicas). Agents that number their broker connections
    (``connection``, December 2026) order their Last Will too: after its own
    connection's statuses, before the next connection's, so a Will the broker sends
    just before the reconnected agent's status cannot win on a busy replica. Older
    agents: ``seq`` orders the statuses of a run, the arrival time the Will (``seq`` 0,
    written at connect time). Across runs the arrival time decides: restarts are seconds
    apart, and a wiped state directory restarts ``seq`` at 0."""
    arrived_later = device.last_status_at is None or received_at >= device.last_status_at
    if (status.connection and device.last_status_connection and status.started_at > 0
            and device.started_at == status.started_at):
        stored = _run_order(device.state, device.last_status_connection,
                            device.last_status_seq or 0)
        return _run_order(status.state, status.connection, status.seq) > stored
    same_run = (status.state != "offline" and device.state != "offline"
                and status.started_at > 0 and device.started_at == status.started_at
                and device.last_status_seq is not None)
    if same_run:
        return status.seq > (device.last_status_seq or 0)
    return arrived_later


def apply_status(device: Device, status: Status, received_at: float) -> None:
    if not status_is_newer(device, status, received_at):
        if status.state != "offline":
            _seen(device, received_at)
        return
    if status.state != "online":
        device.online_since = None
    elif device.state != "online" or device.online_since is None:
        device.online_since = received_at  # came online: a repeated status does not move it
    device.state = status.state
    device.last_status_at = max(device.last_status_at or 0.0, received_at)
    # A Will does not move started_at: its number only counts against the same run's.
    same_run = status.state != "offline" or status.started_at == device.started_at
    device.last_status_connection = (status.connection or None) if same_run else None
    if status.state == "offline":
        return  # the Last Will: the device is gone, what it ran before is still our best guess
    device.last_status_seq = status.seq
    _seen(device, received_at)
    device.agent_version = status.agent_version
    device.started_at = status.started_at or None
    device.health = status.health
    device.models = [_model_doc(m) for m in status.models]
    # Only what the agent said: an older agent's silence is read by the rollout policy.
    device.reads = sorted(set(status.reads)) if status.reads is not None else None


def _model_doc(model: ModelInfo) -> dict[str, Any]:
    """One live model as stored. ``trial`` only when the agent sent it: an older agent's
    status (no field) must not read as "committed" to the rollout policy."""
    doc = model.model_dump(mode="json")
    if "trial" not in model.model_fields_set:
        del doc["trial"]
    return doc


def apply_metrics(device: Device, metrics: Metrics, received_at: float) -> None:
    _seen(device, received_at)
    if device.last_metrics_ts is not None and metrics.ts < device.last_metrics_ts:
        return
    device.last_metrics_ts = metrics.ts
    device.metrics = {"uptime_s": metrics.uptime_s, "counters": metrics.counters,
                      "gauges": metrics.gauges}


def apply_ota(device: Device, event: OtaEvent, received_at: float) -> None:
    _seen(device, received_at)
    if device.last_ota_ts is not None and event.ts < device.last_ota_ts:
        return
    device.last_ota_ts = event.ts
    device.last_ota_slot = event.slot
    device.last_ota_state = event.state
    device.last_ota_to_version = event.to_version
    device.last_ota_reason = event.reason
    # Shown in every device list: cut (review, December 2026: one event's 250 KB detail
    # went into every GET /api/v1/devices answer).
    device.last_ota_detail = (event.detail or "")[:LAST_DETAIL_CHARS] or None
    device.last_ota_rollout_id = event.rollout_id


def ota_row(event: OtaEvent, received_at: float) -> OtaEventRow:
    return OtaEventRow(
        msg_id=event.msg_id, device_id=event.device_id, seq=event.seq, ts=event.ts,
        received_at=received_at, slot=event.slot, state=event.state,
        from_version=event.from_version, to_version=event.to_version,
        rollout_id=event.rollout_id, artifact=event.artifact,
        bytes_downloaded=event.bytes_downloaded, reason=event.reason,
        detail=(event.detail or "")[:4000] or None, is_historical=event.is_historical)


def get_or_create_device(session: Session, device_id: str, now: float) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        device = Device(device_id=device_id, first_seen=now, models=[], metrics={}, tags=[],
                        state="unknown", agent_version="", health="unknown")
        session.add(device)
    return device


_IN_CHUNK = 900  # ids per IN (...): under SQLite's old 999-variable limit


def lock_devices(session: Session, device_ids: Sequence[str]) -> dict[str, Device]:
    """The existing rows of ``device_ids``, locked for this transaction (SELECT ... FOR
    UPDATE on PostgreSQL; SQLite has one writer at a time anyway), in id order."""
    ids = sorted(set(device_ids))
    found: dict[str, Device] = {}
    for i in range(0, len(ids), _IN_CHUNK):
        query = select(Device).where(Device.device_id.in_(ids[i:i + _IN_CHUNK])).order_by(
            Device.device_id).with_for_update()
        found.update((d.device_id, d) for d in session.scalars(query))
    return found


def ingest(session: Session, reports: Sequence[Report],
           event_rows: MinuteBudget | None = None) -> int:
    """Apply ``reports`` in order; returns how many OTA events were new. With
    ``event_rows``, a device's OTA events past its budget still move its inventory row
    (and the rollout, which reads the reports) but are not stored as event rows."""
    devices = lock_devices(session, [r.device_id for r in reports])
    seen_ids = {r.message.msg_id for r in reports if r.kind == "ota"}
    known = set(session.scalars(select(OtaEventRow.msg_id).where(
        OtaEventRow.msg_id.in_(seen_ids)))) if seen_ids else set()
    new_events = 0
    for report in reports:
        device = devices.get(report.device_id)
        if device is None:
            device = devices[report.device_id] = get_or_create_device(
                session, report.device_id, report.received_at)
        msg = report.message
        if isinstance(msg, Status):
            apply_status(device, msg, report.received_at)
        elif isinstance(msg, Metrics):
            apply_metrics(device, msg, report.received_at)
        elif isinstance(msg, Alert):
            _seen(device, report.received_at)  # stored by the metrics store
        else:
            if msg.msg_id in known:
                continue  # at-least-once delivery: already logged
            known.add(msg.msg_id)
            if event_rows is None or event_rows.take(report.device_id, report.received_at):
                session.add(ota_row(msg, report.received_at))
            apply_ota(device, msg, report.received_at)
            new_events += 1
    return new_events
