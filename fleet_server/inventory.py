"""Device inventory: what the devices report (status, metrics, ota) turned into rows.

Parsing and the update rules are pure functions (:func:`parse_report`,
:func:`apply_status`, :func:`apply_metrics`, :func:`apply_ota`); :func:`ingest`
is the I/O around them, one transaction per batch of reports.

Rules worth knowing:

- the topic names the device; a payload claiming another device id is refused
  (a device may publish only under its own tree, and the payload must agree);
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

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from contract import topics
from contract.messages import (
    Alert,
    Metrics,
    ModelInfo,
    OtaEvent,
    Status,
    format_validation_error,
)
from fleet_server.db import Device, OtaEventRow
from fleet_server.retention import MinuteBudget

ReportKind = Literal["status", "metrics", "ota", "alerts"]
_KINDS: dict[str, type[Status] | type[Metrics] | type[OtaEvent] | type[Alert]] = {
    "status": Status, "metrics": Metrics, "ota": OtaEvent, "alerts": Alert}
MAX_REPORT_BYTES = 256 * 1024
LAST_DETAIL_CHARS = 1000  # of the last OTA event's detail, kept on the device row


@dataclass(frozen=True)
class Report:
    device_id: str
    kind: ReportKind
    message: Status | Metrics | OtaEvent | Alert
    received_at: float


class ReportRejected(ValueError):
    """A device report that cannot be used; the message says why (logged and counted)."""


def _no_constant(name: str) -> float:
    # NaN, Infinity: Python's json reads them, JSON has no such numbers, and no column
    # stores them (a NaN score failed its NOT NULL INSERT, and the batch with it). The
    # contract itself allows them: an agent running a broken model must still report.
    raise ValueError(f"{name} is not a number JSON has")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise ValueError(f"{text[:40]} is beyond the floats a database stores")
    return value


def _without_nul(value: Any) -> Any:
    """NUL characters replaced (U+FFFD) in every string: a log line may hold one, JSON
    carries it as \\u0000, and PostgreSQL's text columns refuse it (the INSERT, and the
    batch it was in, failed; review, December 2026)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def parse_report(topic: str, payload: bytes, received_at: float) -> Report:
    """``nanofleet/v1/dev/<id>/{status,metrics,ota,alerts}`` + JSON payload -> :class:`Report`
    (alerts are kept by :mod:`fleet_server.metrics_store`)."""
    device_id = topics.device_id_from_topic(topic)
    kind = topic.rsplit("/", 1)[-1]
    if device_id is None or kind not in _KINDS or topic != f"{topics.device_root(device_id)}/" \
            f"{kind}":
        raise ReportRejected(f"{topic}: not a device status/metrics/ota topic (or alerts)")
    if not payload:
        raise ReportRejected(f"{topic}: empty payload (a cleared retained message)")
    if len(payload) > MAX_REPORT_BYTES:
        raise ReportRejected(f"{topic}: payload of {len(payload)} bytes is over "
                             f"{MAX_REPORT_BYTES}")
    try:
        data = json.loads(payload, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:  # not JSON, too deep, 5000-digit ints
        raise ReportRejected(f"{topic}: payload is not JSON: {exc}") from None
    # JSON can only carry a NUL as the escape \u0000 (json.loads refuses raw control
    # characters in strings): every other report skips the walk.
    if b"\\u0000" in payload:
        try:
            data = _without_nul(data)
        except RecursionError:  # nested as deep as json.loads goes: no report is
            raise ReportRejected(f"{topic}: payload is nested too deep") from None
    try:
        message = _KINDS[kind].model_validate(data)
    except ValidationError as exc:
        raise ReportRejected(f"{topic}: invalid {kind}: {format_validation_error(exc)}") from None
    if message.device_id != device_id:
        raise ReportRejected(f"{topic}: payload claims device {message.device_id!r}")
    return Report(device_id, kind, message, received_at)  # type: ignore[arg-type]


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


# --- views (what the API returns) --------------------------------------------------------

def device_summary(device: Device) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "state": device.state,
        "health": device.health,
        "agent_version": device.agent_version,
        "last_seen": device.last_seen,
        "first_seen": device.first_seen,
        "models": {m["slot"]: {"name": m["name"], "version": m["version"],
                               "runtime": m.get("runtime"), "sha256": m.get("sha256"),
                               "trial": m.get("trial")}
                   for m in device.models},
        "last_ota": None if device.last_ota_state is None else {
            "slot": device.last_ota_slot, "state": device.last_ota_state,
            "to_version": device.last_ota_to_version, "reason": device.last_ota_reason,
            "detail": device.last_ota_detail, "ts": device.last_ota_ts,
            "rollout_id": device.last_ota_rollout_id},
        "group": device.group_name,
        "tags": list(device.tags or []),
    }


def event_view(row: OtaEventRow) -> dict[str, Any]:
    return {"ts": row.ts, "received_at": row.received_at, "slot": row.slot, "state": row.state,
            "from_version": row.from_version, "to_version": row.to_version,
            "artifact": row.artifact, "bytes_downloaded": row.bytes_downloaded,
            "reason": row.reason, "detail": row.detail, "rollout_id": row.rollout_id,
            "is_historical": row.is_historical}


@dataclass(frozen=True)
class DeviceFilter:
    """``nanofleet devices list`` filters; every one given must match."""

    state: str | None = None  # connection: online / offline / stopped / unknown
    ota_state: str | None = None  # last OTA state: downloading ... committed / failed
    group: str | None = None
    tags: tuple[str, ...] = ()
    model: str | None = None  # runs this model (in any slot)
    model_version: int | None = None  # runs this version (of `model`, if given)
    offline: bool = False  # not online (offline, stopped or never seen)


def device_matches(device: Device, f: DeviceFilter) -> bool:
    if f.state is not None and device.state != f.state:
        return False
    if f.offline and device.state == "online":
        return False
    if f.ota_state is not None and device.last_ota_state != f.ota_state:
        return False
    if f.group is not None and device.group_name != f.group:
        return False
    if not set(f.tags) <= set(device.tags or []):
        return False
    if f.model is not None or f.model_version is not None:
        return any((f.model is None or m.get("name") == f.model)
                   and (f.model_version is None or m.get("version") == f.model_version)
                   for m in device.models or [])
    return True


def list_devices(session: Session, state: str | None = None, *,
                 filters: DeviceFilter | None = None) -> list[dict[str, Any]]:
    f = filters or DeviceFilter()
    if state is not None:
        f = DeviceFilter(**{**f.__dict__, "state": state})
    query = select(Device).order_by(Device.device_id)
    if f.state is not None:
        query = query.where(Device.state == f.state)
    if f.group is not None:
        query = query.where(Device.group_name == f.group)
    return [device_summary(d) for d in session.scalars(query) if device_matches(d, f)]


@dataclass(frozen=True)
class LabelChange:
    """How to change a device's group and tags (None / empty: leave as is)."""

    group: str | None = None
    clear_group: bool = False
    tags: tuple[str, ...] | None = None  # replace the tags
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()


def relabel(group: str | None, tags: list[str], change: LabelChange) -> tuple[str | None,
                                                                              list[str]]:
    """The device's (group, sorted tags) after ``change``."""
    new_group = None if change.clear_group else (change.group or group)
    new_tags = set(change.tags) if change.tags is not None else set(tags)
    new_tags = (new_tags | set(change.add_tags)) - set(change.remove_tags)
    return new_group, sorted(new_tags)


class UnknownDevices(LookupError):
    def __init__(self, device_ids: list[str]) -> None:
        super().__init__(f"{len(device_ids)} device ids never reported and are not enrolled: "
                         f"{', '.join(device_ids[:10])}{' ...' if len(device_ids) > 10 else ''}")
        self.device_ids = device_ids


def set_labels(session: Session, device_ids: Sequence[str], change: LabelChange,
               now: float, *, create: bool = False) -> list[Device]:
    """Apply ``change`` to each device. Ids the inventory does not know (never reported,
    never enrolled) raise :class:`UnknownDevices` and change nothing, unless ``create``
    (grouping devices before they are installed): an operator's typo must not become a
    phantom device that rollouts then wait for."""
    for device_id in device_ids:
        topics.check_device_id(device_id)
    wanted = list(dict.fromkeys(device_ids))
    if not create:
        known: set[str] = set()
        for start in range(0, len(wanted), 500):
            known.update(session.scalars(select(Device.device_id).where(
                Device.device_id.in_(wanted[start:start + 500]))))
        unknown = [d for d in wanted if d not in known]
        if unknown:
            raise UnknownDevices(unknown)
    out = []
    for device_id in wanted:
        device = get_or_create_device(session, device_id, now)
        device.group_name, device.tags = relabel(device.group_name, list(device.tags or []),
                                                 change)
        out.append(device)
    return out


def recent_events(session: Session, device_id: str, limit: int) -> list[dict[str, Any]]:
    """Newest first."""
    rows = session.scalars(select(OtaEventRow).where(OtaEventRow.device_id == device_id)
                           .order_by(OtaEventRow.ts.desc(), OtaEventRow.id.desc()).limit(limit))
    return [event_view(r) for r in rows]
