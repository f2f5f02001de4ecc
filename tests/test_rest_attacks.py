"""Attacks on the fleet server's HTTP API, against a real `nanofleet server run` process.

One test case per attack: request bodies that never end (chunked, so no
Content-Length to check), with and without a token; an internal failure whose text
would reach the caller; the unauthenticated health endpoint as a window on internals.
"""

from __future__ import annotations

import json
import re
import select
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest

from fleet_server.api.guards import MAX_ANONYMOUS_BODY_BYTES, MAX_API_BODY_BYTES
from hil.fleet import FleetServer, setup_fleet
from tests.support.mosquitto import Mosquitto

UPLOAD_LIMIT = 1024 * 1024
ENDLESS = 96 * 1024 * 1024  # what the attacker offers
CHUNK = 256 * 1024


def answered_after(server: FleetServer, path: str, headers: dict[str, str],
                   preamble: bytes = b"") -> tuple[int, int]:
    """POST a chunked body of ENDLESS bytes (no Content-Length); (HTTP status, bytes sent
    when the answer came). A server that reads to the end answers only after all of it."""
    host, port = server.url.removeprefix("http://").split(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        sent = 0
        chunks = [preamble] if preamble else []
        try:
            while sent < ENDLESS:
                data = chunks.pop() if chunks else b"a" * CHUNK
                s.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                sent += len(data)
                if select.select([s], [], [], 0)[0]:
                    break  # the server answered before the body ended
            else:
                s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # it answered and closed while we were writing
        answer = s.recv(65536)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, sent


def chunked_upload_stops_at_the_limit(server: FleetServer) -> None:
    """A publish without Content-Length (before: read to the end, spooled to disk, then
    refused by size): refused with 413 once the body passes max_upload_bytes."""
    part = (b'--x\r\nContent-Disposition: form-data; name="files"; filename="targets/m.nfb"'
            b"\r\nContent-Type: application/octet-stream\r\n\r\n")
    status, sent = answered_after(server, "/api/v1/models/publish", {
        "Authorization": f"Bearer {server.setup.token}",
        "Content-Type": "multipart/form-data; boundary=x"}, part)
    assert status == 413 and sent < UPLOAD_LIMIT + 16 * 1024 * 1024, (status, sent)


def unauthenticated_endless_json_stops_at_the_limit(server: FleetServer) -> None:
    """No token, an endless JSON body (before: FastAPI read the whole body into memory
    before it checked the token)."""
    status, sent = answered_after(server, "/api/v1/deployments",
                                  {"Content-Type": "application/json"})
    assert status == 413 and sent < MAX_API_BODY_BYTES + 16 * 1024 * 1024, (status, sent)


def declared_length_over_the_limit_is_refused_unread(server: FleetServer) -> None:
    """Unauthenticated enrollment announcing a huge JSON body: answered before any of it."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"POST /api/v1/enroll HTTP/1.1\r\nHost: {host}\r\nContent-Type: "
                  f"application/json\r\nContent-Length: {MAX_API_BODY_BYTES + 1}\r\n\r\n"
                  .encode())
        answer = b""
        while chunk := s.recv(65536):  # the server closes after its answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"too-large"' in answer


def anonymous_bodies_are_small_before_anything_parses_them(server: FleetServer) -> None:
    """Review, December 2026: FastAPI parses a JSON body before the route checks the
    token, so anyone could make the server parse 8 MiB (a few such clients: 634 MB, and
    every device's timestamp.json poll slowed thirtyfold). Without a known operator token
    a body may have 64 KiB; the console's forms (sign-in is anonymous) too."""
    body = json.dumps({"devices": ["pump-07"] * 20_000}).encode()  # ~220 KB
    assert len(body) > MAX_ANONYMOUS_BODY_BYTES
    url = server.url + "/api/v1/deployments"
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        r = httpx.post(url, content=body, timeout=10,
                       headers={"Content-Type": "application/json", **headers})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too-large", r.text
    r = httpx.post(url, content=body, timeout=30, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {server.setup.token}"})
    assert r.status_code not in (401, 413), r.text  # an operator's body is read and judged
    r = httpx.post(server.url + "/console/login", content=b"token=" + b"a" * 100_000,
                   timeout=10, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413


def health_shows_only_what_a_load_balancer_needs(server: FleetServer) -> None:
    """Before: pid, broker counters and internal error texts, without a token."""
    r = httpx.get(server.url + "/api/v1/health", timeout=10)
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert httpx.get(server.url + "/api/v1/health/detail", timeout=10).status_code == 401
    assert "pid" in server.health()["replica"]  # with a token, the details


def internal_errors_do_not_leak_their_text(server: FleetServer) -> None:
    """Another process holds the database's write lock longer than the server waits: the
    caller gets an incident id, the log the detail (before: the exception text)."""
    db = sqlite3.connect(server.setup.config.data_dir / "fleet.db", isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        r = httpx.post(server.url + "/api/v1/tokens", timeout=30,
                       json={"name": "ci-reader", "scopes": ["read"]},
                        headers={"Authorization": f"Bearer {server.setup.token}"})
    finally:
        db.rollback()
        db.close()
    assert r.status_code == 500, r.text
    message = r.json()["error"]["message"]
    incident = re.search(r"incident ([0-9a-f]{12})", message)
    assert incident is not None, message
    assert "locked" not in message.lower() and "sqlite" not in message.lower()
    assert f"unhandled error {incident.group(1)}" in server.log()
    assert "database is locked" in server.log()


def _open_upload(server: FleetServer) -> socket.socket:
    """A publish whose body has begun and goes on slowly (held open by the caller)."""
    host, port = server.url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=30)
    part = (b'--x\r\nContent-Disposition: form-data; name="files"; filename="targets/m.nfb"'
            b"\r\nContent-Type: application/octet-stream\r\n\r\n")
    s.sendall(f"POST /api/v1/models/publish HTTP/1.1\r\nHost: {host}\r\nAuthorization: "
              f"Bearer {server.setup.token}\r\nContent-Type: multipart/form-data; boundary=x"
              f"\r\nTransfer-Encoding: chunked\r\n\r\n{len(part):x}\r\n".encode()
              + part + b"\r\n")
    return s


def concurrent_uploads_are_bounded(server: FleetServer) -> None:
    """Many slow publishes at once (a deploy token's holder, or a CI job gone wrong): each
    held up to twice max_upload_bytes on disk while received (before: no bound on how
    many). Past max_concurrent_publishes (2 by default) they are refused with 429 before
    their body is read; a finished one frees its place."""
    held = [_open_upload(server), _open_upload(server)]
    try:
        def third() -> httpx.Response:
            return httpx.post(server.url + "/api/v1/models/publish", timeout=30,
                              headers={"Authorization": f"Bearer {server.setup.token}"},
                              files={"metadata": ("targets.json", b"{}")})

        deadline = time.monotonic() + 20
        while (r := third()).status_code != 429 and time.monotonic() < deadline:
            time.sleep(0.2)  # until both held uploads are being received
        assert r.status_code == 429, r.text
        assert r.json()["error"]["code"] == "publish-busy"
        assert "max_concurrent_publishes" in r.json()["error"]["message"]
        held.pop().close()
        deadline = time.monotonic() + 20
        while (r := third()).status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.2)  # the closed upload's place is freed
        assert r.status_code == 400, r.text  # received and judged: not a signed release
    finally:
        for s in held:
            s.close()


ATTACKS: dict[str, Callable[[FleetServer], None]] = {
    f.__name__: f for f in (chunked_upload_stops_at_the_limit,
                            unauthenticated_endless_json_stops_at_the_limit,
                            declared_length_over_the_limit_is_refused_unread,
                            anonymous_bodies_are_small_before_anything_parses_them,
                            health_shows_only_what_a_load_balancer_needs,
                            internal_errors_do_not_leak_their_text,
                            concurrent_uploads_are_bounded)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetServer]:
    with ExitStack() as stack:  # what started is stopped, even if a later step fails
        broker = Mosquitto(tmp_path_factory.mktemp("rest-broker")).start()
        stack.callback(broker.stop)
        setup = setup_fleet(tmp_path_factory.mktemp("rest"), mqtt_port=broker.port,
                            max_upload_bytes=UPLOAD_LIMIT)
        yield stack.enter_context(FleetServer(setup))


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_rest_attack(attack: str, server: FleetServer) -> None:
    ATTACKS[attack](server)
