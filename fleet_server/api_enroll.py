"""Enrollment and identity routes (``/api/v1``); :func:`install` wires them into the app.

Without an operator token (a device has none):

- ``POST /api/v1/enroll``: enrollment token + device id + CSR -> certificate, CA
  certificate, the current TUF root, where the broker is;
- ``POST /api/v1/enroll/renew``: current certificate + CSR for the same key -> a new
  certificate;
- ``GET /api/v1/device-ca/ca.pem`` and ``/crl.pem``: public by nature.

With an operator token: enrollment tokens (create, cancel: scope ``admin``; list:
``read``), revoking a device (``admin``: who may join or leave the fleet is identity
management, like operator tokens), a device's identity and certificates and the
broker ACL (for a broker on another machine to copy) (``read``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from contract.enrollment import ENROLL_PATH, RENEW_PATH, EnrollRequest, EnrollResponse, RenewRequest
from contract.topics import DEVICE_ID_PATTERN
from fleet_server.api import AdminOperator, ApiError, require_operator
from fleet_server.enrollment import EnrollmentRefused, TokenSpec
from fleet_server.identity import IdentityService
from fleet_server.service import FleetService

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"

public_router = APIRouter(prefix="/api/v1", tags=["enrollment"])
operator_router = APIRouter(prefix="/api/v1", tags=["enrollment"])


def identity_of(request: Request) -> IdentityService:
    identity: IdentityService = request.app.state.identity
    return identity


Identity = Annotated[IdentityService, Depends(identity_of)]


def install(app: FastAPI, service: FleetService) -> None:
    """Open the device CA (made at the first start) and add the routes."""
    app.state.identity = IdentityService(service.config, service.db, service.repo.root_bytes)
    app.include_router(public_router)
    app.include_router(operator_router, dependencies=[Depends(require_operator)])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenRequest(Strict):
    device_id: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN,
                                  description="Only this device may enroll with the token.")
    group: str | None = Field(default=None, pattern=NAME_PATTERN,
                              description="Inventory group the device joins on enrollment.")
    tags: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        default_factory=list, max_length=32, description="Inventory tags added on enrollment.")
    expires_in_s: float | None = Field(
        default=None, gt=0, description="Lifetime in seconds; default "
        "enrollment.token_default_hours of the server config.")


class RevokeRequest(Strict):
    reason: str | None = Field(default=None, max_length=500,
                               description="Why (kept with the revocation and in the audit log).")


def _refused(exc: EnrollmentRefused) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


@public_router.post(ENROLL_PATH.removeprefix("/api/v1"), response_model=EnrollResponse)
def enroll(body: EnrollRequest, identity: Identity) -> dict[str, Any]:
    """Enroll a device: a single-use token and a CSR in, its certificate out."""
    try:
        return asdict(identity.enroll(body.token.strip(), body.device_id, body.csr))
    except EnrollmentRefused as exc:
        raise _refused(exc) from None


@public_router.post(RENEW_PATH.removeprefix("/api/v1"), response_model=EnrollResponse)
def renew(body: RenewRequest, identity: Identity) -> dict[str, Any]:
    """A new certificate for the same key, before the current one expires."""
    try:
        return asdict(identity.renew(body.device_id, body.certificate, body.csr))
    except EnrollmentRefused as exc:
        raise _refused(exc) from None


@public_router.get("/device-ca/ca.pem", response_class=PlainTextResponse)
def ca_certificate(identity: Identity) -> str:
    return identity.ca.cert_pem()


@public_router.get("/device-ca/crl.pem", response_class=PlainTextResponse)
def crl(identity: Identity) -> str:
    """The current CRL, for a broker on another machine (crlfile)."""
    return identity.broker_policy()[0].decode()


@operator_router.get("/device-ca/acl", response_class=PlainTextResponse)
def broker_acl(identity: Identity) -> str:
    """The current broker ACL (acl_file), for a broker on another machine."""
    return identity.broker_policy()[1]


@operator_router.post("/enroll-tokens")
def create_enroll_token(body: TokenRequest, identity: Identity,
                        actor: AdminOperator) -> dict[str, Any]:
    """A new single-use enrollment token (shown once; only its hash is kept)."""
    hours = identity.settings.token_default_hours
    spec = TokenSpec(device_id=body.device_id, group=body.group, tags=body.tags,
                     expires_in_s=body.expires_in_s or hours * 3600)
    try:
        token, view = identity.create_token(spec, actor)
    except ValueError as exc:
        raise ApiError(422, "invalid-request", str(exc)) from None
    return {"token": token, **view}


@operator_router.get("/enroll-tokens")
def list_enroll_tokens(identity: Identity, all: bool = False) -> dict[str, Any]:
    """Usable tokens (``?all=true``: used, expired and cancelled ones too); never secrets."""
    return {"tokens": identity.list_tokens(include_spent=all)}


@operator_router.delete("/enroll-tokens/{token_id}")
def cancel_enroll_token(token_id: str, identity: Identity,
                        actor: AdminOperator) -> dict[str, Any]:
    try:
        return identity.cancel_token(token_id, actor)
    except EnrollmentRefused as exc:
        raise _refused(exc) from None


@operator_router.post("/devices/{device_id}/revoke")
def revoke_device(device_id: str, identity: Identity, actor: AdminOperator,
                  body: RevokeRequest | None = None) -> dict[str, Any]:
    """Revoke every certificate of a device; the broker refuses it after a reload."""
    try:
        return identity.revoke(device_id, body.reason if body else None, actor)
    except EnrollmentRefused as exc:
        raise _refused(exc) from None


@operator_router.get("/devices/{device_id}/identity")
def device_identity(device_id: str, identity: Identity) -> dict[str, Any]:
    view = identity.device_view(device_id)
    if view is None:
        raise ApiError(404, "unknown-device", f"device {device_id!r} was never enrolled here")
    return view
