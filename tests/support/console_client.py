"""The web console as a browser-like HTTP client sees it, for tests against a real server:
an operator token, a signed-in session, the session's CSRF token and the page's notice."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from hil.fleet import FleetSetup
from tests.support.alert_fleet import api


def operator_token(setup: FleetSetup, name: str, scope: str, *more: str) -> str:
    """A new operator token named ``name`` with these scopes (``read``, ``deploy``,
    ``admin``)."""
    r = api(setup, "POST", "/api/v1/tokens", json={"name": name, "scopes": [scope, *more]})
    assert r.status_code == 201, r.text
    value: str = r.json()["token"]
    return value


@contextmanager
def console(setup: FleetSetup, token: str, next_path: str = "/console/fleet"
            ) -> Iterator[httpx.Client]:
    """A client signed in to the console with ``token`` (the sign-in form's own
    double-submit nonce, then the session cookie), sent on to ``next_path``."""
    with httpx.Client(base_url=setup.url, timeout=30) as client:
        form = client.get("/console/login")
        nonce = form.text.split('name="login_csrf" value="', 1)[1].split('"', 1)[0]
        r = client.post("/console/login", data={"token": token, "login_csrf": nonce,
                                                "next": next_path})
        assert r.status_code == 303 and r.headers["location"] == next_path, r.text
        yield client


def csrf_of(page: str) -> str:
    """The session's CSRF token, as the sign-out form in the header carries it."""
    found = re.search(r'<form method="post" action="/console/logout">\s*'
                      r'<input type="hidden" name="csrf" value="([^"]+)">', page)
    assert found, page
    return found.group(1)


def notice(page: str, kind: str = "error") -> str:
    """The text of the page's notice (``error``, or ``warn``)."""
    found = re.search(rf'<p class="notice {kind}" role="alert">([^<]*)</p>', page)
    assert found, page
    return html.unescape(found.group(1))
