"""The console's pages and fragments (``/console/...``): thin handlers that read through
the view models (:mod:`.overview`, :mod:`.details`) and act through the services the
REST API uses (:class:`fleet_server.rollouts.manage.Rollouts`)."""

from __future__ import annotations

import re
import secrets
import time
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from contract.labels import DEFAULT_LABELS
from contract.mutes import MAX_MUTE_DAYS
from fleet_server.api.core import Service
from fleet_server.console import details, sessions
from fleet_server.console.forms import DEFAULTS, LABELS, parse_rollout_form
from fleet_server.console.overview import DISPLAY_STATES, OverviewFilter, overview
from fleet_server.console.web import (
    LOGIN_CSRF_COOKIE,
    PREFIX,
    STATIC,
    LoginRequired,
    NotAllowed,
    Operator,
    login_required_handler,
    not_allowed_handler,
    redirect,
    render,
    require_deploy,
    secure_cookie,
)
from fleet_server.metrics_store import DeviceAlertRow
from fleet_server.mutes import (
    MuteRefused,
    UnknownAlert,
    UnknownMute,
)
from fleet_server.rollouts.manage import OperationRefused
from fleet_server.rollouts.records import ACTIVE_STATUSES
from fleet_server.service import FleetService
from fleet_server.verdicts import LABEL_PATTERN, Verdict, VerdictRefused, judge

router = APIRouter(prefix=PREFIX, include_in_schema=False)
StateParam = Literal["", "online", "stale", "offline", "unknown", "revoked"]


# --- signing in and out -----------------------------------------------------------------------

def _safe_next(target: str | None) -> str:
    """Only a console path (never another site) after signing in."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return f"{PREFIX}/fleet"


def _login_page(request: Request, next_url: str, error: str | None, status: int) -> Response:
    nonce = secrets.token_urlsafe(24)  # double-submit: cookie and form field must agree
    response = render(request, "login.html", {"next": next_url, "error": error,
                                              "login_csrf": nonce}, status=status)
    response.set_cookie(LOGIN_CSRF_COOKIE, nonce, httponly=True, samesite="strict",
                        secure=secure_cookie(request), path=PREFIX)
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(request, _safe_next(next), None, 200)


@router.post("/login")
def login(request: Request, service: Service, token: Annotated[str, Form()] = "",
          login_csrf: Annotated[str, Form()] = "",
          next: Annotated[str, Form()] = "") -> Response:
    target = _safe_next(next)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not secrets.compare_digest(cookie, login_csrf):
        return _login_page(request, target, "the sign-in form expired: please try again", 400)
    try:
        with service.db.session() as session:
            session_id, _ = sessions.sign_in(session, token, service.config.operator_tokens,
                                             time.time(), service.config.console.session_idle_s)
    except sessions.SignInRefused as exc:
        return _login_page(request, target, str(exc), 401)
    response = redirect(target, request)
    # A browser-session cookie: the server ends the session after session_idle_s idle.
    response.set_cookie(sessions.COOKIE, session_id, httponly=True, samesite="strict",
                        secure=secure_cookie(request), path=PREFIX)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
def logout(request: Request, service: Service, operator: Operator) -> Response:
    with service.db.session() as session:
        sessions.sign_out(session, request.cookies.get(sessions.COOKIE),
                          operator.identity.name, time.time())
    response = redirect(f"{PREFIX}/login", request)
    response.delete_cookie(sessions.COOKIE, path=PREFIX)
    return response


# --- fleet overview ---------------------------------------------------------------------------

@router.get("")
@router.get("/")
def home(request: Request) -> Response:
    return redirect(f"{PREFIX}/fleet", request)


def _filters(state: str, group: str, tag: str, q: str, page: int) -> OverviewFilter:
    return OverviewFilter(state=state or None,  # type: ignore[arg-type]
                          group=group or None, tag=tag or None, search=q.strip() or None,
                          page=page)


def _fleet(request: Request, service: FleetService, template: str, state: StateParam,
           group: str, tag: str, q: str, page: int) -> Response:
    f = _filters(state, group, tag, q, page)
    view = overview(service, f, time.time())
    query = {k: v for k, v in (("state", state), ("group", group), ("tag", tag), ("q", q))
             if v}
    return render(request, template, {"view": view, "states": DISPLAY_STATES,
                                      "query": urlencode(query)})


@router.get("/fleet")
def fleet_page(request: Request, service: Service, _op: Operator, state: StateParam = "",
               group: str = "", tag: str = "", q: str = "",
               page: Annotated[int, Query(ge=1)] = 1) -> Response:
    return _fleet(request, service, "fleet.html", state, group, tag, q, page)


@router.get("/fleet/live")
def fleet_live(request: Request, service: Service, _op: Operator, state: StateParam = "",
               group: str = "", tag: str = "", q: str = "",
               page: Annotated[int, Query(ge=1)] = 1) -> Response:
    return _fleet(request, service, "fleet_live.html", state, group, tag, q, page)


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


def _unsent(what: str) -> str:
    return (f"{what}, but the broker did not acknowledge the device lists it changed: the "
            "server sends every list again when it reconnects to the broker; until then "
            "the devices keep their previous list")


# Before the verdicts' route, whose last segment would otherwise take "mute" for a verdict.
@router.post("/devices/{device_id}/alerts/{alert_id}/mute")
def alert_mute(request: Request, service: Service, operator: Operator, device_id: str,
               alert_id: int, days: Annotated[str, Form()] = "7",
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
        change, published = service.mutes.mute(
            alert_id, days=_form_days(days), all_devices=_form_flag(all_devices),
            any_source=_form_flag(any_source), reason=reason.strip(),
            actor=operator.identity.name, of_device=device_id)
    except UnknownAlert:
        return _device_notice(request, service, device_id, _no_alert(device_id, alert_id), 404)
    except MuteRefused as exc:
        # A refused mute touches nothing (mute_alert decides before it writes).
        return _device_notice(request, service, device_id, str(exc), 422)
    if not published:
        return _device_notice(request, service, device_id,
                              _unsent("The mute is stored"), 202, kind="warn")
    return _back_to_device(request, device_id)


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
    if not published:
        return _device_notice(request, service, device_id,
                              _unsent("The mute is lifted"), 202, kind="warn")
    return _back_to_device(request, device_id)


@router.post("/devices/{device_id}/alerts/{alert_id}/{verdict}")
def alert_verdict(request: Request, service: Service, operator: Operator, device_id: str,
                  alert_id: int, verdict: Verdict,
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


# --- releases ---------------------------------------------------------------------------------

@router.get("/releases")
def releases_page(request: Request, service: Service, _op: Operator) -> Response:
    return render(request, "releases.html", {"models": details.releases(service),
                                             "signed": details.targets_signers(service)})


@router.get("/releases/{model}/{version}")
def release_page(request: Request, service: Service, _op: Operator, model: str,
                 version: int) -> Response:
    view = details.release(service, model, version, time.time())
    if view is None:
        return render(request, "error.html", {
            "title": "No such release", "message": f"{model} v{version} is not published "
            "(see Releases)"}, status=404)
    return render(request, "release.html", {"r": view,
                                            "signed": details.targets_signers(service)})


# --- rollouts ---------------------------------------------------------------------------------

@router.get("/rollouts")
def rollouts_page(request: Request, service: Service, _op: Operator,
                  status: str = "") -> Response:
    rollouts = service.rollouts.list(status or None, limit=25)
    return render(request, "rollouts.html", {"rollouts": rollouts, "status": status,
                                             "active": ACTIVE_STATUSES})


def _new_form(request: Request, service: FleetService, values: dict[str, str],
              errors: dict[str, str], status: int = 200) -> Response:
    models = details.releases(service)
    published = "; ".join(f"{m['model']} " + ", ".join(f"v{v['version']}"
                                                         for v in m["versions"])
                          for m in models)
    return render(request, "rollout_new.html", {
        "values": values, "errors": errors, "labels": LABELS, "models": models,
        "published": published}, status=status)


@router.get("/rollouts/new")
def new_rollout(request: Request, service: Service, operator: Operator, model: str = "",
                version: str = "") -> Response:
    require_deploy(operator, "creating a rollout")
    return _new_form(request, service, {**DEFAULTS, "model": model, "version": version}, {})


@router.post("/rollouts")
async def create_rollout(request: Request, service: Service, operator: Operator) -> Response:
    require_deploy(operator, "creating a rollout")
    form = parse_rollout_form(await request.form())
    if form.request is None:
        return _new_form(request, service, form.values, form.errors, status=400)
    try:
        view = service.rollouts.create(form.request, operator.identity.name)
    except OperationRefused as exc:
        return _new_form(request, service, form.values, {"form": exc.message}, status=exc.status)
    return redirect(f"{PREFIX}/rollouts/{view.id}", request)


def _rollout(request: Request, service: FleetService, rollout_id: str, template: str,
             message: dict[str, Any] | None = None) -> Response:
    try:
        view = service.rollouts.get(rollout_id, with_devices=True, log_lines=30)
    except OperationRefused as exc:
        return render(request, "error.html", {"title": "No such rollout",
                                              "message": exc.message}, status=exc.status)
    return render(request, template, {"r": view, "active": ACTIVE_STATUSES,
                                      "message": message})


@router.get("/rollouts/{rollout_id}")
def rollout_page(request: Request, service: Service, _op: Operator,
                 rollout_id: str) -> Response:
    return _rollout(request, service, rollout_id, "rollout.html")


@router.get("/rollouts/{rollout_id}/live")
def rollout_live(request: Request, service: Service, _op: Operator,
                 rollout_id: str) -> Response:
    return _rollout(request, service, rollout_id, "rollout_live.html")


@router.post("/rollouts/{rollout_id}/{action}")
def rollout_action(request: Request, service: Service, operator: Operator, rollout_id: str,
                   action: Literal["pause", "resume", "abort"]) -> Response:
    require_deploy(operator, f"{action} of a rollout")
    do = {"pause": service.rollouts.pause, "resume": service.rollouts.resume,
          "abort": service.rollouts.abort}[action]
    try:
        do(rollout_id, operator.identity.name)
    except OperationRefused as exc:
        return _rollout(request, service, rollout_id, "rollout.html",
                        {"kind": "error", "text": exc.message})
    return redirect(f"{PREFIX}/rollouts/{rollout_id}", request)


# --- audit ------------------------------------------------------------------------------------

@router.get("/audit")
def audit_page(request: Request, service: Service, _op: Operator, actor: str = "",
               action: str = "", subject: str = "",
               page: Annotated[int, Query(ge=1)] = 1) -> Response:
    f = details.AuditFilter(actor=actor or None, action=action or None,
                            subject=subject.strip() or None, page=page)
    query = {k: v for k, v in (("actor", actor), ("action", action), ("subject", subject))
             if v}
    return render(request, "audit.html", {"a": details.audit(service, f),
                                          "query": urlencode(query)})


def install(app: FastAPI, service: FleetService) -> None:
    """Add the console to the app (if enabled): pages and static files (its tables come
    with the schema: fleet_server/schema.py, fleet_server/migrations)."""
    if not service.config.console.enabled:
        return
    app.add_exception_handler(LoginRequired, login_required_handler)
    app.add_exception_handler(NotAllowed, not_allowed_handler)
    app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
