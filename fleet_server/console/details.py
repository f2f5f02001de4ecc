"""View models of the device, release and audit pages (read through the API's services).

Each function reads in one transaction and returns plain data for a template; none
decides anything the API does not (rollout views come from
:class:`fleet_server.rollouts.manage.Rollouts`, releases from
:func:`fleet_server.releases.models_view`, the device from the inventory's views).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, cast, false, func, select
from sqlalchemy.orm import Session

from fleet_server.alert_shapes import Ranking, covering, line_shape, shape_ranking
from fleet_server.console.overview import DisplayState, display_state, held_states
from fleet_server.db import AuditEntry, Device
from fleet_server.device_views import device_summary, recent_events
from fleet_server.identity.tables import DeviceIdentity, quarantine_in_force, quarantine_view
from fleet_server.metrics_store import DeviceAlertRow, recent_alerts, series
from fleet_server.mute_rules import MuteShape
from fleet_server.mutes import AlertMuteRow, active_mutes
from fleet_server.releases import models_view
from fleet_server.rollouts.store import RolloutDeviceRow, RolloutRow
from fleet_server.service import FleetService
from fleet_server.verdicts import AlertVerdictRow, verdicts_of

_MODELS_TEXT = cast(Device.models, Text)
WINDOWS = {"1h": 3600, "6h": 6 * 3600, "24h": 86_400, "7d": 7 * 86_400}
AUDIT_PAGE = 50
TOP_SHAPES = 10  # "Most frequent alerts here"
TOP_SHAPES_SCAN = 1000  # of the device's newest alerts: the page is read again every few seconds


@dataclass
class DevicePageView:
    device_id: str
    state: DisplayState
    summary: dict[str, Any]
    identity: dict[str, Any] | None  # enrollment and certificates, None if never enrolled
    events: list[dict[str, Any]]  # OTA history, newest first
    alerts: list[DeviceAlertRow]
    verdicts: dict[str, AlertVerdictRow]  # operators' verdicts on those alerts, by msg_id
    mutes: list[AlertMuteRow]  # active mutes that apply to the device, newest first
    mutable: dict[int, MuteShape]  # alert id -> the shape a mute of it names (if it can)
    muted: dict[int, AlertMuteRow]  # alert id -> an active mute its line falls under
    top_shapes: Ranking  # its most frequent alert messages (fleet_server.alert_shapes)
    metrics: dict[str, list[Any]]  # plotted series
    last_metrics: dict[str, Any]
    window: str
    rollouts: list[tuple[str, str, str]]  # (rollout id, its status, the device's state)
    quarantine: dict[str, Any] | None = None  # in force at the broker (identity/quarantine.py)


def device_page(service: FleetService, identity_view: dict[str, Any] | None, device_id: str,
                window: str, now: float) -> DevicePageView | None:
    """Everything the device page shows, or None if the server never heard of it."""
    span = WINDOWS.get(window, WINDOWS["1h"])
    with service.db.session() as session:
        device = session.get(Device, device_id)
        if device is None and identity_view is None:
            return None
        summary = device_summary(device) if device is not None else {
            "device_id": device_id, "state": "unknown", "health": "unknown",
            "agent_version": "", "models": {}, "last_ota": None, "group": None, "tags": [],
            "last_seen": None, "first_seen": None}
        ident = session.get(DeviceIdentity, device_id)
        quarantine = quarantine_in_force(session, device_id, now)
        held: DisplayState | None = "revoked" if ident is not None and \
            ident.status == "revoked" else None if quarantine is None else "quarantined"
        state = display_state(summary["state"], summary.get("last_seen"), held, now,
                              service.config.console.stale_after_s)
        events = recent_events(session, device_id, 100)
        alerts = recent_alerts(session, device_id, 20)
        verdicts = verdicts_of(session, alerts)
        mutes = active_mutes(session, now, device_id)
        top_shapes = shape_ranking(session, device_id, None, now, limit=TOP_SHAPES,
                                   max_rows=TOP_SHAPES_SCAN, mutes=mutes)
        history = service.metrics.history(session, device_id, now - span)
        rollouts = [(rid, status, st) for rid, status, st in session.execute(
            select(RolloutRow.id, RolloutRow.status, RolloutDeviceRow.state)
            .join(RolloutDeviceRow, RolloutDeviceRow.rollout_id == RolloutRow.id)
            .where(RolloutDeviceRow.device_id == device_id)
            .order_by(RolloutRow.created_at.desc()).limit(10))]
        last = dict(device.metrics or {}) if device is not None else {}
        quarantined = None if quarantine is None else quarantine_view(quarantine)
    shapes = alert_shapes(alerts)
    return DevicePageView(device_id=device_id, state=state, summary=summary,
                          identity=identity_view, events=events, alerts=alerts,
                          verdicts=verdicts, mutes=mutes, mutable=shapes,
                          muted=muted_alerts(alerts, shapes, mutes), top_shapes=top_shapes,
                          metrics=series(history), last_metrics=last,
                          window=window if window in WINDOWS else "1h", rollouts=rollouts,
                          quarantine=quarantined)


def alert_shapes(alerts: list[DeviceAlertRow]) -> dict[int, MuteShape]:
    """The message shape a mute of each alert would name
    (:func:`fleet_server.mute_rules.mute_shape`, as ``mute_alert`` takes it: a cut line's is
    the start of one), by alert id; alerts a mute
    would refuse (a blank line, a cut one whose sure start is too short) are left out."""
    return {alert.id: shape for alert in alerts
            for shape, mutable in [line_shape(alert.text)] if mutable}


def muted_alerts(alerts: list[DeviceAlertRow], shapes: dict[int, MuteShape],
                 mutes: list[AlertMuteRow]) -> dict[int, AlertMuteRow]:
    """Which of the alerts an active mute covers now, as far as the server can tell
    (:func:`fleet_server.alert_shapes.covering`, which the ranking of shapes asks too: the
    agent's rule, :meth:`AlertMute.matches`, and for a line the server kept cut only what
    its kept start decides): the alert's id and the first (newest) such mute."""
    found: dict[int, AlertMuteRow] = {}
    for alert in alerts:
        shape = shapes.get(alert.id)
        mute = None if shape is None else covering(mutes, alert.device_id, alert.source, shape)
        if mute is not None:
            found[alert.id] = mute
    return found


def _model_lists(session: Session) -> list[tuple[str, list[dict[str, Any]], int]]:
    """Every distinct live-model list: (its JSON text, the list, devices reporting it)."""
    return [(text, json.loads(text or "[]") or [], n) for text, n in session.execute(
        select(_MODELS_TEXT, func.count()).group_by(_MODELS_TEXT))]


def deployed_counts(service: FleetService) -> Counter[tuple[str, int]]:
    """Devices running each (model, version) now, from their statuses."""
    counts: Counter[tuple[str, int]] = Counter()
    with service.db.session() as session:
        for _text, models, n in _model_lists(session):
            for m in models:
                counts[(m["name"], int(m["version"]))] += n
    return counts


def releases(service: FleetService) -> list[dict[str, Any]]:
    """models_view (versions, signers, sizes, deltas, signed minimum) plus where each
    version runs."""
    models = models_view(service.db, service.repo)
    counts = deployed_counts(service)
    for model in models:
        for v in model["versions"]:
            v["devices"] = counts.get((model["model"], v["version"]), 0)
    return models


@dataclass(frozen=True)
class TargetsSigners:
    version: int  # of the targets metadata now published
    keys: list[str]  # key ids whose signatures it carries


def targets_signers(service: FleetService) -> TargetsSigners:
    """Who signed what is published: the targets metadata's version and signing keys."""
    targets = service.repo.targets()
    return TargetsSigners(targets.signed.version, sorted(targets.signatures))


@dataclass
class ReleaseView:
    model: str
    slot: str
    minimum_version: int
    version: dict[str, Any]
    devices: list[tuple[str, DisplayState, str | None]]  # (id, state, group), first 200
    devices_total: int
    rollouts: list[Any]  # RolloutView


def release(service: FleetService, model: str, version: int, now: float) -> ReleaseView | None:
    entry = next((m for m in models_view(service.db, service.repo) if m["model"] == model),
                 None)
    found = None if entry is None else next(
        (v for v in entry["versions"] if v["version"] == version), None)
    if entry is None or found is None:
        return None
    stale = service.config.console.stale_after_s
    with service.db.session() as session:
        held = held_states(session, now)
        lists = [text for text, models, _n in _model_lists(session)
                 if any(m.get("name") == model and m.get("version") == version for m in models)]
        where = _MODELS_TEXT.in_(lists) if lists else false()
        total = session.scalar(select(func.count()).select_from(Device).where(where)) or 0
        running = [(d.device_id, display_state(d.state, d.last_seen, held.get(d.device_id),
                                               now, stale), d.group_name)
                   for d in session.scalars(select(Device).where(where)
                                            .order_by(Device.device_id).limit(200))]
        rollout_ids = list(session.scalars(select(RolloutRow.id).where(
            RolloutRow.model == model, RolloutRow.version == version)
            .order_by(RolloutRow.created_at.desc()).limit(20)))
    rollouts = [service.rollouts.get(rid, log_lines=0) for rid in rollout_ids]
    return ReleaseView(model=model, slot=entry["slot"], minimum_version=entry["minimum_version"],
                       version=found, devices=running, devices_total=total,
                       rollouts=rollouts)


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    subject: str | None = None
    page: int = 1


@dataclass
class AuditPage:
    entries: list[AuditEntry]
    actors: list[str]
    actions: list[str]
    total: int
    page: int
    pages: int
    filters: AuditFilter


def audit(service: FleetService, f: AuditFilter) -> AuditPage:
    where = []
    if f.actor:
        where.append(AuditEntry.actor == f.actor)
    if f.action:
        where.append(AuditEntry.action == f.action)
    if f.subject:
        where.append(AuditEntry.subject.contains(f.subject, autoescape=True))
    with service.db.session() as session:
        total = session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0
        pages = max(1, -(-total // AUDIT_PAGE))
        page = min(max(1, f.page), pages)
        entries = list(session.scalars(select(AuditEntry).where(*where)
                                       .order_by(AuditEntry.id.desc())
                                       .limit(AUDIT_PAGE).offset((page - 1) * AUDIT_PAGE)))
        actors = sorted(session.scalars(select(AuditEntry.actor).distinct()))
        actions = sorted(session.scalars(select(AuditEntry.action).distinct()))
    return AuditPage(entries, actors, actions, total, page, pages, f)
