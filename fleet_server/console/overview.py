"""The fleet overview's figures, read from the database the API reads (no copies).

Display states: a device is *revoked* when its identity is revoked, *quarantined* while
the broker denies it every topic (fleet_server.identity.quarantine: its connection may
well be open, so "online" would mislead), *stale* when it says it is online but sent
nothing for ``stale_after_s``, else its connection state (online; offline, which
includes a clean stop; unknown: never reported). The first two are *held* states: the
server's decision, not the device's connection (:func:`held_states`). Counting,
filtering and paging run in SQL. Tags and live models are JSON lists (portable across
SQLite and PostgreSQL): a tag is matched as its quoted name in the list's text (names
cannot hold quotes), and the tallies group devices by the list's text, so only the few
distinct lists are decoded, not one per device.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, Text, and_, case, cast, false, func, not_, or_, select
from sqlalchemy.orm import Session

from fleet_server.db import Device
from fleet_server.identity.tables import quarantined_device_ids, revoked_device_ids
from fleet_server.metrics_store import alerts_per_hour
from fleet_server.rollouts.records import ACTIVE_STATUSES
from fleet_server.service import FleetService

DisplayState = Literal["online", "stale", "offline", "unknown", "quarantined", "revoked"]
DISPLAY_STATES: tuple[DisplayState, ...] = ("online", "stale", "offline", "unknown",
                                            "quarantined", "revoked")
HeldStates = dict[str, DisplayState]  # device id -> revoked or quarantined
_MODELS_TEXT = cast(Device.models, Text)
_TAGS_TEXT = cast(Device.tags, Text)


def has_tag(tag: str) -> ColumnElement[bool]:
    """Devices whose tag list holds ``tag`` (its quoted name in the list's JSON text)."""
    escaped = json.dumps(tag).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return _TAGS_TEXT.like(f"%{escaped}%", escape="\\")


@dataclass(frozen=True)
class OverviewFilter:
    """What the operator narrowed the device list to (every one given must match)."""

    state: DisplayState | None = None
    group: str | None = None
    tag: str | None = None
    search: str | None = None  # part of the device id
    page: int = 1


def display_state(state: str, last_seen: float | None, held: DisplayState | None,
                  now: float, stale_after_s: float) -> DisplayState:
    if held is not None:
        return held
    if state == "online":
        return "stale" if last_seen is None or now - last_seen > stale_after_s else "online"
    if state in ("offline", "stopped"):
        return "offline"
    return "unknown"


def held_states(session: Session, now: float) -> HeldStates:
    """Devices whose display state is the server's decision: revoked, else quarantined."""
    held: HeldStates = {d: "quarantined" for d in quarantined_device_ids(session, now)}
    held.update((d, "revoked") for d in revoked_device_ids(session))
    return held


def _state_clause(state: DisplayState, held: HeldStates, now: float,
                  stale_after_s: float) -> ColumnElement[bool]:
    fresh = Device.last_seen >= now - stale_after_s
    if state in ("revoked", "quarantined"):
        ids = [d for d, h in held.items() if h == state]
        return Device.device_id.in_(ids) if ids else false()
    not_held = not_(Device.device_id.in_(list(held))) if held else and_(True)
    if state == "online":
        return and_(Device.state == "online", fresh, not_held)
    if state == "stale":
        return and_(Device.state == "online", or_(Device.last_seen.is_(None), not_(fresh)),
                    not_held)
    if state == "offline":
        return and_(Device.state.in_(("offline", "stopped")), not_held)
    return and_(Device.state.not_in(("online", "offline", "stopped")), not_held)


@dataclass
class DeviceRow:
    device_id: str
    state: DisplayState
    health: str
    agent_version: str
    models: list[str]
    group: str | None
    tags: list[str]
    last_seen: float | None


@dataclass
class DevicePage:
    rows: list[DeviceRow]
    total: int  # matching devices
    page: int
    pages: int
    page_size: int


@dataclass
class Overview:
    states: dict[str, int]
    health: dict[str, int]
    devices_total: int
    versions: dict[str, dict[str, int]]  # slot -> "model vN" -> devices
    alerts_24h: list[int]
    rollouts: list[Any]  # RolloutView, active ones
    groups: list[str]
    tags: list[str]
    listing: DevicePage
    filters: OverviewFilter
    extra: dict[str, Any] = field(default_factory=dict)


def device_page(session: Session, f: OverviewFilter, now: float, stale_after_s: float,
                page_size: int, held: HeldStates | None = None) -> DevicePage:
    held = held_states(session, now) if held is None else held
    where: list[ColumnElement[bool]] = []
    if f.state is not None:
        where.append(_state_clause(f.state, held, now, stale_after_s))
    if f.group:
        where.append(Device.group_name == f.group)
    if f.search:
        escaped = f.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(Device.device_id.like(f"%{escaped}%", escape="\\"))
    if f.tag:
        where.append(has_tag(f.tag))
    total = session.scalar(select(func.count()).select_from(Device).where(*where)) or 0
    pages = max(1, -(-total // page_size))
    page = min(max(1, f.page), pages)
    devices = list(session.scalars(select(Device).where(*where).order_by(Device.device_id)
                                   .limit(page_size).offset((page - 1) * page_size)))
    rows = [DeviceRow(
        device_id=d.device_id,
        state=display_state(d.state, d.last_seen, held.get(d.device_id), now, stale_after_s),
        health=d.health, agent_version=d.agent_version,
        models=[f"{m['slot']}: {m['name']} v{m['version']}" for m in d.models or []],
        group=d.group_name, tags=list(d.tags or []), last_seen=d.last_seen) for d in devices]
    return DevicePage(rows, total, page, pages, page_size)


def state_counts(session: Session, held: HeldStates, now: float,
                 stale_after_s: float) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(DISPLAY_STATES, 0)
    fresh = case((Device.last_seen >= now - stale_after_s, 1), else_=0)
    for state, n, n_fresh in session.execute(
            select(Device.state, func.count(), func.sum(fresh)).where(
                not_(Device.device_id.in_(list(held))) if held else and_(True))
            .group_by(Device.state)):
        if state == "online":
            counts["online"] += int(n_fresh or 0)
            counts["stale"] += n - int(n_fresh or 0)
        else:
            counts[display_state(state, None, None, now, stale_after_s)] += n
    for state in ("quarantined", "revoked"):
        ids = [d for d, h in held.items() if h == state]
        if ids:  # devices in the inventory only, as the other states count
            counts[state] = session.scalar(select(func.count()).select_from(Device).where(
                Device.device_id.in_(ids))) or 0
    return counts


def tallies(session: Session) -> tuple[dict[str, dict[str, int]], list[str], list[str]]:
    """(devices per live model version per slot, every group, every tag), decoding each
    distinct model list and tag list once."""
    versions: dict[str, Counter[str]] = {}
    for text, n in session.execute(select(_MODELS_TEXT, func.count()).group_by(_MODELS_TEXT)):
        for m in json.loads(text or "[]") or []:
            versions.setdefault(m["slot"], Counter())[f"{m['name']} v{m['version']}"] += n
    tags: set[str] = set()
    for (text,) in session.execute(select(_TAGS_TEXT).distinct()):
        tags.update(json.loads(text or "[]") or [])
    groups = sorted(g for g in session.scalars(select(Device.group_name).distinct())
                    if g is not None)
    return ({slot: dict(sorted(c.items())) for slot, c in sorted(versions.items())},
            groups, sorted(tags))


def overview(service: FleetService, f: OverviewFilter, now: float) -> Overview:
    cfg = service.config.console
    with service.db.session() as session:
        held = held_states(session, now)
        states = state_counts(session, held, now, cfg.stale_after_s)
        health = dict(sorted(session.execute(
            select(Device.health, func.count()).group_by(Device.health)).tuples().all()))
        versions, groups, tags = tallies(session)
        alerts = alerts_per_hour(session, now)
        listing = device_page(session, f, now, cfg.stale_after_s, cfg.page_size, held)
    # Only the active ones: a finished rollout's view costs as much as a running one's.
    active = sorted((r for status in sorted(ACTIVE_STATUSES)
                     for r in service.rollouts.list(status, limit=10)),
                    key=lambda r: -r.created_at)
    return Overview(states=states, health=health, devices_total=sum(states.values()),
                    versions=versions, alerts_24h=alerts, rollouts=active, groups=groups,
                    tags=tags, listing=listing, filters=f)
