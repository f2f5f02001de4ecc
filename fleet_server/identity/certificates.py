"""The certificates this server issues and revokes, and the broker's view of them.

:class:`CertificateRegistry` opens the device CA (:mod:`fleet_server.identity.device_ca`),
records every certificate it issues, revokes a device's certificates and, after every
change of who is revoked, rewrites the two files the broker reads from the CA directory:
``crl.pem`` (new TLS handshakes) and ``acl`` (sessions already open). The broker applies
both on reload (SIGHUP); every change of the CRL runs ``enrollment.broker_reload_command``
so the broker applies it at once. It also issues the broker's and the fleet server's own
certificates (``broker-config``).

Separate from :mod:`fleet_server.identity.service`, which extends it with how a device
gets an identity (enrollment tokens, enrollment, renewal): this is what an operator and
the broker see of identities once issued, and what enrollment and renewal revoke through.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from fleet_server.config import ServerConfig
from fleet_server.db import AuditEntry, Database
from fleet_server.identity.broker_policy import BrokerPolicy
from fleet_server.identity.device_ca import (
    SERVICE_CA_SUBJECT,
    CertKind,
    DeviceCA,
    ca_directory,
    common_name,
    describe_key,
    fingerprint,
    serial_hex,
    service_ca_directory,
)
from fleet_server.identity.tables import DeviceIdentity, IssuedCertificate
from fleet_server.identity.tokens import EnrollmentRefused
from fleet_server.migrations import upgrade_logged

log = logging.getLogger("nanofleet.server.identity")


CRL_MAX_AGE_S = 10.0  # how stale the public CRL download may be (downloadable_crl)


def add_audit_entry(session: Any, actor: str, action: str, subject: str, **detail: Any) -> None:
    session.add(AuditEntry(actor=actor, action=action, subject=subject, detail=detail))


class CertificateRegistry:
    """The device CA, the certificates it issued (and revoked), and the broker's CRL and
    ACL built from them."""

    def __init__(self, config: ServerConfig, db: Database,
                 root_bytes: Callable[[], bytes] | None = None) -> None:
        self.config = config
        self.settings = config.enrollment
        self.db = db
        self.root_bytes = root_bytes
        self.ca = DeviceCA.open(ca_directory(config.data_dir))
        upgrade_logged(db)  # also when it runs before the server ever did (broker-config)
        self.policy = BrokerPolicy(self.ca, db, self.settings)
        self._crl_lock = threading.Lock()
        self._crl: tuple[float, bytes] | None = None  # (monotonic time built, PEM)
        self.publish_broker_policy()

    @property
    def acl_path(self) -> Any:
        return self.policy.acl_path

    def _record(self, session: Any, cert: x509.Certificate, kind: CertKind,
                device_id: str | None) -> None:
        session.add(IssuedCertificate(
            serial=serial_hex(cert.serial_number), kind=kind,
            subject=common_name(cert.subject) or "", device_id=device_id,
            sha256=fingerprint(cert), key_type=describe_key(cert.public_key()),
            not_before=cert.not_valid_before_utc.timestamp(),
            not_after=cert.not_valid_after_utc.timestamp(), issued_at=time.time()))

    # --- revocation ------------------------------------------------------------------------
    def revoke(self, device_id: str, reason: str | None, actor: str) -> dict[str, Any]:
        now = time.time()
        with self.db.session() as session:
            identity = session.get(DeviceIdentity, device_id)
            certs = list(session.scalars(select(IssuedCertificate).where(
                IssuedCertificate.device_id == device_id, IssuedCertificate.kind == "device")))
            if identity is None and not certs:
                raise EnrollmentRefused(404, "unknown-device", f"device {device_id!r} was never "
                                        "enrolled here (check the id: nanofleet devices list)")
            newly = [c for c in certs if c.revoked_at is None]
            for c in newly:
                c.revoked_at, c.revoke_reason = now, reason
            already = identity is not None and identity.status == "revoked"
            if identity is None:
                identity = DeviceIdentity(device_id=device_id, enrolled_at=now)
                session.add(identity)
            identity.status = "revoked"
            if not already:
                identity.revoked_at, identity.revoked_by = now, actor
                identity.revoke_reason = reason
            add_audit_entry(session, actor, "device.revoke", device_id, reason=reason,
                            serials=[c.serial for c in newly])
        reloaded = self.publish_broker_policy(reload=True)
        log.warning("revoked %s (%d certificates): %s", device_id, len(newly), reason)
        applied = ("the broker was reloaded (enrollment.broker_reload_command): it re-read "
                   "the CRL and the ACL")
        todo = ("reload the broker (systemctl reload mosquitto, or SIGHUP; or set "
                "enrollment.broker_reload_command): it re-reads the CRL (the device's next "
                "connection is refused) and the ACL (its open session can no longer publish "
                "or receive)")
        return {"device_id": device_id, "revoked_serials": [c.serial for c in newly],
                "already_revoked": already, "crl_file": str(self.ca.crl_path),
                "acl_file": str(self.acl_path), "broker_reloaded": reloaded,
                "next_step": applied if reloaded else todo}

    def _revoke_certificates(self, session: Any, device_id: str, now: float,
                             reason: str) -> list[str]:
        """Mark every live device certificate of ``device_id`` revoked; their serials."""
        certs = list(session.scalars(select(IssuedCertificate).where(
            IssuedCertificate.device_id == device_id, IssuedCertificate.kind == "device",
            IssuedCertificate.revoked_at.is_(None))))
        for c in certs:
            c.revoked_at, c.revoke_reason = now, reason
        return [c.serial for c in certs]

    def broker_policy(self) -> tuple[bytes, str]:
        """(CRL PEM, device ACL) from the database: the same on every replica sharing it."""
        return self.policy.build()

    def downloadable_crl(self, max_age_s: float = CRL_MAX_AGE_S) -> bytes:
        """The CRL for ``GET /device-ca/crl.pem``, built at most once per ``max_age_s``: the
        route needs no login, and each build reads every revocation and signs (review,
        December 2026: at 40,000 entries 2.5 s of CPU per request). A change this replica
        makes shows at once (``publish_broker_policy`` drops the copy); another replica's,
        ``max_age_s`` later at most."""
        with self._crl_lock:
            now = time.monotonic()
            if self._crl is None or now - self._crl[0] >= max_age_s:
                self._crl = (now, self.broker_policy()[0])
            return self._crl[1]

    def publish_broker_policy(self, reload: bool = False) -> bool:
        """Rewrite crl.pem and acl; with ``reload`` tell the broker. True if it was told."""
        with self._crl_lock:
            self._crl = None  # this replica's own change shows in the download at once
        return self.policy.publish(reload)

    # --- service certificates (broker-config) ----------------------------------------------
    def service_ca(self) -> DeviceCA:
        return DeviceCA.open(service_ca_directory(self.config.data_dir),
                             subject=SERVICE_CA_SUBJECT)

    def issue_service_certificate(self, cn: str, kind: CertKind, validity: dt.timedelta,
                                  hosts: Sequence[str] = ()) -> tuple[x509.Certificate, bytes]:
        """A new key and certificate: (cert, key PEM). The broker's comes from the device CA
        (devices verify the broker with it), the fleet server's from the service CA."""
        key = ec.generate_private_key(ec.SECP256R1())
        ca = self.ca if kind == "broker" else self.service_ca()
        cert = ca.issue(cn, key.public_key(), kind, validity, hosts)
        with self.db.session() as session:
            self._record(session, cert, kind, None)
            add_audit_entry(session, "broker-config", "ca.issue", cn, kind=kind,
                            serial=serial_hex(cert.serial_number), hosts=list(hosts))
        return cert, key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())

    # --- views -----------------------------------------------------------------------------
    def device_view(self, device_id: str) -> dict[str, Any] | None:
        with self.db.session() as session:
            identity = session.get(DeviceIdentity, device_id)
            certs = list(session.scalars(select(IssuedCertificate).where(
                IssuedCertificate.device_id == device_id)
                .order_by(IssuedCertificate.issued_at.desc())))
            if identity is None and not certs:
                return None
            return {
                "device_id": device_id,
                "status": identity.status if identity else "unknown",
                "enrolled_at": identity.enrolled_at if identity else None,
                "enrolled_with": identity.enrolled_with if identity else None,
                "renewed_at": identity.renewed_at if identity else None,
                "revoked_at": identity.revoked_at if identity else None,
                "revoked_by": identity.revoked_by if identity else None,
                "revoke_reason": identity.revoke_reason if identity else None,
                "certificates": [{"serial": c.serial, "sha256": c.sha256,
                                  "key_type": c.key_type, "not_before": c.not_before,
                                  "not_after": c.not_after, "issued_at": c.issued_at,
                                  "revoked_at": c.revoked_at} for c in certs]}
