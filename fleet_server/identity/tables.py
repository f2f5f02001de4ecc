"""Tables of device enrollment and identity, on the same SQLAlchemy ``Base`` as db.py.

- ``enrollment_tokens``: single-use, expiring; only the SHA-256 of a token is stored;
- ``device_identities``: one row per enrolled device: enrolled or revoked (the revoked
  ones are denied by the broker ACL and their certificates are in the CRL);
- ``issued_certificates``: every certificate the device CA signed (devices, the
  broker, the fleet server's MQTT identity), with its revocation;
- ``certificate_renewals``: which certificate each renewal replaced, and the successor
  (PEM), so a renewal whose answer was lost gets the same successor again while the
  replaced certificate can never be renewed a second time;
- ``device_quarantines``: every quarantine of a device at the broker (a flood the server
  saw, or an operator's), with its end and who ended it early: the active ones are denied
  by the broker ACL like revoked devices, until they end (fleet_server/identity/quarantine.py).

The migrations (fleet_server/migrations) create them; :mod:`fleet_server.schema` lists them.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Float,
    Integer,
    String,
    Text,
    and_,
    false,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from fleet_server.db import Base


class EnrollmentToken(Base):
    __tablename__ = "enrollment_tokens"

    token_id: Mapped[str] = mapped_column(String(16), primary_key=True,
                                          doc="public part of the token, shown in lists")
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True,
                                                  doc="only this device may use it")
    group_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    created_by: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    used_by: Mapped[str | None] = mapped_column(String(64), nullable=True,
                                                doc="device id that enrolled with it")
    cancelled_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    replace: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(),
        doc="made with --replace: may re-enroll its id while that id is enrolled")


class DeviceIdentity(Base):
    __tablename__ = "device_identities"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="enrolled",
                                        doc="enrolled / revoked")
    enrolled_at: Mapped[float] = mapped_column(Float, default=time.time)
    enrolled_with: Mapped[str | None] = mapped_column(String(16), nullable=True,
                                                      doc="token id of the last enrollment")
    renewed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    revoke_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class IssuedCertificate(Base):
    __tablename__ = "issued_certificates"

    serial: Mapped[str] = mapped_column(String(48), primary_key=True, doc="hex")
    kind: Mapped[str] = mapped_column(String(16), doc="device / broker / fleet-server")
    subject: Mapped[str] = mapped_column(String(255))
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    sha256: Mapped[str] = mapped_column(String(64), doc="certificate fingerprint")
    key_type: Mapped[str] = mapped_column(String(32))
    not_before: Mapped[float] = mapped_column(Float)
    not_after: Mapped[float] = mapped_column(Float)
    issued_at: Mapped[float] = mapped_column(Float, default=time.time)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    revoke_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


def revoked_device_ids(session: Session) -> list[str]:
    """Devices whose identity is revoked (rollouts and the inventory skip them)."""
    return list(session.scalars(select(DeviceIdentity.device_id)
                                .where(DeviceIdentity.status == "revoked")
                                .order_by(DeviceIdentity.device_id)))


class CertificateRenewal(Base):
    __tablename__ = "certificate_renewals"

    previous_serial: Mapped[str] = mapped_column(String(48), primary_key=True,
                                                 doc="the renewed (and revoked) certificate")
    serial: Mapped[str] = mapped_column(String(48), doc="its successor")
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    key_sha256: Mapped[str] = mapped_column(String(64), doc="SHA-256 of the successor's "
                                            "public key (DER SubjectPublicKeyInfo)")
    certificate_pem: Mapped[str] = mapped_column(Text, doc="the successor, for a retry")
    renewed_at: Mapped[float] = mapped_column(Float, default=time.time)


class DeviceQuarantine(Base):
    __tablename__ = "device_quarantines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    since: Mapped[float] = mapped_column(Float)
    until: Mapped[float] = mapped_column(Float, index=True, doc="when it ends by itself")
    reason: Mapped[str] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(64), doc="operator, or 'server' (a flood)")
    released_at: Mapped[float | None] = mapped_column(Float, nullable=True,
                                                      doc="ended early by an operator")
    released_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


def in_force(now: float) -> ColumnElement[bool]:
    """The quarantines in force at ``now``: not released, not run out."""
    return and_(DeviceQuarantine.released_at.is_(None), DeviceQuarantine.until > now)


def quarantined_device_ids(session: Session, now: float) -> list[str]:
    """Devices with a quarantine in force at ``now`` (the broker ACL denies them)."""
    return sorted(quarantine_ends(session, now))


def quarantine_view(row: DeviceQuarantine) -> dict[str, Any]:
    """A quarantine as the API, the CLI and the console show it."""
    return {"device_id": row.device_id, "since": row.since, "until": row.until,
            "reason": row.reason, "created_by": row.created_by,
            "released_at": row.released_at, "released_by": row.released_by}


def quarantine_in_force(session: Session, device_id: str, now: float) -> DeviceQuarantine | None:
    """The device's quarantine in force at ``now`` (the latest-ending), or None."""
    return session.scalars(
        select(DeviceQuarantine)
        .where(DeviceQuarantine.device_id == device_id, in_force(now))
        .order_by(DeviceQuarantine.until.desc())).first()


def quarantine_ends(session: Session, now: float) -> dict[str, float]:
    """Each device quarantined at ``now``: when its quarantine ends."""
    ends: dict[str, float] = {}
    for device_id, until in session.execute(
            select(DeviceQuarantine.device_id, DeviceQuarantine.until).where(in_force(now))):
        ends[device_id] = max(until, ends.get(device_id, until))
    return ends
