"""The console's device page (``/console/devices/{id}``) and what an operator does from
it: judge an alert (:mod:`fleet_server.verdicts`), mute its message or lift a mute
(:class:`fleet_server.mute_publisher.MutePublisher`). Thin handlers, as in
:mod:`.routes`; a form's refusal comes back as a notice on the page."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from contract.labels import DEFAULT_LABELS
from contract.mutes import MAX_MUTE_DAYS
from fleet_server.api.alerts import AlertId, mute_as
from fleet_server.api.core import Service
from fleet_server.console import details
from fleet_server.console.web import (
    PREFIX,
    Operator,
    redirect,
    render,
    require_admin,
    require_deploy,
)
from fleet_server.identity.tokens import EnrollmentRefused
from fleet_server.metrics_store import DeviceAlertRow
from fleet_server.mute_rules import (
    MuteRefused,
    UnknownAlert,
    UnknownMute,
    WideMuteRefused,
)
from fleet_server.service import FleetService
from fleet_server.verdicts import LABEL_PATTERN, Verdict, VerdictRefused, judge

router = APIRouter(prefix=PREFIX, include_in_schema=False)


# --- devices ----------------------------------------------------------------------------------

def _device(request: Request, service: FleetService, device_id: str, window: str,
            template: str, message: dict[str, Any] | None = None,
            status: int = 200) -> Response:
    identity = request.app.state.identity.device_view(device_id)
    view = details.device_page(service, identity, device_id, window, time.time())
    if view is None:
        return render(request, "error.html", {
            "title": "No such device", "message": f"device {device_id!r} has never reported "
            "and never enrolled: check the id"}, status=404)
    return render(request, template, {"d": view, "windows": list(details.WINDOWS),
                                      "mute_days": MUTE_DAY_CHOICES,
                                      "default_labels": list(DEFAULT_LABELS),
                                      "message": message}, status=status)


@router.get("/devices/{device_id}")
def device_page(request: Request, service: Service, _op: Operator, device_id: str,
                window: str = "1h") -> Response:
    return _device(request, service, device_id, window, "device.html")


@router.get("/devices/{device_id}/live")
def device_live(request: Request, service: Service, _op: Operator, device_id: str,
                window: str = "1h") -> Response:
    return _device(request, service, device_id, window, "device_live.html")


def _device_notice(request: Request, service: FleetService, device_id: str, text: str,
                   status: int, kind: str = "error") -> Response:
    """The device page with a notice above it (a refused or half-done form)."""
    return _device(request, service, device_id, "1h", "device.html",
                   {"kind": kind, "text": text}, status=status)


def _back_to_device(request: Request, device_id: str) -> Response:
    """Post/redirect/get: back to the device page (reloading it does not post again)."""
    return redirect(f"{PREFIX}/devices/{quote(device_id, safe='')}", request)


def _no_alert(device_id: str, alert_id: int) -> str:
    return (f"no alert {alert_id} on device {device_id}: the server keeps alerts for a while "
            "only (the table lists those it has)")


MUTE_DAY_CHOICES = (1, 7, 30, MAX_MUTE_DAYS)  # the device page's "Mute for" choices


def _form_days(value: str) -> int:
    """The mute form's ``days`` field as a number (its range is mute_alert's to check)."""
    if not re.fullmatch(r"[0-9]{1,3}", value.strip()):
        raise MuteRefused(f"days must be a whole number from 1 to {MAX_MUTE_DAYS} (got "
                          f"{value[:20]!r})")
    return int(value)


def _form_flag(value: str) -> bool:
    """A checkbox: sent (``on``, or the value the form gives it) or not."""
    return value.strip().lower() in ("1", "on", "true", "yes")


def _after_change(request: Request, service: FleetService, device_id: str, published: bool,
                  what: str) -> Response:
    """Back to the device page, or, when the broker did not acknowledge the device lists
    the change made, the page with a warning saying so."""
    if published:
        return _back_to_device(request, device_id)
    return _device_notice(request, service, device_id, (
        f"{what}, but the broker did not acknowledge the device lists it changed: the "
        "server sends every list again when it reconnects to the broker; until then the "
        "devices keep their previous list"), 202, kind="warn")


# Before the verdicts' route, whose last segment would otherwise take "mute" for a verdict.
@router.post("/devices/{device_id}/alerts/{alert_id}/mute")
def alert_mute(request: Request, service: Service, operator: Operator, device_id: str,
               alert_id: AlertId, days: Annotated[str, Form()] = "7",
               all_devices: Annotated[str, Form()] = "",
               any_source: Annotated[str, Form()] = "",
               reason: Annotated[str, Form()] = "") -> Response:
    """Mute the message shape of one of the device's alerts (the "mute" button of its
    alerts table), as ``POST /api/v1/alerts/{id}/mute`` does: :func:`mute_alert` (which
    audits itself), then, once committed, the changed lists published retained. Form
    fields, all optional: ``days`` (7), ``all_devices``, ``any_source``, ``reason``."""
    require_deploy(operator, "muting an alert")
    try:
        # Only the alerts this page lists (of_device): see alert_verdict.
        change, published = mute_as(
            service, operator.identity, alert_id, days=_form_days(days),
            all_devices=_form_flag(all_devices), any_source=_form_flag(any_source),
            reason=reason.strip(), of_device=device_id)
    except UnknownAlert:
        return _device_notice(request, service, device_id, _no_alert(device_id, alert_id), 404)
    except WideMuteRefused as exc:
        return _device_notice(request, service, device_id, str(exc), 403)
    except MuteRefused as exc:
        # A refused mute touches nothing (mute_alert decides before it writes).
        return _device_notice(request, service, device_id, str(exc), 422)
    return _after_change(request, service, device_id, published, "The mute is stored")


@router.post("/devices/{device_id}/mutes/{mute_id}/unmute")
def mute_lift(request: Request, service: Service, operator: Operator, device_id: str,
              mute_id: str) -> Response:
    """Lift one of the mutes that apply to the device (its "Muted here" list), as
    ``DELETE /api/v1/mutes/{id}`` does: :func:`unmute` (audited), then the lists it
    changed published (every device's for an every-device mute)."""
    require_deploy(operator, "lifting a mute")
    try:
        # Only the mutes this page lists: another device's would be lifted blind.
        _, published = service.mutes.lift(mute_id, operator.identity.name,
                                          applying_to=device_id)
    except UnknownMute:
        return _device_notice(request, service, device_id, (
            f"no mute {mute_id[:40]!r} applies to device {device_id}: it was lifted, or it "
            "expired (Muted here lists the active ones)"), 404)
    return _after_change(request, service, device_id, published, "The mute is lifted")


@router.post("/devices/{device_id}/release")
def quarantine_release(request: Request, service: Service, operator: Operator,
                       device_id: str) -> Response:
    """End the device's quarantine now, as ``DELETE /api/v1/devices/{id}/quarantine`` does
    (admin, like quarantining: who may reach the broker is identity management)."""
    require_admin(operator, "releasing a quarantined device")
    try:
        released = request.app.state.quarantines.release(device_id, operator.identity.name)
    except EnrollmentRefused as exc:
        return _device_notice(request, service, device_id, exc.message, exc.status)
    if released["broker_reloaded"]:
        return _back_to_device(request, device_id)
    return _device_notice(request, service, device_id, (
        f"released, but the broker was not told: {released['next_step']}"), 202, kind="warn")


@router.post("/devices/{device_id}/alerts/{alert_id}/{verdict}")
def alert_verdict(request: Request, service: Service, operator: Operator, device_id: str,
                  alert_id: AlertId, verdict: Verdict,
                  label: Annotated[str, Form()] = "") -> Response:
    """An operator's verdict on one of the device's alerts (the buttons of its alerts
    table), stored and audited as ``POST /api/v1/alerts/{id}/verdict`` does; then back to
    the device page (post/redirect/get: reloading it does not post again). Form field
    ``label`` (optional): for "right", the line's true category when the alert's was
    wrong (the page's "Judging an alert" choice)."""
    require_deploy(operator, "a verdict on an alert")
    actor = operator.identity.name
    chosen = label.strip() or None
    if chosen is not None and not re.fullmatch(LABEL_PATTERN, chosen):
        return _device_notice(request, service, device_id, (
            f"category {chosen[:70]!r} is not a label: lower-case letters, digits, - and _ "
            "(e.g. storage)"), 422)
    try:
        with service.db.session() as session:
            alert = session.get(DeviceAlertRow, alert_id)
            if alert is not None and alert.device_id != device_id:
                # Another device's alert through this device's page would be judged under
                # the wrong heading: only the alerts this page can list are accepted.
                alert = None
            if alert is not None:
                judge(session, alert, verdict, chosen, actor)
    except VerdictRefused as exc:
        # Caught outside the transaction: a refused verdict commits nothing (judge()
        # decides before it touches the row; the rollback is the second guard).
        return _device_notice(request, service, device_id, str(exc), 422)
    if alert is None:
        return _device_notice(request, service, device_id, _no_alert(device_id, alert_id), 404)
    return _back_to_device(request, device_id)
