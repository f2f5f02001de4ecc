"""Operator API for devices' alerts and the operators' verdicts on them.

``GET /alerts`` lists the alerts the server keeps (newest first, with their verdicts);
``POST /alerts/{id}/verdict`` says whether one was right (``deploy`` scope, audited);
``GET /labelled-lines`` exports the judged lines as the JSONL ``nanofleet model train``
and ``nanofleet model eval --alerts`` read (:mod:`fleet_server.verdicts`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from fleet_server.api.core import ApiError, Operator, Service
from fleet_server.api.schemas import AlertList, AlertView, VerdictRequest, VerdictView
from fleet_server.metrics_store import DeviceAlertRow, recent_alerts
from fleet_server.verdicts import (
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
        judged = verdicts_of(session, [r.msg_id for r in rows])
        return AlertList(alerts=[alert_view(r, judged.get(r.msg_id)) for r in rows])


@router.post("/alerts/{alert_id}/verdict", response_model=AlertView, tags=["alerts"])
def post_verdict(alert_id: int, body: VerdictRequest, service: Service,
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
    ``source`` too when asked (``nanofleet model eval --alerts``); oldest first."""
    with service.db.session() as session:
        body = "".join(labelled_lines(session, device, since, with_source))
    return Response(body.encode("utf-8"), media_type="application/x-ndjson", headers={
        "Content-Disposition": 'attachment; filename="labelled-lines.jsonl"'})
