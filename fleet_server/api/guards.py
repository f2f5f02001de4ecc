"""Request bodies are bounded however they arrive.

``Content-Length`` alone bounds nothing: a chunked request has none, and FastAPI reads
a JSON body (and ``request.form()`` spools a multipart one to disk) before it checks
the token or the schema. :class:`BodyLimit` wraps the ASGI app: a declared length over
the limit is answered 413 before a byte is read, and a streamed body is counted as it
arrives and cut off with 413 as soon as it passes the limit. Publishing models may
send ``max_upload_bytes``; every other request (JSON) :data:`MAX_API_BODY_BYTES`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_API_BODY_BYTES = 8 * 1024 * 1024  # 100,000 device ids in one label change fit
PUBLISH_PATH = "/api/v1/models/publish"


class BodyTooLarge(HTTPException):
    """Raised from ``receive``: FastAPI lets HTTPExceptions through its body parsing (any
    other error there becomes a 400), and the app's handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


class BodyTooSlow(HTTPException):
    """A body that arrives slower than :data:`MIN_BODY_RATE` once :data:`BODY_GRACE_S`
    old: it holds a request slot (two for publishing) and spool space for as long as the
    sender likes (review, December 2026: two uploads dripping a byte every few seconds
    kept every operator from publishing)."""

    def __init__(self, seen: int, elapsed: float) -> None:
        super().__init__(408, f"request body too slow: {seen} bytes in {elapsed:.0f} s (at "
                         f"least {MIN_BODY_RATE} bytes/s after {BODY_GRACE_S:.0f} s)")


# Any link an operator publishes over does far better; a 512 MiB upload may take 2 h.
MIN_BODY_RATE = 64 * 1024
BODY_GRACE_S = 30.0


# A caller without a known operator token (anyone who can reach the server) may send at
# most this: FastAPI parses a JSON body before the route's token check runs, and 8 MiB
# bodies from a few anonymous clients took the server to 634 MB and every device's
# timestamp.json poll from 0.05 to 1.5 s (review, December 2026). The console's forms are
# small, and sign-in is anonymous by nature.
MAX_ANONYMOUS_BODY_BYTES = 64 * 1024
CONSOLE_PREFIX = "/console"
_NO_BODY = {"GET", "HEAD", "OPTIONS"}

# token -> the operator's identity, or None (fleet_server.auth.find_identity)
IdentityOf = Callable[[str], Any]


def body_limit(path: str, max_upload_bytes: int) -> int:
    return max_upload_bytes if path == PUBLISH_PATH else MAX_API_BODY_BYTES


def bearer_token(headers: dict[bytes, bytes]) -> str:
    auth = headers.get(b"authorization", b"")
    scheme, _, token = auth.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class BodyLimit:
    def __init__(self, app: ASGIApp, max_upload_bytes: int,
                 identity_of: IdentityOf | None = None) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.identity_of = identity_of

    async def _limit(self, scope: Scope, headers: dict[bytes, bytes]) -> int:
        """The body limit for this request: the route's, once the caller is known."""
        path = scope["path"]
        limit = body_limit(path, self.max_upload_bytes)
        if scope.get("method", "GET") in _NO_BODY or self.identity_of is None:
            return limit
        if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"):
            return MAX_ANONYMOUS_BODY_BYTES
        token = bearer_token(headers)
        identity = await asyncio.to_thread(self.identity_of, token) if token else None
        if identity is None:
            return min(limit, MAX_ANONYMOUS_BODY_BYTES)
        # The route's token check finds it here instead of looking it up again
        # (fleet_server.api.core.authenticate reads request.state.identity).
        scope.setdefault("state", {})["identity"] = identity
        return limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        limit = await self._limit(scope, headers)
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(send, limit)
            return
        seen = 0
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def counted() -> Message:
            nonlocal seen
            # The next part is due while the body still averages MIN_BODY_RATE (after the
            # grace); a sender that sends nothing at all is cut off as well.
            due = started + BODY_GRACE_S + seen / MIN_BODY_RATE - loop.time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(due, 0.001))
            except TimeoutError:
                raise BodyTooSlow(seen, loop.time() - started) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps({"error": {"code": "too-large", "message": (
        f"request body over {limit} bytes (publish: max_upload_bytes of the server "
        "config)")}}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
