"""The inventory as the API and the console show it: a device row as a summary
(:func:`device_summary`), an OTA event row as a view (:func:`event_view`), the device
list with ``nanofleet devices list``'s filters (:class:`DeviceFilter`,
:func:`list_devices`) and a device's recent OTA events (:func:`recent_events`).

Separate from :mod:`fleet_server.inventory` because they only read: the rows are
written there, from the devices' reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from fleet_server.db import Device, OtaEventRow
from fleet_server.identity.tables import quarantine_ends


def device_summary(device: Device) -> dict[str, Any]:
    return {
        "device_id": device.device_id,
        "state": device.state,
        "health": device.health,
        "agent_version": device.agent_version,
        "reads": None if device.reads is None else list(device.reads),
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
    # A quarantined device's connection may well be open: the list says so beside it.
    ends = quarantine_ends(session, time.time())
    return [{**device_summary(d), "quarantined_until": ends.get(d.device_id)}
            for d in session.scalars(query) if device_matches(d, f)]


def recent_events(session: Session, device_id: str, limit: int) -> list[dict[str, Any]]:
    """Newest first."""
    rows = session.scalars(select(OtaEventRow).where(OtaEventRow.device_id == device_id)
                           .order_by(OtaEventRow.ts.desc(), OtaEventRow.id.desc()).limit(limit))
    return [event_view(r) for r in rows]
