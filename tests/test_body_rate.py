"""A request body must keep arriving: the BodyLimit guard (ASGI) cuts off a body that
drips, or stops, after its grace (review, December 2026: two uploads dripping a byte every
few seconds held both publish slots, and no operator could publish)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fleet_server.api import guards
from fleet_server.api.guards import BodyLimit, BodyTooSlow

pytestmark = pytest.mark.unit


def run(chunks: list[tuple[float, bytes]], ends: bool = True) -> tuple[str, int]:
    """Feed ``(delay, bytes)`` parts to an app that reads the whole body (``ends``: the
    last part says it is the last); what it got."""
    read = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal read
        while True:
            message = await receive()
            read += len(message.get("body", b""))
            if not message.get("more_body"):
                return

    async def receive() -> dict[str, Any]:
        if not chunks:
            await asyncio.sleep(3600)  # a sender that sends nothing more
        delay, body = chunks.pop(0)
        await asyncio.sleep(delay)
        return {"type": "http.request", "body": body,
                "more_body": bool(chunks) or not ends}

    async def send(message: Any) -> None:
        pass

    async def main() -> str:
        guard = BodyLimit(app, 1 << 20)
        try:
            await guard({"type": "http", "path": "/api/v1/models/publish", "headers": []},
                        receive, send)
        except BodyTooSlow as exc:
            return str(exc.detail)
        return "read"

    return asyncio.run(main()), read


def test_a_body_that_keeps_its_rate_is_read_one_that_drips_or_stops_is_cut_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guards, "BODY_GRACE_S", 0.3)
    monkeypatch.setattr(guards, "MIN_BODY_RATE", 10_000)
    assert run([(0.05, b"x" * 5000)] * 8) == ("read", 40_000)  # 100 KB/s
    outcome, read = run([(0.2, b"x")] * 10)  # a byte every 0.2 s
    assert "too slow" in outcome and read < 10
    outcome, read = run([(0.0, b"x" * 1000)], ends=False)  # then nothing more
    assert "too slow: 1000 bytes" in outcome and read == 1000
