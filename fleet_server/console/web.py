"""The console's HTTP plumbing: templates, who is signed in, CSRF, response headers.

Pages are Jinja2 templates rendered on the server; htmx (vendored, static/) polls
fragments for live updates and uPlot draws the device metrics. Nothing here decides
anything about the fleet: see :mod:`.overview`, :mod:`.details` and the services.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from contract.display import printable
from fleet_server.api.core import Service
from fleet_server.auth import SCOPES, missing_scope_message
from fleet_server.console import charts
from fleet_server.console.sessions import COOKIE, SignedIn, csrf_ok, lookup

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))


def _shown(value: Any) -> Any:
    """Every ``{{ ... }}`` string on a page goes through :func:`printable` before it is
    escaped: escaping stops markup, not a bidi override in a log line that makes it read
    differently (review, December 2026). Markup (already HTML, e.g. ``tojson``) is left
    alone: it is ours."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return printable(value)
    return value


templates.env.finalize = _shown
def _segment(value: object) -> str:
    """One path segment of a link ("/" encoded): a device names its models and its OTA
    reports' rollouts, and `../../rollouts/x` must not become a link to another page. A
    name that is ".." or "." would still be a dot segment, encoded or not (the URL standard
    reads "%2e%2e" as ".." too): the browser went one page up (review, December 2026).
    Such a name, and an empty one, links to "-", which names no release or rollout."""
    text = quote(str(value), safe="")
    return "-" if text in ("", ".", "..") else text


templates.env.filters["segment"] = _segment
PREFIX = "/console"
CSRF_HEADER = "X-CSRF-Token"
LOGIN_CSRF_COOKIE = "nanofleet_console_login"
# Scripts and styles only from this server (htmx and uPlot are vendored files); uPlot
# sizes its canvas through element styles, which CSP's style-src allows from scripts.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """No valid session: the handler sends the browser to the sign-in page."""


class NotAllowed(Exception):
    """A signed-in operator whose token lacks a scope, or a form without its CSRF token."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message, self.status = message, status


def _when(ts: float | None) -> str:
    if not ts:
        return "—"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(ts: float | None) -> str:
    if not ts:
        return "never"
    s = time.time() - ts
    if s < 0:
        return "just now"
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.0f} {unit} ago"
    return f"{s:.0f} s ago"


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _pct(value: float) -> str:
    """A percentage readable when tiny (deltas are often a fraction of a percent)."""
    return f"{value:.1f} %" if value >= 1 or value == 0 else f"{value:.2g} %"


def _short(value: Any, limit: int = 120) -> str:
    """An audit detail value on one line: scalars as they are, the rest as JSON."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[:limit - 1] + "…"


templates.env.filters.update(when=_when, ago=_ago, size=_size, pct=_pct, short=_short)
templates.env.globals.update(prefix=PREFIX, charts=charts, scopes=SCOPES)


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def secure_cookie(request: Request) -> bool:
    """Secure cookies when the browser reached us over TLS (directly or via a proxy that
    says so)."""
    return request.url.scheme == "https" or \
        request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def render(request: Request, template: str, context: dict[str, Any],
           status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    signed_in: SignedIn | None = getattr(request.state, "console", None)
    base = {"request": request, "me": signed_in.identity if signed_in else None,
            "csrf": signed_in.csrf if signed_in else "",
            "can_deploy": bool(signed_in and signed_in.identity.allows("deploy")),
            "can_admin": bool(signed_in and signed_in.identity.allows("admin")),
            "refresh_s": request.app.state.service.config.console.refresh_s}
    response = templates.TemplateResponse(request, template, {**base, **context},
                                          status_code=status)
    response.headers.update({**SECURITY_HEADERS, **(headers or {})})
    return response


def redirect(url: str, request: Request) -> Response:
    """See other (after a form); for htmx, its own redirect header."""
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": url, **SECURITY_HEADERS})
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


async def signed_in(request: Request, service: Service) -> SignedIn:
    """The operator of this browser, or LoginRequired. State-changing requests must carry
    the session's CSRF token (form field ``csrf`` or the ``X-CSRF-Token`` header)."""
    with service.db.session() as session:
        # The pages' live fragments are htmx polls (every hx-get is one): not the
        # operator's use, so they do not keep the session from going idle.
        polled = request.method == "GET" and request.headers.get("HX-Request") == "true"
        found = lookup(session, request.cookies.get(COOKIE), service.config.operator_tokens,
                       time.time(), service.config.console.session_idle_s,
                       service.config.console.session_max_s, used=not polled)
    if found is None:
        raise LoginRequired()
    request.state.console = found
    if request.method not in ("GET", "HEAD"):
        sent = request.headers.get(CSRF_HEADER)
        if sent is None:
            form = await request.form()
            value = form.get("csrf")
            sent = value if isinstance(value, str) else None
        if not csrf_ok(found, sent):
            raise NotAllowed("this form is out of date or did not come from the console "
                             "(missing or wrong CSRF token): reload the page and try again")
    return found


Operator = Annotated[SignedIn, Depends(signed_in)]


def require_deploy(operator: SignedIn, what: str) -> None:
    if not operator.identity.allows("deploy"):
        raise NotAllowed(missing_scope_message(operator.identity, "deploy", what))


def require_admin(operator: SignedIn, what: str) -> None:
    if not operator.identity.allows("admin"):
        raise NotAllowed(missing_scope_message(operator.identity, "admin", what))


async def login_required_handler(request: Request, _exc: Exception) -> Response:
    target = request.url.path if request.method == "GET" and not is_htmx(request) else \
        f"{PREFIX}/fleet"
    url = f"{PREFIX}/login?next={target}"
    if is_htmx(request):
        return Response(status_code=401, headers={"HX-Redirect": url, **SECURITY_HEADERS})
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


async def not_allowed_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotAllowed)
    return render(request, "error.html", {"title": "Not allowed", "message": exc.message},
                  status=exc.status)
