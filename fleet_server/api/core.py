"""Operator API routes (``/api/v1``). The app wires them up in :mod:`fleet_server.app`."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from contract.limits import MAX_STORED_INT
from contract.topics import DEVICE_ID_PATTERN
from contract.tuf_targets import MODEL_NAME_PATTERN
from fleet_server.api.schemas import DeviceList, ErrorBody
from fleet_server.auth import METHOD_SCOPE, Identity, Scope, find_identity, missing_scope_message
from fleet_server.db import Device, ModelVersion
from fleet_server.device_views import DeviceFilter, device_summary, list_devices, recent_events
from fleet_server.identity.tables import quarantine_in_force, quarantine_view
from fleet_server.releases import VersionConflict, models_view
from fleet_server.replicas import replicas_view
from fleet_server.repository.repo import PublishRejected, ReleaseChangeRefused
from fleet_server.rollouts.spec import NAME_PATTERN, Label
from fleet_server.service import FleetService

MAX_METADATA_BYTES = 5 * 1024 * 1024  # python-tuf's own cap for targets metadata
CONNECTION_STATES = ("online", "offline", "stopped", "unknown")
DeviceStateFilter = Literal["online", "offline", "stopped", "unknown", "idle", "downloading",
                            "verifying", "staged", "smoke_testing", "trial", "committed",
                            "failed", "rolled_back"]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def service_of(request: Request) -> FleetService:
    svc: FleetService = request.app.state.service
    return svc


Service = Annotated[FleetService, Depends(service_of)]


_bearer = HTTPBearer(auto_error=False, description="An operator token (nanofleet server "
                     "init / nanofleet server token); scopes read, deploy, admin.")


def authenticate(request: Request, service: Service,
                 credentials: Annotated[HTTPAuthorizationCredentials | None,
                                        Depends(_bearer)]) -> Identity:
    """The caller's identity, or 401. Cached on the request (one lookup per call)."""
    known: Identity | None = getattr(request.state, "identity", None)
    if known is not None:
        return known
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise ApiError(401, "unauthorized", "missing operator token: send 'Authorization: "
                       "Bearer <token>' (CLI: --token or NANOFLEET_TOKEN)")
    with service.db.session() as session:
        identity = find_identity(token, service.config.operator_tokens, session)
    if identity is None:
        raise ApiError(401, "unauthorized", "operator token not recognised or revoked: check "
                       "the token, or ask an admin for one (nanofleet server token)")
    request.state.identity = identity
    return identity


def require_operator(request: Request,
                     identity: Annotated[Identity, Depends(authenticate)]) -> str:
    """The token's name (the actor in the audit log), or 401/403. Routes that do not ask
    for a scope need ``read`` to look (GET) and ``deploy`` to change anything."""
    needed = METHOD_SCOPE.get(request.method, "deploy")
    if not identity.allows(needed):
        raise ApiError(403, "forbidden", missing_scope_message(
            identity, needed, f"{request.method} {request.url.path}"))
    return identity.name


def require_scope(scope: Scope) -> Callable[..., str]:
    """A dependency: the caller's name if its token has ``scope``, else 403."""

    def check(request: Request, identity: Annotated[Identity, Depends(authenticate)],
              _base: Annotated[str, Depends(require_operator)]) -> str:
        if not identity.allows(scope):
            raise ApiError(403, "forbidden", missing_scope_message(
                identity, scope, f"{request.method} {request.url.path}"))
        return identity.name

    return check


Operator = Annotated[str, Depends(require_operator)]
AdminOperator = Annotated[str, Depends(require_scope("admin"))]
Caller = Annotated[Identity, Depends(authenticate)]  # for a scope that depends on the request
public_router = APIRouter(prefix="/api/v1")
router = APIRouter(prefix="/api/v1")


class DeploymentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Published model name.")
    version: int = Field(ge=1, le=MAX_STORED_INT, description="Published version to install.")
    devices: list[Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]] = Field(
        min_length=1, max_length=10_000, description="Device ids to set the desired state of.")


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ok: bool = Field(description="The server serves (repository current, replica not "
                     "superseded). HTTP 200 when true, 503 when not.")


@public_router.get("/health", response_model=Health,
                   responses={503: {"model": Health, "description": "Not serving."}})
def health(service: Service, response: Response) -> Health:
    """What a load balancer needs, and nothing more (no token needed): the details
    (process, broker, errors) are behind a token at ``/api/v1/health/detail``."""
    ok = bool(service.health()["ok"])
    if not ok:
        response.status_code = 503
    return Health(ok=ok)


@router.get("/health/detail")
def health_detail(service: Service) -> dict[str, Any]:
    """Replica, broker connection and counters, artifact stream, rollout driver,
    repository state and the last errors (read scope)."""
    return service.health()


@router.get("/replicas")
def get_replicas(service: Service) -> dict[str, Any]:
    """The server replicas sharing this database: heartbeat, the work each did (reports
    ingested, artifact requests served), and which one drives rollouts (the lease)."""
    return {"replicas": replicas_view(service.db, service.config.rollout_lease_s),
            "rollout_lease": service.rollout_driver.lease(),
            "answered_by": service.config.mqtt.client_id}


@router.get("/models")
def get_models(service: Service) -> dict[str, Any]:
    return {"models": models_view(service.db, service.repo)}


def _copy_upload(upload: UploadFile, dest_dir: Path, limit: int) -> tuple[Path, int]:
    fd, name = tempfile.mkstemp(dir=dest_dir, prefix="upload-")
    with open(fd, "wb") as out:
        upload.file.seek(0)
        shutil.copyfileobj(upload.file, out, 1 << 20)
        size = out.tell()
    if size > limit:
        raise ApiError(413, "too-large", f"upload {upload.filename!r} is {size} bytes, over "
                       f"max_upload_bytes ({limit})")
    return Path(name), size


async def _read_publish_form(request: Request, service: FleetService,
                             tmp: Path) -> tuple[bytes, dict[str, Path]]:
    limit = service.config.max_upload_bytes
    if int(request.headers.get("content-length") or 0) > limit:
        raise ApiError(413, "too-large", f"upload over max_upload_bytes ({limit}) of the server "
                       "config")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(400, "bad-upload", _PUBLISH_FORMAT)
    form = await request.form(max_files=1000, max_fields=10)
    metadata_part = form.get("metadata")
    if metadata_part is None:
        raise ApiError(400, "bad-upload", "no 'metadata' part. " + _PUBLISH_FORMAT)
    if isinstance(metadata_part, UploadFile):
        metadata = await metadata_part.read(MAX_METADATA_BYTES + 1)
    else:
        metadata = metadata_part.encode()
    if len(metadata) > MAX_METADATA_BYTES:
        raise ApiError(413, "too-large", f"targets metadata over {MAX_METADATA_BYTES} bytes")
    files: dict[str, Path] = {}
    for key, part in form.multi_items():
        if key == "metadata":
            continue
        if key != "files" or not isinstance(part, UploadFile) or not part.filename:
            raise ApiError(400, "bad-upload", f"unexpected part {key!r}. " + _PUBLISH_FORMAT)
        if part.filename in files:
            raise ApiError(400, "bad-upload", f"file {part.filename!r} uploaded twice")
        files[part.filename] = (await run_in_threadpool(_copy_upload, part, tmp, limit))[0]
    return metadata, files


_PUBLISH_FORMAT = ("Send multipart/form-data: a 'metadata' part with the operator-signed "
                   "targets metadata and one 'files' part per new target file whose filename "
                   "is its target path (nanofleet model publish does this).")


_PUBLISH_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["metadata"], "additionalProperties": False,
               "properties": {
                   "metadata": {"type": "string", "format": "binary",
                                "description": "targets metadata signed with the operators' "
                                "targets key on top of the server's current targets"},
                   "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                             "description": "one part per new target file; its filename is "
                             "the target path"}}}}}}}


@router.post("/models/publish", openapi_extra=_PUBLISH_BODY, responses={429: {
    "model": ErrorBody, "description": "max_concurrent_publishes publishes are being "
    "received already (publish-busy): try again when one has finished."}})
async def publish(request: Request, service: Service, actor: Operator) -> dict[str, Any]:
    """Publish operator-signed targets metadata and its files; the server adds deltas."""
    if not service.publish_slots.acquire(blocking=False):
        raise ApiError(429, "publish-busy", f"{service.config.max_concurrent_publishes} "
                       "publishes are being received; try again when one has finished "
                       "(max_concurrent_publishes of the server config)")
    try:
        return await _publish(request, service, actor)
    finally:
        service.publish_slots.release()


async def _publish(request: Request, service: FleetService,
                   actor: Operator) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=service.config.uploads_path) as tmp:
        metadata, files = await _read_publish_form(request, service, Path(tmp))
        try:
            outcome = await run_in_threadpool(service.releases.publish, metadata, files, actor)
        except VersionConflict as exc:
            raise ApiError(409, "version-conflict", str(exc)) from None
        except PublishRejected as exc:
            # Signing again is the cure for a signature or base problem, not for a change
            # of the release history (whose message says what to do instead).
            hint = "" if isinstance(exc, ReleaseChangeRefused) else (
                ". Sign the release with the operators' targets key on top of the server's "
                "current targets (nanofleet model publish)")
            raise ApiError(400, "publish-rejected", f"{exc}{hint}") from None
    return {"targets_version": outcome.targets_version,
            "published": [i.model_dump(mode="json", exclude_none=True)
                          for i in outcome.new_versions],
            "deltas": [asdict(o) for o in outcome.deltas],
            "removed_deltas": outcome.removed_deltas}


@router.post("/deployments")
def deploy(body: DeploymentRequest, service: Service, actor: Operator) -> dict[str, Any]:
    """Set the desired model version of devices (retained desired state over MQTT)."""
    devices = list(dict.fromkeys(body.devices))
    with service.db.session() as session:
        row = session.scalars(select(ModelVersion).where(
            ModelVersion.model == body.model, ModelVersion.version == body.version,
            ModelVersion.listed)).first()
        if row is None:
            known = sorted(session.scalars(select(ModelVersion.version).where(
                ModelVersion.model == body.model, ModelVersion.listed)))
            hint = (f"published versions of {body.model}: {known}" if known
                    else f"no model {body.model!r} is published")
            raise ApiError(404, "unknown-version", f"{body.model} v{body.version} is not "
                           f"published ({hint}); publish it first with nanofleet model publish")
        slot = row.slot
        seen = set(session.scalars(select(Device.device_id).where(
            Device.device_id.in_(devices))))
    outcomes = service.desired.deploy(devices, slot=slot, model=body.model,
                                      version=body.version, actor=actor)
    result: dict[str, Any] = {
        "model": body.model, "version": body.version, "slot": slot,
        "devices": [{"device_id": o.device_id, "revision": o.revision, "changed": o.changed,
                     "published": o.published, "known": o.device_id in seen}
                    for o in outcomes]}
    if not all(o.published for o in outcomes):
        result["warning"] = ("the broker has not acknowledged every desired state yet (is it "
                             "reachable?); the server re-publishes them when it reconnects")
    return result


@router.get("/devices", response_model=DeviceList, tags=["devices"])
def get_devices(service: Service,
                state: Annotated[DeviceStateFilter | None, Query(
                    description="Connection state (online, offline, stopped, unknown) or "
                    "last OTA state (downloading ... committed, failed, rolled_back).")] = None,
                group: Annotated[str | None, Query(pattern=NAME_PATTERN,
                                                   description="In this group.")] = None,
                tag: Annotated[list[Label], Query(
                    max_length=20, description="Carrying this tag (repeat: all of them).")
                ] = [],  # noqa: B006 - FastAPI copies a default, never mutates it
                model: Annotated[str | None, Query(pattern=MODEL_NAME_PATTERN,
                                                   description="Runs this model.")] = None,
                model_version: Annotated[int | None, Query(
                    ge=0, le=MAX_STORED_INT,
                    description="Runs this version (of `model`, if given).")] = None,
                offline: Annotated[bool, Query(description="Only devices not online.")] = False,
                ) -> DeviceList:
    """The inventory, filtered (every filter given must match)."""
    connection = state if state in CONNECTION_STATES else None
    filters = DeviceFilter(state=connection, ota_state=None if connection or state is None
                           else state, group=group, tags=tuple(tag or ()), model=model,
                           model_version=model_version, offline=offline)
    with service.db.session() as session:
        return DeviceList.model_validate({"devices": list_devices(session, filters=filters)})


@router.get("/devices/{device_id}")
def get_device(device_id: Annotated[str, PathParam(pattern=DEVICE_ID_PATTERN)], service: Service,
               events: Annotated[int | None, Query(ge=1, le=10_000)] = None) -> dict[str, Any]:
    with service.db.session() as session:
        device = session.get(Device, device_id)
        desired = service.desired.current(session, device_id)
        if device is None and desired is None:
            raise ApiError(404, "unknown-device", f"device {device_id!r} has never reported and "
                           "has no desired state (check the id: nanofleet devices list)")
        view: dict[str, Any] = device_summary(device) if device is not None else {
            "device_id": device_id, "state": "unknown", "models": {}, "last_ota": None}
        if device is not None:
            view["metrics"] = device.metrics
        view["desired"] = None if desired is None else {
            "revision": desired.revision, "document": desired.document,
            "published": desired.published_revision >= desired.revision,
            "updated_at": desired.updated_at}
        view["events"] = recent_events(session, device_id,
                                       events or service.config.recent_events)
        quarantine = quarantine_in_force(session, device_id, time.time())
        view["quarantine"] = None if quarantine is None else quarantine_view(quarantine)
    return view
