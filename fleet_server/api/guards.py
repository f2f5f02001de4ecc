"""Request bodies are bounded however they arrive.

``Content-Length`` alone bounds nothing: a chunked request has none, and FastAPI reads
a JSON body (and ``request.form()`` spools a multipart one to disk) before it checks
the token or the schema. :class:`BodyLimit` wraps the ASGI app: a declared length over
the limit is answered 413 before a byte is read, and a streamed body is counted as it
arrives and cut off with 413 as soon as it passes the limit. Publishing models may
send ``max_upload_bytes``; every other request (JSON) :data:`MAX_API_BODY_BYTES`.
"""

from __future__ import annotations

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


def body_limit(path: str, max_upload_bytes: int) -> int:
    return max_upload_bytes if path == PUBLISH_PATH else MAX_API_BODY_BYTES


class BodyLimit:
    def __init__(self, app: ASGIApp, max_upload_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"], self.max_upload_bytes)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse(send, limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
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
