"""Device identity on the server: enrollment tokens, enrollment and renewal.

:class:`IdentityService` ties the device CA (:mod:`fleet_server.identity.device_ca`), the
enrollment tokens (:mod:`fleet_server.identity.tokens`) and the identity tables together.
It extends :class:`fleet_server.identity.certificates.CertificateRegistry` (issued
certificates, revocation, the broker's CRL and ACL files, service certificates) with how
a device gets an identity.

An id that is enrolled (or revoked, or in the inventory) is enrolled again only with a
token bound to exactly that id; the earlier certificates are then revoked. Renewal
needs no token but proof of the current key, and rotates the key
(:mod:`fleet_server.identity.renewal`). Either change of who is revoked rewrites the
broker's files and runs ``enrollment.broker_reload_command`` so the broker applies it at
once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select, update

from fleet_server.identity.certificates import CertificateRegistry, add_audit_entry
from fleet_server.identity.device_ca import (
    CsrRejected,
    check_csr,
    check_enrollable_id,
    describe_key,
    serial_hex,
)
from fleet_server.identity.renewal import key_sha256, renewal_problem
from fleet_server.identity.tables import (
    CertificateRenewal,
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

log = logging.getLogger("nanofleet.server.identity")


# A device renews once per validity period (after 2/3 of it); a few forced renewals a day
# are an operator at work. More is a key renewing in a loop.
MAX_RENEWALS_PER_WINDOW = 10
RENEWAL_WINDOW_S = 86_400.0


def _lock_identity(session: Any, device_id: str) -> None:
    """Take ``device_id``'s identity row for the rest of the transaction: a write that
    changes nothing, because a write is what both databases lock (PostgreSQL the row,
    SQLite the whole database; a SELECT ... FOR UPDATE would lock nothing on SQLite).
    Renewal and re-enrollment of one id then run one after the other."""
    session.execute(update(DeviceIdentity).where(DeviceIdentity.device_id == device_id)
                    .values(status=DeviceIdentity.status))

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


class IdentityService(CertificateRegistry):
    """Enrollment tokens, enrollment and renewal on top of the certificate registry."""

    @property
    def server_client_ids(self) -> tuple[str, ...]:
        return (self.config.mqtt.client_id,)

    @property
    def broker_host(self) -> str:
        return self.settings.broker_host or self.config.mqtt.host

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
            current = session.get(DeviceIdentity, spec.device_id) if spec.device_id else None
            if current is not None and current.status == "enrolled" and not spec.replace:
                raise EnrollmentRefused(
                    409, "device-enrolled", f"device {spec.device_id!r} is enrolled (since "
                    f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(current.enrolled_at))})"
                    ": a token for it replaces its identity, and its current certificates are "
                    "revoked when the token is used. Say so with --replace (API: "
                    '"replace": true)')
            token, row = create_token(session, spec, actor, now)
            add_audit_entry(session, actor, "enroll-token.create", row.token_id,
                            device_id=spec.device_id, group=spec.group, tags=spec.tags,
                            expires_at=row.expires_at, replace=current is not None and spec.replace)
            return token, token_view(row, now)

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
                add_audit_entry(session, actor, "enroll-token.cancel", token_id)
            return token_view(row, now)

    # --- enrollment ------------------------------------------------------------------------
    def _validity(self) -> dt.timedelta:
        return dt.timedelta(hours=self.settings.device_cert_hours)

    def enroll(self, token: str, device_id: str, csr_pem: str,
               root_sha256: str | None = None) -> IssuedIdentity:
        try:
            check_enrollable_id(device_id, self.server_client_ids)
            csr = check_csr(csr_pem, device_id)
        except CsrRejected as exc:
            raise EnrollmentRefused(400, "bad-csr", str(exc)) from None
        except ValueError as exc:
            raise EnrollmentRefused(422, "bad-device-id", str(exc)) from None
        if root_sha256 is not None and self.root_bytes is not None:
            served = hashlib.sha256(self.root_bytes()).hexdigest()
            if served != root_sha256:
                raise EnrollmentRefused(
                    409, "root-mismatch", f"this server's TUF root has sha256 {served}, not the "
                    f"pinned {root_sha256}: check the pin from the key ceremony (the root may "
                    "have been rotated since); the token was not used")
        now = time.time()
        with self.db.session() as session:
            row = claim_token(session, token, device_id, now)
            _lock_identity(session, device_id)  # a renewal of this id in flight ends first
            identity = session.get(DeviceIdentity, device_id)
            was_revoked = identity is not None and identity.status == "revoked"
            # A (bound) token re-enrolls the id: whatever held its earlier certificates
            # (the old hardware, or whoever copied its key) is cut off.
            replaced = self._revoke_certificates(
                session, device_id, now, f"replaced: re-enrolled with token {row.token_id}")
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
            add_audit_entry(session, f"enroll-token:{row.token_id}", "device.enroll", device_id,
                            serial=serial_hex(cert.serial_number), token_created_by=row.created_by,
                            key=describe_key(csr.public_key()),
                            re_enrolled_after_revocation=was_revoked, revoked_serials=replaced)
        if was_revoked or replaced:
            self.publish_broker_policy(reload=True)  # the ACL deny goes, the CRL grows
        log.info("enrolled %s (certificate %s)%s", device_id, serial_hex(cert.serial_number),
                 f", revoked its earlier certificates {replaced}" if replaced else "")
        return self._issued(device_id, cert)

    def renew(self, device_id: str, certificate_pem: str, csr_pem: str,
              proof: str) -> IssuedIdentity:
        try:
            csr = check_csr(csr_pem, device_id)
            current = x509.load_pem_x509_certificate(certificate_pem.encode())
        except CsrRejected as exc:
            raise EnrollmentRefused(400, "bad-csr", str(exc)) from None
        except ValueError as exc:
            raise EnrollmentRefused(400, "bad-certificate", f"not a PEM certificate: {exc}") \
                from None
        problem = renewal_problem(self.ca, current, device_id, csr_pem, csr, proof,
                                  dt.datetime.now(dt.UTC))
        if problem:
            raise EnrollmentRefused(403, "renewal-refused", problem + "; enroll again with a "
                                    "new token (nanofleet-agent enroll --token-file ...)")
        now, serial = time.time(), serial_hex(current.serial_number)
        with self.db.session() as session:
            # First, before anything is read: a --replace re-enrollment of this id in flight
            # ends first, and then this renewal sees its certificate revoked (review,
            # December 2026: read before the replacement committed, a renewal's successor
            # outlived it, live and not on the CRL: the cloned key kept the id).
            _lock_identity(session, device_id)
            issued = session.get(IssuedCertificate, serial)
            identity = session.get(DeviceIdentity, device_id)
            if issued is None or identity is None or identity.status != "enrolled":
                raise EnrollmentRefused(403, "renewal-refused", f"certificate {serial} of "
                                        f"{device_id!r} is revoked or unknown to this server; "
                                        "ask an operator for a new enrollment token")
            if issued.revoked_at is not None:
                return self._renewed_before(session, issued, csr, device_id)
            recent = session.scalar(select(func.count()).select_from(CertificateRenewal).where(
                CertificateRenewal.device_id == device_id,
                CertificateRenewal.renewed_at > now - RENEWAL_WINDOW_S)) or 0
            if recent >= MAX_RENEWALS_PER_WINDOW:
                # One key renewing in a loop grew the CRL (each renewal revokes the renewed
                # certificate for its remaining life), reloaded the broker each time and
                # held the policy lock revocations wait on (review, December 2026).
                raise EnrollmentRefused(429, "renewal-rate-limited", f"{device_id!r} renewed "
                                        f"{recent} times in the last 24 hours, the most this "
                                        "server allows; renew again tomorrow")
            cert = self.ca.issue_for_csr(csr, device_id, self._validity())
            self._record(session, cert, "device", device_id)
            new_serial = serial_hex(cert.serial_number)
            issued.revoked_at, issued.revoke_reason = now, f"renewed: replaced by {new_serial}"
            session.add(CertificateRenewal(
                previous_serial=serial, serial=new_serial, device_id=device_id,
                key_sha256=key_sha256(csr.public_key()), certificate_pem=_pem(cert),
                renewed_at=now))
            identity.renewed_at = now
            add_audit_entry(session, f"device:{device_id}", "device.renew", device_id,
                            previous_serial=serial, serial=new_serial,
                            key=describe_key(csr.public_key()))
        self.publish_broker_policy(reload=True)  # the renewed certificate is revoked
        return self._issued(device_id, cert)

    def _renewed_before(self, session: Any, issued: IssuedCertificate,
                        csr: x509.CertificateSigningRequest, device_id: str) -> IssuedIdentity:
        """The same renewal again (its answer was lost): the same successor, once more.
        Anything else with a revoked certificate is refused."""
        done = session.get(CertificateRenewal, issued.serial)
        successor = session.get(IssuedCertificate, done.serial) if done is not None else None
        if done is None or successor is None or successor.revoked_at is not None or \
                done.key_sha256 != key_sha256(csr.public_key()):
            why = issued.revoke_reason or "no reason given"
            raise EnrollmentRefused(403, "renewal-refused", f"certificate {issued.serial} of "
                                    f"{device_id!r} is revoked ({why}): it cannot be renewed "
                                    "(again); ask an operator for a new enrollment token")
        return self._issued(device_id, x509.load_pem_x509_certificate(
            done.certificate_pem.encode()))

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
