"""The fleet server's HTTP side (FastAPI).

- ``/repo/metadata/...`` and ``/repo/targets/...``: the signed TUF repository as
  static files (Starlette's FileResponse: ``Range`` requests, ``HEAD``, ETag);
  anything else could serve the same directory (a CDN, object storage).
- ``/api/v1/...``: the operator API, behind a bearer token (``Authorization:
  Bearer <token>``; hashes in the server config). Errors are always
  ``{"error": {"code": ..., "message": ...}}`` with a message that says what to do.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleet_server.api import alerts as api_alerts
from fleet_server.api import core as api
from fleet_server.api import enroll as api_enroll
from fleet_server.api import fleet as api_fleet
from fleet_server.api.core import ApiError, require_operator
from fleet_server.api.guards import BodyLimit
from fleet_server.api.schemas import ERROR_RESPONSES
from fleet_server.auth import Identity, find_identity
from fleet_server.console.routes import install as install_console
from fleet_server.repository.storage import METADATA_DIR, TARGETS_DIR
from fleet_server.rollouts.manage import OperationRefused
from fleet_server.service import FleetService

log = logging.getLogger("nanofleet.server.http")

# timestamp.json (and the root.json convenience copy) change in place; every other
# file in the repository is versioned or content-addressed and never changes.
_MUTABLE = {f"{METADATA_DIR}/timestamp.json", f"{METADATA_DIR}/root.json"}


def _error(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)


def repo_file(root: Path, rel: str) -> Path:
    """The file under the repository for URL path ``rel``, or ApiError 404."""
    parts = rel.split("/")
    if (len(parts) < 2 or parts[0] not in (METADATA_DIR, TARGETS_DIR)
            or any(p in ("", ".", "..") or p.startswith(".") for p in parts)):
        raise ApiError(404, "not-found", f"/repo/{rel}: not a repository file (metadata/... "
                       "or targets/...)")
    path = root.joinpath(*parts)
    if not path.is_file():
        raise ApiError(404, "not-found", f"/repo/{rel}: no such file")
    return path


def create_app(service: FleetService, *, manage_service: bool = True) -> FastAPI:
    """The ASGI app. With ``manage_service`` the app starts and stops ``service``."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if manage_service:
            service.start()
        try:
            yield
        finally:
            if manage_service:
                service.stop()

    app = FastAPI(title="nanofleet fleet server", version="1", lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(OperationRefused)
    async def _refused(_request: Request, exc: OperationRefused) -> JSONResponse:
        # Rollout actions the operator must change: one mapping for every route.
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "invalid-request", _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error(404, "not-found", f"no such endpoint: {request.method} "
                          f"{request.url.path}")
        if exc.status_code == 405:
            response = _error(405, "method-not-allowed", f"{request.method} is not allowed "
                              f"on {request.url.path}")
            allow = _allowed_methods(app, request, (exc.headers or {}).get("Allow"))
            if allow:
                response.headers["Allow"] = allow
            return response
        if exc.status_code == 413:
            return _error(413, "too-large", f"{exc.detail} (publish: max_upload_bytes of the "
                          "server config)")
        return _error(exc.status_code, "http-error", str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The detail (a database error, a path) is for the log, never for the caller.
        incident = uuid.uuid4().hex[:12]
        log.error("unhandled error %s on %s %s", incident, request.method, request.url.path,
                  exc_info=exc)
        return _error(500, "internal", f"the server failed; incident {incident} in the "
                      "server log has the details")

    @app.api_route("/repo/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    def repository_file(path: str) -> FileResponse:
        file = repo_file(service.repo.path, path)
        cache = "no-cache" if path in _MUTABLE else "public, max-age=31536000, immutable"
        media = "application/json" if path.endswith(".json") else "application/octet-stream"
        return FileResponse(file, media_type=media, headers={"Cache-Control": cache})

    app.include_router(api.public_router)
    app.include_router(api.router, dependencies=[Depends(require_operator)],
                       responses=ERROR_RESPONSES)
    app.include_router(api_fleet.router, dependencies=[Depends(require_operator)],
                       responses=ERROR_RESPONSES)
    app.include_router(api_alerts.router, dependencies=[Depends(require_operator)],
                       responses=ERROR_RESPONSES)
    api_enroll.install(app, service)  # enrollment, device CA, revocation
    _schema_with_deployment_limits(app, service)
    install_console(app, service)  # the operators' web console under /console
    # Outermost: bodies are bounded before any route, dependency or parser reads them.
    app.add_middleware(BodyLimit, max_upload_bytes=service.config.max_upload_bytes,
                       identity_of=lambda token: _identity_of(service, token))
    return app


def _identity_of(service: FleetService, token: str) -> Identity | None:
    with service.db.session() as session:
        return find_identity(token, service.config.operator_tokens, session)


def _schema_with_deployment_limits(app: FastAPI, service: FleetService) -> None:
    """The OpenAPI schema states the limits this server's configuration sets, so that a
    request the schema calls valid is one the server accepts."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            token = schema.get("components", {}).get("schemas", {}).get("EnrollTokenCreate")
            if token is not None:
                lifetime = token["properties"]["expires_in_s"]
                limit = service.config.enrollment.token_max_hours * 3600
                for option in lifetime.get("anyOf", [lifetime]):
                    if option.get("type") == "number":
                        option["maximum"] = limit
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _allowed_methods(app: FastAPI, request: Request, fallback: str | None) -> str:
    """The Allow header of a 405: the methods the schema lists for the path (Starlette
    names only those of the first route that matched, not e.g. both GET and PATCH)."""
    methods: set[str] = set()
    for template, item in app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {m.upper() for m in item}
    if not methods and fallback:
        return fallback
    return ", ".join(sorted(methods))
