"""The console's pages and fragments (``/console/...``): thin handlers that read through
the view models (:mod:`.overview`, :mod:`.details`) and act through the services the
REST API uses (:class:`fleet_server.rollouts.manage.Rollouts`). The device page and the
operators' actions on its alerts are in :mod:`.device_routes`."""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlencode

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from fleet_server.api.core import Service
from fleet_server.console import details, device_routes, sessions
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
from fleet_server.rollouts.manage import OperationRefused
from fleet_server.rollouts.records import ACTIVE_STATUSES
from fleet_server.service import FleetService

router = APIRouter(prefix=PREFIX, include_in_schema=False)
StateParam = Literal["", "online", "stale", "offline", "unknown", "quarantined", "revoked"]


# --- signing in and out -----------------------------------------------------------------------

def _safe_next(target: str | None) -> str:
    """Only a console path (never another site, nor a path that dot segments take out of
    the console: browsers resolve ``/console/../x`` and ``/console/%2e%2e/x`` to ``/x``)
    after signing in."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") \
            and "\\" not in target and target.isprintable():
        path = unquote(target.split("?", 1)[0].split("#", 1)[0])
        if not any(part in (".", "..") for part in path.split("/")):
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
    app.include_router(device_routes.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC), name="console-static")
