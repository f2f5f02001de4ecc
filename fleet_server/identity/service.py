"""Device identity on the server: enrollment, renewal, revocation, and the broker's policy files.

:class:`IdentityService` ties the device CA (:mod:`fleet_server.identity.device_ca`), the
enrollment tokens (:mod:`fleet_server.identity.tokens`) and the identity tables together.
After every change of who is revoked it rewrites the two files the broker reads from
the CA directory: ``crl.pem`` (new TLS handshakes) and ``acl`` (sessions already
open). The broker applies both on reload (SIGHUP).

Renewal needs no token: the device sends its current certificate and a CSR for the
*same* key. The CSR is signed with that key, so only the holder of the certified key
can renew; a revoked or expired certificate cannot.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select

from fleet_server.broker_config import ACL_FILE, render_acl
from fleet_server.config import ServerConfig
from fleet_server.db import AuditEntry, Database
from fleet_server.identity.device_ca import (
    SERVICE_CA_SUBJECT,
    CertKind,
    CsrRejected,
    DeviceCA,
    RevokedSerial,
    ca_directory,
    check_csr,
    check_enrollable_id,
    common_name,
    describe_key,
    fingerprint,
    serial_hex,
    service_ca_directory,
    write_public,
)
from fleet_server.identity.tables import (
    DeviceIdentity,
    EnrollmentToken,
    IssuedCertificate,
)
from fleet_server.identity.tokens import (
    EnrollmentRefused,
    TokenSpec,
    claim_token,
    create_token,
    token_view,
)
from fleet_server.inventory import get_or_create_device
from fleet_server.migrations import upgrade_logged

log = logging.getLogger("nanofleet.server.identity")


@dataclass(frozen=True)
class IssuedIdentity:
    """What an enrolled (or renewed) device gets back."""

    device_id: str
    certificate_pem: str
    ca_certificate_pem: str
    serial: str
    not_after: float
    renew_after: float
    tuf_root: str | None
    broker_host: str
    broker_port: int
    metadata_url: str | None
    target_base_url: str | None


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _same_key(a: object, b: object) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    if not isinstance(a, ec.EllipticCurvePublicKey | rsa.RSAPublicKey) or \
            not isinstance(b, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return False
    return a.public_bytes(serialization.Encoding.DER, fmt) == \
        b.public_bytes(serialization.Encoding.DER, fmt)


def _audit(session: Any, actor: str, action: str, subject: str, **detail: Any) -> None:
    session.add(AuditEntry(actor=actor, action=action, subject=subject, detail=detail))


class IdentityService:
    def __init__(self, config: ServerConfig, db: Database,
                 root_bytes: Callable[[], bytes] | None = None) -> None:
        self.config = config
        self.settings = config.enrollment
        self.db = db
        self.root_bytes = root_bytes
        self.ca = DeviceCA.open(ca_directory(config.data_dir))
        upgrade_logged(db)  # also when it runs before the server ever did (broker-config)
        self._policy_lock = threading.Lock()
        self.publish_broker_policy()

    @property
    def server_client_ids(self) -> tuple[str, ...]:
        return (self.config.mqtt.client_id,)

    @property
    def broker_host(self) -> str:
        return self.settings.broker_host or self.config.mqtt.host

    @property
    def acl_path(self) -> Any:
        return self.ca.dir / ACL_FILE

    # --- tokens ----------------------------------------------------------------------------
    def create_token(self, spec: TokenSpec, actor: str) -> tuple[str, dict[str, Any]]:
        if spec.device_id is not None:
            check_enrollable_id(spec.device_id, self.server_client_ids)
        max_s = self.settings.token_max_hours * 3600
        if spec.expires_in_s > max_s:
            raise ValueError(f"a token may live at most {self.settings.token_max_hours:g} h "
                             "(enrollment.token_max_hours in the server config)")
        now = time.time()
        with self.db.session() as session:
            token, row = create_token(session, spec, actor, now)
            _audit(session, actor, "enroll-token.create", row.token_id,
                   device_id=spec.device_id, group=spec.group, tags=spec.tags,
                   expires_at=row.expires_at)
            return token, token_view(row, now)

    # --- enrollment ------------------------------------------------------------------------
    def _validity(self) -> dt.timedelta:
        return dt.timedelta(hours=self.settings.device_cert_hours)

    def enroll(self, token: str, device_id: str, csr_pem: str) -> IssuedIdentity:
        try:
            check_enrollable_id(device_id, self.server_client_ids)
            csr = check_csr(csr_pem, device_id)
        except CsrRejected as exc:
            raise EnrollmentRefused(400, "bad-csr", str(exc)) from None
        except ValueError as exc:
            raise EnrollmentRefused(422, "bad-device-id", str(exc)) from None
        now = time.time()
        with self.db.session() as session:
            row = claim_token(session, token, device_id, now)
            identity = session.get(DeviceIdentity, device_id)
            was_revoked = identity is not None and identity.status == "revoked"
            cert = self.ca.issue_for_csr(csr, device_id, self._validity())
            self._record(session, cert, "device", device_id)
            if identity is None:
                identity = DeviceIdentity(device_id=device_id)
                session.add(identity)
            identity.status, identity.enrolled_at = "enrolled", now
            identity.enrolled_with, identity.renewed_at = row.token_id, None
            identity.revoked_at = identity.revoked_by = identity.revoke_reason = None
            # In the inventory from now on (state unknown until it reports), so rollouts
            # can select it by the group and tags its token carried.
            device = get_or_create_device(session, device_id, now)
            if row.group_name is not None:
                device.group_name = row.group_name
            if row.tags:
                device.tags = sorted(set(device.tags or []) | set(row.tags))
            _audit(session, f"enroll-token:{row.token_id}", "device.enroll", device_id,
                   serial=serial_hex(cert.serial_number), token_created_by=row.created_by,
                   key=describe_key(csr.public_key()), re_enrolled_after_revocation=was_revoked)
        if was_revoked:
            self.publish_broker_policy()  # its ACL deny goes
        log.info("enrolled %s (certificate %s)", device_id, serial_hex(cert.serial_number))
        return self._issued(device_id, cert)

    def renew(self, device_id: str, certificate_pem: str, csr_pem: str) -> IssuedIdentity:
        try:
            csr = check_csr(csr_pem, device_id)
            current = x509.load_pem_x509_certificate(certificate_pem.encode())
        except CsrRejected as exc:
            raise EnrollmentRefused(400, "bad-csr", str(exc)) from None
        except ValueError as exc:
            raise EnrollmentRefused(400, "bad-certificate", f"not a PEM certificate: {exc}") \
                from None
        problem = self._renewal_problem(current, device_id, csr)
        if problem:
            raise EnrollmentRefused(403, "renewal-refused", problem + "; enroll again with a "
                                    "new token (nanofleet-agent enroll --token ...)")
        now = time.time()
        with self.db.session() as session:
            serial = serial_hex(current.serial_number)
            issued = session.get(IssuedCertificate, serial)
            identity = session.get(DeviceIdentity, device_id)
            if issued is None or issued.revoked_at is not None or identity is None or \
                    identity.status != "enrolled":
                raise EnrollmentRefused(403, "renewal-refused", f"certificate {serial} of "
                                        f"{device_id!r} is revoked or unknown to this server; "
                                        "ask an operator for a new enrollment token")
            cert = self.ca.issue_for_csr(csr, device_id, self._validity())
            self._record(session, cert, "device", device_id)
            identity.renewed_at = now
            _audit(session, f"device:{device_id}", "device.renew", device_id,
                   previous_serial=serial, serial=serial_hex(cert.serial_number))
        return self._issued(device_id, cert)

    def _renewal_problem(self, current: x509.Certificate, device_id: str,
                         csr: x509.CertificateSigningRequest) -> str | None:
        """Pure checks on the presented certificate (the database checks come after)."""
        if not self.ca.issued_this(current):
            return "the certificate was not issued by this fleet's device CA"
        if common_name(current.subject) != device_id:
            return f"the certificate is not {device_id!r}'s"
        now = dt.datetime.now(dt.UTC)
        if not current.not_valid_before_utc <= now < current.not_valid_after_utc:
            return f"the certificate expired at {current.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        if not _same_key(current.public_key(), csr.public_key()):
            return ("the CSR is not for the certified key: renewal keeps the key (its CSR "
                    "signature proves the device holds it)")
        return None

    def _issued(self, device_id: str, cert: x509.Certificate) -> IssuedIdentity:
        metadata_url, target_base_url = self.config.repo_urls()
        start = cert.not_valid_before_utc.timestamp()
        end = cert.not_valid_after_utc.timestamp()
        return IssuedIdentity(
            device_id=device_id, certificate_pem=_pem(cert),
            ca_certificate_pem=self.ca.cert_pem(), serial=serial_hex(cert.serial_number),
            not_after=end, renew_after=start + (end - start) * 2 / 3,
            tuf_root=self.root_bytes().decode() if self.root_bytes else None,
            broker_host=self.broker_host, broker_port=self.settings.broker_port,
            metadata_url=metadata_url, target_base_url=target_base_url)

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
            _audit(session, actor, "device.revoke", device_id, reason=reason,
                   serials=[c.serial for c in newly])
        self.publish_broker_policy()
        log.warning("revoked %s (%d certificates): %s", device_id, len(newly), reason)
        return {"device_id": device_id, "revoked_serials": [c.serial for c in newly],
                "already_revoked": already, "crl_file": str(self.ca.crl_path),
                "acl_file": str(self.acl_path),
                "next_step": "reload the broker (systemctl reload mosquitto, or SIGHUP): it "
                "re-reads the CRL (the device's next connection is refused) and the ACL (its "
                "open session can no longer publish or receive)"}

    def broker_policy(self) -> tuple[bytes, str]:
        """(CRL PEM, device ACL) from the database: the same on every replica sharing it."""
        now = time.time()
        with self.db.session() as session:
            rows = list(session.scalars(select(IssuedCertificate).where(
                IssuedCertificate.revoked_at.is_not(None))))
            revoked_ids = list(session.scalars(select(DeviceIdentity.device_id).where(
                DeviceIdentity.status == "revoked")))
        # An expired certificate fails on its dates alone: the CRL keeps only live ones.
        revoked = [RevokedSerial(int(r.serial, 16), dt.datetime.fromtimestamp(
            r.revoked_at or now, dt.UTC)) for r in rows if r.not_after > now - 86400]
        return self.ca.build_crl(revoked), render_acl(revoked_ids)

    def publish_broker_policy(self) -> None:
        """Rewrite crl.pem and acl in the CA directory (what the broker reads)."""
        crl, acl = self.broker_policy()
        with self._policy_lock:
            write_public(self.ca.crl_path, crl)
            write_public(self.acl_path, acl.encode())

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
            _audit(session, "broker-config", "ca.issue", cn, kind=kind,
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

    def list_tokens(self, include_spent: bool) -> list[dict[str, Any]]:
        now = time.time()
        with self.db.session() as session:
            rows = session.scalars(select(EnrollmentToken)
                                   .order_by(EnrollmentToken.created_at.desc()))
            views = [token_view(r, now) for r in rows]
        return views if include_spent else [v for v in views if v["state"] == "usable"]

    def cancel_token(self, token_id: str, actor: str) -> dict[str, Any]:
        now = time.time()
        with self.db.session() as session:
            row = session.get(EnrollmentToken, token_id)
            if row is None:
                raise EnrollmentRefused(404, "unknown-token", f"no enrollment token "
                                        f"{token_id!r} (nanofleet enroll-token list --all)")
            if row.used_at is None and row.cancelled_at is None:
                row.cancelled_at = now
                _audit(session, actor, "enroll-token.cancel", token_id)
            return token_view(row, now)
