"""Enrollment tokens: single-use, expiring, stored hashed, optionally bound to a device id.

A token looks like ``nfe_<id>_<secret>``: ``id`` (8 hex digits) names it in lists and
the audit log, the secret is 256 random bits. Only the SHA-256 of the whole token is
stored; with that much randomness there is nothing to brute-force, so a plain hash
is enough (like the operator tokens).

The decisions are pure functions (:func:`token_refusal`, :func:`identity_refusal`);
:func:`claim_token` is the I/O around them, and marks a token used with one
conditional UPDATE so that two enrollments racing with the same token cannot both win.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from fleet_server.db import Device
from fleet_server.identity.tables import DeviceIdentity, EnrollmentToken

TOKEN_RE = re.compile(r"^nfe_([0-9a-f]{8})_[A-Za-z0-9_-]{43}$")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class EnrollmentRefused(Exception):
    """Enrollment or renewal refused; ``code``/``status`` go into the API error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def hash_enrollment_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """(token, token id)."""
    token_id = secrets.token_hex(4)
    return f"nfe_{token_id}_{secrets.token_urlsafe(32)}", token_id


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``24h``, ``7d`` -> seconds; anything else raises ValueError."""
    match = _DURATION_RE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"duration {text!r}: use a positive number with a unit s, m, h or d "
                         "(e.g. 30m, 24h, 7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def token_refusal(row: EnrollmentToken | None, device_id: str,
                  now: float) -> EnrollmentRefused | None:
    """Why ``row`` cannot enroll ``device_id`` now, or None if it can."""
    if row is None or row.cancelled_at is not None:
        why = "was cancelled" if row is not None else "is not known to this server"
        return EnrollmentRefused(401, "token-unknown", f"the enrollment token {why}: ask an "
                                 "operator for a new one (nanofleet enroll-token create)")
    if row.used_at is not None:
        return EnrollmentRefused(409, "token-used", f"enrollment token {row.token_id} was "
                                 f"already used (by device {row.used_by!r} at "
                                 f"{_when(row.used_at)}); tokens are single-use: ask an "
                                 "operator for a new one")
    if row.expires_at <= now:
        return EnrollmentRefused(401, "token-expired", f"enrollment token {row.token_id} "
                                 f"expired at {_when(row.expires_at)}: ask an operator for a "
                                 "new one")
    if row.device_id is not None and row.device_id != device_id:
        return EnrollmentRefused(403, "token-device-mismatch", f"enrollment token "
                                 f"{row.token_id} is for device {row.device_id!r}, not "
                                 f"{device_id!r}: enroll with --device-id {row.device_id}")
    return None


def identity_refusal(device_id: str, identity: DeviceIdentity | None, in_inventory: bool,
                     token: EnrollmentToken) -> EnrollmentRefused | None:
    """An unbound token only ever makes a *new* identity.

    An id that is enrolled, was revoked, or is already in the inventory comes (back)
    only through a token an operator made for exactly that id: otherwise anyone holding
    any token could take a device's id over (a second valid certificate, and with the
    broker's client id = CN, the real device kicked off), or resurrect a device someone
    chose to cut off."""
    if token.device_id is not None:  # token_refusal already checked it names this id
        if identity is not None and identity.status == "enrolled" and not token.replace:
            # Made while the id was not enrolled: it may not take the identity over now
            # that a device holds it (review, December 2026).
            return EnrollmentRefused(
                409, "device-enrolled", f"device {identity.device_id!r} enrolled (since "
                f"{_when(identity.enrolled_at)}) after token {token.token_id} was made for it"
                ", without --replace: the token cannot take its identity over. If the device "
                "was replaced or reset, an operator creates a token with --replace "
                f"(nanofleet enroll-token create --device {identity.device_id} --replace)")
        return None
    if identity is not None and identity.status == "revoked":
        return EnrollmentRefused(
            403, "device-revoked", f"device {identity.device_id!r} was revoked "
            f"({identity.revoke_reason or 'no reason given'}); to enroll it again an operator "
            "must create a token for exactly this id (nanofleet enroll-token create --device "
            f"{identity.device_id})")
    if identity is not None:
        return EnrollmentRefused(
            409, "device-enrolled", f"device {identity.device_id!r} is already enrolled (since "
            f"{_when(identity.enrolled_at)}); a token not bound to it cannot take its identity"
            " over. If the device was replaced or reset, an operator creates a token for "
            f"exactly this id (nanofleet enroll-token create --device {identity.device_id} "
            "--replace): its current certificates are revoked when that token is used")
    if in_inventory:
        return EnrollmentRefused(
            409, "device-known", f"device id {device_id!r} is already in the inventory (it "
            "reported before it had a certificate); to give it one, an operator creates a "
            f"token for exactly this id (nanofleet enroll-token create --device {device_id})")
    return None


def claim_token(session: Session, token: str, device_id: str, now: float) -> EnrollmentToken:
    """Check ``token`` for ``device_id`` and mark it used; raises :class:`EnrollmentRefused`.

    Runs inside the caller's transaction: if issuing the certificate fails afterwards,
    the rollback leaves the token unused."""
    if TOKEN_RE.match(token) is None:
        raise EnrollmentRefused(401, "token-unknown", "that is not an enrollment token (they "
                                "look like nfe_<8 hex>_<43 characters>): check for a "
                                "copy-paste error")
    digest = hash_enrollment_token(token)
    row = session.scalars(select(EnrollmentToken)
                          .where(EnrollmentToken.token_sha256 == digest)).first()
    refusal = token_refusal(row, device_id, now)
    if refusal is None and row is not None:
        in_inventory = session.get(Device, device_id) is not None
        refusal = identity_refusal(device_id, session.get(DeviceIdentity, device_id),
                                   in_inventory, row)
    if refusal is not None or row is None:
        raise refusal or EnrollmentRefused(401, "token-unknown", "unknown token")
    claimed = session.execute(
        update(EnrollmentToken)
        .where(EnrollmentToken.token_sha256 == digest, EnrollmentToken.used_at.is_(None),
               EnrollmentToken.cancelled_at.is_(None), EnrollmentToken.expires_at > now)
        .values(used_at=now, used_by=device_id)
        .execution_options(synchronize_session=False))
    if getattr(claimed, "rowcount", 0) != 1:
        raise EnrollmentRefused(409, "token-used", f"enrollment token {row.token_id} was used "
                                "by another enrollment at the same moment; tokens are "
                                "single-use")
    session.refresh(row)
    return row


@dataclass(frozen=True)
class TokenSpec:
    device_id: str | None
    group: str | None
    tags: list[str]
    expires_in_s: float
    replace: bool = False  # the operator knows the id is enrolled and means to replace it


def create_token(session: Session, spec: TokenSpec, actor: str,
                 now: float) -> tuple[str, EnrollmentToken]:
    token, token_id = new_token()
    row = EnrollmentToken(token_id=token_id, token_sha256=hash_enrollment_token(token),
                          device_id=spec.device_id, group_name=spec.group,
                          tags=list(dict.fromkeys(spec.tags)), created_at=now,
                          created_by=actor, expires_at=now + spec.expires_in_s,
                          replace=spec.replace)
    session.add(row)
    session.flush()
    return token, row


def token_state(row: EnrollmentToken, now: float) -> str:
    if row.cancelled_at is not None:
        return "cancelled"
    if row.used_at is not None:
        return "used"
    return "expired" if row.expires_at <= now else "usable"


def token_view(row: EnrollmentToken, now: float) -> dict[str, Any]:
    return {"token_id": row.token_id, "state": token_state(row, now),
            "device_id": row.device_id, "group": row.group_name, "tags": list(row.tags or []),
            "created_at": row.created_at, "created_by": row.created_by,
            "expires_at": row.expires_at, "used_at": row.used_at, "used_by": row.used_by}
