"""Operator API for devices' alerts, the operators' verdicts on them, and mutes.

``GET /alerts`` lists the alerts the server keeps (newest first, with their verdicts);
``POST /alerts/{id}/verdict`` says whether one was right (``deploy`` scope, audited);
``GET /labelled-lines`` exports the judged lines as the JSONL ``nanofleet model train``
and ``nanofleet model eval --alerts`` read (:mod:`fleet_server.verdicts`).
``POST /alerts/{id}/mute`` stops the device (or every device) sending that alert's
message for some days, ``GET /mutes`` lists the active mutes and ``DELETE
/mutes/{id}`` lifts one (``deploy`` scope to change, audited; :mod:`fleet_server.mutes`);
``POST /mute-lists/resend`` sends devices' lists again, ``reset`` to have them applied whatever
revision a device holds (``admin``, audited).
``GET /alert-shapes`` ranks the kept alerts by message shape, the most alerting first, with
their verdicts and mutes: what to judge and mute first (:mod:`fleet_server.alert_shapes`).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.responses import Response

from contract.limits import MAX_STORED_INT
from contract.mutes import MUTE_ID_PATTERN
from contract.topics import DEVICE_ID_PATTERN
from fleet_server.alert_shapes import MAX_LIMIT, MAX_SCAN, ShapeGroup, shape_ranking
from fleet_server.api.core import AdminOperator, ApiError, Caller, Operator, Service
from fleet_server.api.schemas import (
    AlertList,
    AlertShapeList,
    AlertShapeView,
    AlertView,
    MuteCreated,
    MuteRequest,
    MutesResent,
    MuteView,
    MuteViews,
    VerdictRequest,
    VerdictView,
)
from fleet_server.auth import Identity, missing_scope_message
from fleet_server.db import AuditEntry
from fleet_server.metrics_store import DeviceAlertRow, recent_alerts
from fleet_server.mute_rules import MuteRefused, UnknownAlert, UnknownMute, WideMuteRefused
from fleet_server.mutes import AlertMuteRow, MuteChange, active_mutes
from fleet_server.service import FleetService
from fleet_server.verdicts import (
    LEFT_OUT_HEADER,
    AlertVerdictRow,
    VerdictRefused,
    judge,
    labelled_lines,
    verdicts_of,
)

router = APIRouter(prefix="/api/v1")


def alert_view(alert: DeviceAlertRow, verdict: AlertVerdictRow | None) -> AlertView:
    return AlertView(
        id=alert.id, device_id=alert.device_id, received_at=alert.ts, slot=alert.slot,
        model_version=alert.model_version, label=alert.label, score=alert.score,
        reason=alert.reason, source=alert.source, text=alert.text, repeats=alert.repeats,
        verdict=None if verdict is None else VerdictView(
            verdict=verdict.verdict,  # type: ignore[arg-type]  # stored from the Literal
            label=verdict.label, by=verdict.actor, at=verdict.at))


@router.get("/alerts", response_model=AlertList, tags=["alerts"])
def get_alerts(service: Service, device: str | None = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> AlertList:
    """The devices' alerts the server keeps (console retention), newest first."""
    with service.db.session() as session:
        rows = recent_alerts(session, device, limit)
        judged = verdicts_of(session, rows)
        return AlertList(alerts=[alert_view(r, judged.get(r.msg_id)) for r in rows])


# Bounded: an id past the database's integers would be a 500 (review, December 2026).
AlertId = Annotated[int, PathParam(ge=1, le=MAX_STORED_INT, description="The alert's id.")]


@router.post("/alerts/{alert_id}/verdict", response_model=AlertView, tags=["alerts"])
def post_verdict(alert_id: AlertId, body: VerdictRequest, service: Service,
                 actor: Operator) -> AlertView:
    """Say whether an alert was right; the line is kept with its true label."""
    with service.db.session() as session:
        alert = session.get(DeviceAlertRow, alert_id)
        if alert is None:
            raise ApiError(404, "unknown-alert", f"no alert {alert_id}: the server keeps "
                           "alerts for a while only (GET /api/v1/alerts lists them)")
        try:
            row = judge(session, alert, body.verdict, body.label, actor)
        except VerdictRefused as exc:
            raise ApiError(422, "invalid-verdict", str(exc)) from None
        return alert_view(alert, row)


@router.get("/labelled-lines", tags=["alerts"], response_class=Response,
            responses={200: {"content": {"application/x-ndjson": {}},
                             "description": "One JSON object per line."}})
def get_labelled_lines(service: Service, device: str | None = None,
                       since: float | None = None, with_source: bool = False) -> Response:
    """The judged lines as JSONL: ``text`` and ``label`` (``nanofleet model train``), with
    ``source`` too when asked (``nanofleet model eval --alerts``); oldest first. Header
    ``X-Left-Out``: how many verdicts were left out because their label is not a label
    (the server's log names them)."""
    left_out: list[int] = []
    with service.db.session() as session:
        body = "".join(labelled_lines(session, device, since, with_source, left_out))
    return Response(body.encode("utf-8"), media_type="application/x-ndjson", headers={
        "Content-Disposition": 'attachment; filename="labelled-lines.jsonl"',
        LEFT_OUT_HEADER: str(len(left_out))})


def mute_view(row: AlertMuteRow) -> MuteView:
    return MuteView(id=row.id, device_id=row.device_id, source=row.source, shape=row.shape,
                    prefix=row.prefix, reason=row.reason, created_by=row.created_by,
                    created_at=row.created_at, expires_at=row.expires_at, alert_id=row.alert_id)


MuteId = Annotated[str, PathParam(pattern=MUTE_ID_PATTERN, description="The mute's id.")]


def mute_as(service: FleetService, caller: Identity, alert_id: int, *, days: int,
            all_devices: bool, any_source: bool, reason: str,
            of_device: str | None = None) -> tuple[MuteChange, bool]:
    """``service.mutes.mute`` with the caller's scope, for the API and the console: a mute
    on every device needs admin (one such mute quiets a message on the whole fleet,
    devices that join later included, so a leaked deploy token — a CI job's — could hide
    an attack everywhere: review, December 2026), and without admin the deploy limits of
    :func:`fleet_server.mutes.mute_alert` apply. Raises :class:`WideMuteRefused` (403)."""
    admin = caller.allows("admin")
    if all_devices and not admin:
        raise WideMuteRefused(missing_scope_message(
            caller, "admin", "muting an alert on every device (mute it on the alert's own "
            "device instead: 'deploy' is enough)"))
    return service.mutes.mute(alert_id, days=days, all_devices=all_devices,
                              any_source=any_source, reason=reason, actor=caller.name,
                              of_device=of_device, deploy_only=not admin)


@router.post("/alerts/{alert_id}/mute", response_model=MuteCreated, status_code=201,
             tags=["mutes"], responses={200: {"model": MuteCreated, "description": (
                 "The same mute was active already (outcome extended or unchanged).")}})
def post_mute(alert_id: AlertId, body: MuteRequest, service: Service, _deploy: Operator,
              caller: Caller, response: Response) -> MuteCreated:
    """Stop the alert's device (or every device) sending alerts of this line's message
    shape for ``days``; the device's list is published retained over MQTT. A mute on
    every device needs the ``admin`` scope (it quiets the whole fleet)."""
    try:
        change, published = mute_as(service, caller, alert_id, days=body.days,
                                    all_devices=body.all_devices,
                                    any_source=body.any_source, reason=body.reason)
    except UnknownAlert as exc:
        raise ApiError(404, "unknown-alert", str(exc)) from None
    except WideMuteRefused as exc:
        raise ApiError(403, "forbidden", str(exc)) from None
    except MuteRefused as exc:
        raise ApiError(422, "invalid-mute", str(exc)) from None
    if change.outcome != "created":
        response.status_code = 200
    return MuteCreated(**mute_view(change.mute).model_dump(), outcome=change.outcome,
                       published=published)


@router.get("/mutes", response_model=MuteViews, tags=["mutes"])
def get_mutes(service: Service, device: Annotated[str | None, Query(
        pattern=DEVICE_ID_PATTERN, description="Only the mutes that apply to this device "
        "(its own and the every-device ones).")] = None) -> MuteViews:
    """The active (not expired) mutes, newest first."""
    with service.db.session() as session:
        return MuteViews(mutes=[mute_view(r) for r in active_mutes(
            session, time.time(), device)])


@router.delete("/mutes/{mute_id}", status_code=204, response_class=Response, tags=["mutes"],
               responses={204: {"description": "Lifted; the device lists are published."}})
def delete_mute(mute_id: MuteId, service: Service, actor: Operator) -> Response:
    """Lift a mute: the devices it applied to get a newer list without it."""
    try:
        service.mutes.lift(mute_id, actor)
    except UnknownMute as exc:
        raise ApiError(404, "unknown-mute", str(exc)) from None
    return Response(status_code=204)


@router.post("/mute-lists/resend", response_model=MutesResent, tags=["mutes"])
def resend_mutes(service: Service, actor: AdminOperator, device: Annotated[
        str | None, Query(pattern=DEVICE_ID_PATTERN, description="Only this device's list; "
                          "else every device's.")] = None,
        reset: Annotated[bool, Query(description="Mark the lists reset: each device applies "
                                     "its list whatever revision it holds. The way back from "
                                     "a list numbered beyond the server's (one a stolen server "
                                     "identity sent), which devices otherwise keep; they log "
                                     "it and count mute_lists_stale.")] = False) -> MutesResent:
    """Send the devices' mute lists again (they are also sent on every change and connect)."""
    lists, acked = service.mutes.resend(device, reset)
    with service.db.session() as session:
        session.add(AuditEntry(actor=actor, action="mutes-resend", at=time.time(),
                               subject=device or "every device",
                               detail={"reset": reset, "lists": lists, "acknowledged": acked}))
    return MutesResent(lists=lists, acknowledged=acked, reset=reset)


def shape_view(g: ShapeGroup) -> AlertShapeView:
    return AlertShapeView(
        shape=g.shape, prefix=g.prefix, mutable=g.mutable, source=g.source, count=g.count,
        alerts=g.alerts, repeats=g.repeats, labels=dict(sorted(g.labels.items())),
        devices=g.devices, device_ids=g.device_ids, first_received_at=g.first_received_at,
        last_received_at=g.last_received_at, alert_id=g.alert_id, false_alarms=g.false_alarms,
        right=g.right, muted=g.muted, muted_devices=g.muted_devices)


@router.get("/alert-shapes", response_model=AlertShapeList, tags=["alerts"])
def get_alert_shapes(
        service: Service,
        device: Annotated[str | None, Query(
            pattern=DEVICE_ID_PATTERN, description="Only this device's alerts (its own and "
            "the every-device mutes decide muted); else the whole fleet's.")] = None,
        since: Annotated[float | None, Query(
            ge=0, allow_inf_nan=False, description="Only alerts that arrived at this unix "
            "time or later.")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT,
                                    description="At most this many shapes.")] = 20,
        unjudged: Annotated[bool, Query(
            description="Leave out the shapes with a verdict on any of their alerts or an "
            "active mute covering them: what nobody has looked at yet.")] = False,
) -> AlertShapeList:
    """The kept alerts grouped by message shape and source, the most alerting first
    (alerts plus the repeats they carry), each with its labels, devices, newest alert,
    verdicts and mute state: judge and mute the top ones. Reads the newest alerts only
    (a bounded number; ``complete`` says whether that was all)."""
    scan = min(MAX_SCAN, service.metrics.policy.max_alerts)
    with service.db.session() as session:
        ranking = shape_ranking(session, device, since, time.time(), limit=limit,
                                unjudged=unjudged, max_rows=scan)
    return AlertShapeList(shapes=[shape_view(g) for g in ranking.groups],
                          total_shapes=ranking.shapes, alerts_read=ranking.alerts_read,
                          complete=ranking.complete)
