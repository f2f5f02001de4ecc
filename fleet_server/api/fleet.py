"""Operator API for fleet operations: device labels, rollouts, audit log, tokens.

Scopes: reading needs ``read``; labels and rollouts need ``deploy``; tokens need
``admin`` (see :mod:`fleet_server.auth`). Every change is in the audit log under
the calling token's name.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from fleet_server.api.core import AdminOperator, ApiError, Operator, Service, authenticate
from fleet_server.api.schemas import (
    AuditList,
    AuditView,
    DeviceLabels,
    DeviceList,
    DeviceSummary,
    TokenCreate,
    TokenCreated,
    TokenList,
    TokenView,
    WhoAmI,
)
from fleet_server.auth import (
    SCOPES,
    Identity,
    TokenRefused,
    create_token,
    list_tokens,
    revoke_token,
)
from fleet_server.db import AuditEntry
from fleet_server.device_labels import LabelChange, UnknownDevices, set_labels
from fleet_server.device_views import device_summary
from fleet_server.rollouts.records import RolloutStatus
from fleet_server.rollouts.views import (
    RolloutActionResult,
    RolloutCreate,
    RolloutList,
    RolloutView,
)

router = APIRouter(prefix="/api/v1")


# --- identity ----------------------------------------------------------------------------------

@router.get("/whoami", response_model=WhoAmI, tags=["tokens"])
def whoami(identity: Annotated[Identity, Depends(authenticate)], _actor: Operator) -> WhoAmI:
    """The calling token's name and effective scopes."""
    return WhoAmI(name=identity.name, scopes=[s for s in SCOPES if s in identity.scopes],
                  source=identity.source)


# --- device labels -----------------------------------------------------------------------------

AUDIT_DEVICE_IDS = 100  # device ids an audit entry names; the rest are counted

@router.patch("/devices", response_model=DeviceList, tags=["devices"])
def label_devices(body: DeviceLabels, service: Service, actor: Operator) -> DeviceList:
    """Set the group and tags of devices (selection for rollouts and filters)."""
    change = LabelChange(group=body.group, clear_group=body.clear_group,
                         tags=tuple(body.tags) if body.tags is not None else None,
                         add_tags=tuple(body.add_tags), remove_tags=tuple(body.remove_tags))
    now = time.time()
    with service.db.session() as session:
        try:
            devices = set_labels(session, body.devices, change, now, create=body.create)
        except UnknownDevices as exc:
            raise ApiError(404, "unknown-device", f"{exc}; check the ids (nanofleet devices "
                           "list), or add them on purpose with create (devices tag "
                           "--create)") from None
        shown = ",".join(body.devices[:3])[:200]
        more = f" +{len(body.devices) - 3} more" if len(body.devices) > 3 else ""
        # The ids kept are bounded: the whole list (100,000 ids, 2 MB) went into every
        # audit entry, and the audit page shows 50 entries (review, December 2026).
        detail = body.model_dump(mode="json", exclude_none=True)
        detail["devices"] = body.devices[:AUDIT_DEVICE_IDS]
        if len(body.devices) > AUDIT_DEVICE_IDS:
            detail["devices_not_listed"] = len(body.devices) - AUDIT_DEVICE_IDS
        session.add(AuditEntry(actor=actor, action="devices-label", subject=shown + more,
                               at=now, detail=detail))
        session.flush()
        return DeviceList(devices=[DeviceSummary.model_validate(device_summary(d))
                                   for d in devices])


# --- rollouts ----------------------------------------------------------------------------------

@router.post("/rollouts", response_model=RolloutView, status_code=201, tags=["rollouts"])
def create_rollout(body: RolloutCreate, service: Service, actor: Operator) -> RolloutView:
    """Start a staged rollout: canary, then waves, with automatic halt."""
    return service.rollouts.create(body, actor)


@router.get("/rollouts", response_model=RolloutList, tags=["rollouts"])
def get_rollouts(service: Service, status: RolloutStatus | None = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> RolloutList:
    """Rollouts, newest first, with per-state counts."""
    return RolloutList(rollouts=service.rollouts.list(status, limit))


@router.get("/rollouts/{rollout_id}", response_model=RolloutView, tags=["rollouts"])
def get_rollout(rollout_id: str, service: Service, devices: bool = False,
                log: Annotated[int, Query(ge=0, le=1000)] = 50) -> RolloutView:
    """One rollout: stages, counts, halt reason, log, and (devices=true) every device."""
    return service.rollouts.get(rollout_id, with_devices=devices, log_lines=log)


@router.post("/rollouts/{rollout_id}/pause", response_model=RolloutActionResult,
             tags=["rollouts"])
def pause_rollout(rollout_id: str, service: Service, actor: Operator) -> RolloutActionResult:
    """Stop notifying devices (devices already updating finish)."""
    return service.rollouts.pause(rollout_id, actor)


@router.post("/rollouts/{rollout_id}/resume", response_model=RolloutActionResult,
             tags=["rollouts"])
def resume_rollout(rollout_id: str, service: Service, actor: Operator) -> RolloutActionResult:
    """Continue a paused rollout, or override the halt of a halted one."""
    return service.rollouts.resume(rollout_id, actor)


@router.post("/rollouts/{rollout_id}/abort", response_model=RolloutActionResult,
             tags=["rollouts"])
def abort_rollout(rollout_id: str, service: Service, actor: Operator) -> RolloutActionResult:
    """Stop for good; devices still updating or in trial get a rollback desired state."""
    return service.rollouts.abort(rollout_id, actor)


# --- audit -------------------------------------------------------------------------------------

@router.get("/audit", response_model=AuditList, tags=["audit"])
def get_audit(service: Service, actor: str | None = None, action: str | None = None,
              subject: str | None = None, since: float | None = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> AuditList:
    """Who did what, when: newest first."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if subject is not None:
        query = query.where(AuditEntry.subject == subject)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    with service.db.session() as session:
        return AuditList(entries=[AuditView(id=e.id, at=e.at, actor=e.actor, action=e.action,
                                            subject=e.subject or "", detail=e.detail or {})
                                  for e in session.scalars(query)])


# --- tokens ------------------------------------------------------------------------------------

@router.post("/tokens", response_model=TokenCreated, status_code=201, tags=["tokens"])
def post_token(body: TokenCreate, service: Service, actor: AdminOperator) -> TokenCreated:
    """Make an operator token (admin only); the token is in this answer only."""
    try:
        with service.db.session() as session:
            token = create_token(session, body.name, body.scopes,
                                 service.config.operator_tokens, actor)
    except TokenRefused as exc:
        raise ApiError(409, "token-exists", str(exc)) from None
    return TokenCreated(name=body.name, scopes=body.scopes, token=token)


@router.get("/tokens", response_model=TokenList, tags=["tokens"])
def get_tokens(service: Service, _actor: AdminOperator) -> TokenList:
    """Every operator token (names and scopes; never the tokens or their hashes)."""
    with service.db.session() as session:
        rows = list_tokens(session, service.config.operator_tokens)
    return TokenList(tokens=[TokenView.model_validate(r) for r in rows])


@router.delete("/tokens/{name}", response_model=TokenList, tags=["tokens"])
def delete_token(name: str, service: Service, actor: AdminOperator) -> TokenList:
    """Revoke an API token at once (config tokens are removed from the config)."""
    try:
        with service.db.session() as session:
            revoke_token(session, name, service.config.operator_tokens, actor)
    except TokenRefused as exc:
        raise ApiError(404, "unknown-token", str(exc)) from None
    return get_tokens(service, actor)


__all__ = ["DeviceList", "router"]
