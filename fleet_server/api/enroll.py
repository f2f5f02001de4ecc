"""Enrollment and identity routes (``/api/v1``); :func:`install` wires them into the app.

Without an operator token (a device has none):

- ``POST /api/v1/enroll``: enrollment token + device id + CSR -> certificate, CA
  certificate, the current TUF root, where the broker is;
- ``POST /api/v1/enroll/renew``: current certificate + CSR for a new key + the current
  key's signature over both -> a new certificate (the current one is revoked);
- ``GET /api/v1/device-ca/ca.pem`` and ``/crl.pem``: public by nature.

With an operator token: enrollment tokens (create, cancel: scope ``admin``; list:
``read``), revoking a device (``admin``: who may join or leave the fleet is identity
management, like operator tokens), quarantining and releasing a device at the broker
(``admin``; the server quarantines a flooding device itself:
:mod:`fleet_server.identity.quarantine`), a device's identity and certificates, the
quarantines in force and the broker ACL (for a broker on another machine to copy)
(``read``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse, Response
from fastapi.routing import APIRoute
from pydantic import Field, StrictBool

from contract.enrollment import ENROLL_PATH, RENEW_PATH, EnrollRequest, EnrollResponse, RenewRequest
from contract.strict import Strict
from contract.topics import DEVICE_ID_PATTERN
from fleet_server.api.core import AdminOperator, ApiError, require_operator
from fleet_server.api.schemas import ERROR_RESPONSES, ErrorBody
from fleet_server.identity.quarantine import Quarantines
from fleet_server.identity.service import IdentityService
from fleet_server.identity.tokens import EnrollmentRefused, TokenSpec
from fleet_server.service import FleetService

log = logging.getLogger("nanofleet.server.enroll")

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# Three PEMs of at most 16 KiB, a token and JSON around them. Anyone may call these
# routes (no operator token), so the body is capped while it is read, chunked or not,
# instead of being read whole and validated afterwards.
MAX_PUBLIC_BODY_BYTES = 64 * 1024


class BoundedBodyRoute(APIRoute):
    """A route whose request body is refused (413) past MAX_PUBLIC_BODY_BYTES."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and \
                    int(declared) > MAX_PUBLIC_BODY_BYTES:
                raise ApiError(413, "too-large", f"request body over {MAX_PUBLIC_BODY_BYTES} "
                               "bytes")
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_PUBLIC_BODY_BYTES:
                    raise ApiError(413, "too-large", f"request body over "
                                   f"{MAX_PUBLIC_BODY_BYTES} bytes")
            request._body = bytes(body)  # what Request.body() returns from now on
            return await handler(request)

        return bounded


public_router = APIRouter(
    prefix="/api/v1", tags=["enrollment"], route_class=BoundedBodyRoute,
    responses={**ERROR_RESPONSES, 413: {"model": ErrorBody, "description": "Request body over "
                                        f"{MAX_PUBLIC_BODY_BYTES} bytes."}})
operator_router = APIRouter(prefix="/api/v1", tags=["enrollment"], responses=ERROR_RESPONSES)


def identity_of(request: Request) -> IdentityService:
    identity: IdentityService = request.app.state.identity
    return identity


Identity = Annotated[IdentityService, Depends(identity_of)]


def quarantines_of(request: Request) -> Quarantines:
    quarantines: Quarantines = request.app.state.quarantines
    return quarantines


QuarantineList = Annotated[Quarantines, Depends(quarantines_of)]


def install(app: FastAPI, service: FleetService) -> None:
    """Open the device CA (made at the first start) and add the routes."""
    app.state.identity = IdentityService(service.config, service.db, service.repo.root_bytes)
    app.state.quarantines = Quarantines(app.state.identity, service.config.mqtt.flood_quarantine_s)
    service.attach_quarantines(app.state.quarantines)
    app.include_router(public_router)
    app.include_router(operator_router, dependencies=[Depends(require_operator)],
                       responses=ERROR_RESPONSES)


class EnrollTokenCreate(Strict):
    device_id: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN,
                                  description="Only this device may enroll with the token.")
    group: str | None = Field(default=None, pattern=NAME_PATTERN,
                              description="Inventory group the device joins on enrollment.")
    tags: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        default_factory=list, max_length=32, description="Inventory tags added on enrollment.")
    expires_in_s: float | None = Field(
        default=None, gt=0, le=365 * 86400, description="Lifetime in seconds (at most "
        "enrollment.token_max_hours); default enrollment.token_default_hours of the server "
        "config.")
    replace: StrictBool = Field(
        default=False, description="Required to make a token for a device id that is "
        "enrolled: using it replaces the device's identity and revokes its current "
        "certificates.")


class EnrollTokenView(Strict):
    token_id: str = Field(description="Public id of the token (8 hex digits).")
    state: Literal["usable", "used", "expired", "cancelled"] = Field(
        description="Whether a device can still enroll with it.")
    device_id: str | None = Field(description="The only device id allowed, if bound.")
    group: str | None = Field(description="Inventory group given on enrollment.")
    tags: list[str] = Field(description="Inventory tags given on enrollment.")
    created_at: float = Field(description="Unix time it was made.")
    created_by: str = Field(description="Operator token name that made it.")
    expires_at: float = Field(description="Unix time it stops working.")
    used_at: float | None = Field(description="Unix time a device enrolled with it.")
    used_by: str | None = Field(description="The device id that enrolled with it.")


class EnrollTokenCreated(EnrollTokenView):
    token: str = Field(description="The token itself: shown this once, only its hash is kept.")


class EnrollTokenList(Strict):
    tokens: list[EnrollTokenView] = Field(description="Tokens, newest first.")


class DeviceRevoke(Strict):
    reason: str | None = Field(default=None, max_length=500,
                               description="Why (kept with the revocation and in the audit log).")


class Revocation(Strict):
    device_id: str = Field(description="The revoked device.")
    revoked_serials: list[str] = Field(description="Certificates newly put on the CRL (hex).")
    already_revoked: bool = Field(description="The device was revoked before this call.")
    crl_file: str = Field(description="The CRL file the broker reads (rewritten).")
    acl_file: str = Field(description="The device ACL file the broker reads (rewritten).")
    broker_reloaded: bool = Field(description="The server ran enrollment.broker_reload_command "
                                  "and it succeeded: the broker applies the revocation now.")
    next_step: str = Field(description="What the operator does next (reload the broker).")


class CertificateView(Strict):
    serial: str = Field(description="Serial number (hex).")
    sha256: str = Field(description="SHA-256 fingerprint of the certificate.")
    key_type: str = Field(description="Key algorithm and size, e.g. EC secp256r1.")
    not_before: float = Field(description="Valid from (unix time).")
    not_after: float = Field(description="Valid until (unix time).")
    issued_at: float = Field(description="When the CA signed it (unix time).")
    revoked_at: float | None = Field(description="When it was revoked, if it was.")


class QuarantineCreate(Strict):
    for_s: float = Field(default=3600.0, ge=60, le=30 * 86400,
                         description="How long (s): it ends by itself then, or on release.")
    reason: str | None = Field(default=None, max_length=500,
                               description="Why (kept with the quarantine and in the audit log).")


class QuarantineView(Strict):
    device_id: str = Field(description="The quarantined device.")
    since: float = Field(description="Start (unix time).")
    until: float = Field(description="When it ends by itself (unix time).")
    reason: str = Field(description="Why: a flood the server saw, or the operator's words.")
    created_by: str = Field(description="Operator token name, or 'server' for a flood.")
    released_at: float | None = Field(description="When an operator ended it early.")
    released_by: str | None = Field(description="The operator who ended it early.")


class QuarantineChange(QuarantineView):
    acl_file: str = Field(description="The device ACL file the broker reads (rewritten).")
    broker_reloaded: bool = Field(description="The server ran enrollment.broker_reload_command "
                                  "and it succeeded: the broker applies the change now.")
    next_step: str = Field(description="What the operator does next (reload the broker).")


class QuarantineListView(Strict):
    quarantines: list[QuarantineView] = Field(description="Quarantines in force, by device.")


class DeviceIdentityView(Strict):
    device_id: str = Field(description="The device.")
    status: Literal["enrolled", "revoked", "unknown"] = Field(
        description="enrolled; revoked (broker refuses it after a reload).")
    enrolled_at: float | None = Field(description="Last enrollment (unix time).")
    enrolled_with: str | None = Field(description="Token id of the last enrollment.")
    renewed_at: float | None = Field(description="Last renewal (unix time).")
    revoked_at: float | None = Field(description="Revocation time (unix time).")
    revoked_by: str | None = Field(description="Operator who revoked it.")
    revoke_reason: str | None = Field(description="Why it was revoked.")
    quarantine: QuarantineView | None = Field(
        default=None, description="Its quarantine in force at the broker, if any.")
    certificates: list[CertificateView] = Field(description="Its certificates, newest first.")


def _refused(exc: EnrollmentRefused, what: str | None = None,
             device_id: str = "") -> ApiError:
    if what is not None:
        # A device's refused enrollment or renewal leaves a trace for the operator (token
        # guessing, a cloned key's renewals; review, December 2026), never the token. The
        # device id is the caller's text: repr keeps it on one line.
        log.warning("%s of %r refused: %s: %s", what, device_id[:80], exc.code, exc.message)
    return ApiError(exc.status, exc.code, exc.message)


@public_router.post(ENROLL_PATH.removeprefix("/api/v1"), response_model=EnrollResponse)
def enroll(body: EnrollRequest, identity: Identity) -> dict[str, Any]:
    """Enroll a device: a single-use token and a CSR in, its certificate out."""
    try:
        return asdict(identity.enroll(body.token.strip(), body.device_id, body.csr,
                                      root_sha256=body.root_sha256))
    except EnrollmentRefused as exc:
        raise _refused(exc, "enrollment", body.device_id) from None


@public_router.post(RENEW_PATH.removeprefix("/api/v1"), response_model=EnrollResponse)
def renew(body: RenewRequest, identity: Identity) -> dict[str, Any]:
    """A certificate for a new key, proven by the current key; the current one is revoked."""
    try:
        return asdict(identity.renew(body.device_id, body.certificate, body.csr, body.proof))
    except EnrollmentRefused as exc:
        raise _refused(exc, "renewal", body.device_id) from None


@public_router.get("/device-ca/ca.pem", response_class=PlainTextResponse)
def ca_certificate(identity: Identity) -> str:
    return identity.ca.cert_pem()


@public_router.get("/device-ca/crl.pem", response_class=PlainTextResponse)
def crl(identity: Identity) -> str:
    """The current CRL (at most 10 s old), for a broker on another machine (crlfile)."""
    return identity.downloadable_crl().decode()


@operator_router.get("/device-ca/acl", response_class=PlainTextResponse)
def broker_acl(identity: Identity) -> str:
    """The current broker ACL (acl_file), for a broker on another machine."""
    return identity.broker_policy()[1]


@operator_router.post("/enroll-tokens", response_model=EnrollTokenCreated)
def create_enroll_token(body: EnrollTokenCreate, identity: Identity,
                        actor: AdminOperator) -> dict[str, Any]:
    """A new single-use enrollment token (shown once; only its hash is kept)."""
    hours = identity.settings.token_default_hours
    spec = TokenSpec(device_id=body.device_id, group=body.group, tags=body.tags,
                     expires_in_s=body.expires_in_s or hours * 3600, replace=body.replace)
    try:
        token, view = identity.create_token(spec, actor)
    except EnrollmentRefused as exc:
        raise _refused(exc) from None
    except ValueError as exc:
        raise ApiError(422, "invalid-request", str(exc)) from None
    return {"token": token, **view}


@operator_router.get("/enroll-tokens", response_model=EnrollTokenList)
def list_enroll_tokens(identity: Identity, all: bool = False) -> dict[str, Any]:
    """Usable tokens (``?all=true``: used, expired and cancelled ones too); never secrets."""
    return {"tokens": identity.list_tokens(include_spent=all)}


@operator_router.delete("/enroll-tokens/{token_id}", response_model=EnrollTokenView)
def cancel_enroll_token(token_id: str, identity: Identity,
                        actor: AdminOperator) -> dict[str, Any]:
    try:
        return identity.cancel_token(token_id, actor)
    except EnrollmentRefused as exc:
        raise _refused(exc) from None


@operator_router.post("/devices/{device_id}/revoke", response_model=Revocation)
def revoke_device(device_id: str, identity: Identity, actor: AdminOperator,
                  body: DeviceRevoke | None = None) -> dict[str, Any]:
    """Revoke every certificate of a device; the broker refuses it after a reload."""
    try:
        return identity.revoke(device_id, body.reason if body else None, actor)
    except EnrollmentRefused as exc:
        raise _refused(exc) from None


@operator_router.get("/devices/{device_id}/identity", response_model=DeviceIdentityView)
def device_identity(device_id: str, identity: Identity,
                    quarantines: QuarantineList) -> dict[str, Any]:
    view = identity.device_view(device_id)
    if view is None:
        raise ApiError(404, "unknown-device", f"device {device_id!r} was never enrolled here")
    return {**view, "quarantine": quarantines.of_device(device_id)}


@operator_router.post("/devices/{device_id}/quarantine", response_model=QuarantineChange)
def quarantine_device(device_id: Annotated[str, PathParam(pattern=DEVICE_ID_PATTERN)],
                      quarantines: QuarantineList, actor: AdminOperator,
                      body: QuarantineCreate | None = None) -> dict[str, Any]:
    """Deny a device every topic at the broker for a while (replacing one in force)."""
    body = body or QuarantineCreate()
    return quarantines.quarantine(device_id, body.for_s, body.reason or "operator's choice",
                                  actor)


@operator_router.delete("/devices/{device_id}/quarantine", response_model=QuarantineChange)
def release_device(device_id: str, quarantines: QuarantineList,
                   actor: AdminOperator) -> dict[str, Any]:
    """End a device's quarantine now."""
    try:
        return quarantines.release(device_id, actor)
    except EnrollmentRefused as exc:
        raise _refused(exc) from None


@operator_router.get("/quarantines", response_model=QuarantineListView)
def list_quarantines(quarantines: QuarantineList) -> dict[str, Any]:
    """Devices quarantined now (a flood the server saw, or an operator's choice)."""
    return {"quarantines": quarantines.active()}
