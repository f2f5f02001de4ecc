"""Device identity on the server: enrollment, renewal, revocation, and the broker's policy files.

:class:`IdentityService` ties the device CA (:mod:`fleet_server.identity.device_ca`), the
enrollment tokens (:mod:`fleet_server.identity.tokens`) and the identity tables together.
After every change of who is revoked it rewrites the two files the broker reads from
the CA directory: ``crl.pem`` (new TLS handshakes) and ``acl`` (sessions already
open). The broker applies both on reload (SIGHUP).

An id that is enrolled (or revoked, or in the inventory) is enrolled again only with a
token bound to exactly that id; the earlier certificates are then revoked. Renewal
needs no token but proof of the current key, and rotates the key
(:mod:`fleet_server.identity.renewal`). Every change of the CRL runs
``enrollment.broker_reload_command`` so the broker applies it at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import func, select, update

from fleet_server.config import ServerConfig
from fleet_server.db import AuditEntry, Database
from fleet_server.identity.broker_policy import BrokerPolicy
from fleet_server.identity.device_ca import (
    SERVICE_CA_SUBJECT,
    CertKind,
    CsrRejected,
    DeviceCA,
    ca_directory,
    check_csr,
    check_enrollable_id,
    common_name,
    describe_key,
    fingerprint,
    serial_hex,
    service_ca_directory,
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
from fleet_server.migrations import upgrade_logged

log = logging.getLogger("nanofleet.server.identity")


CRL_MAX_AGE_S = 10.0  # how stale the public CRL download may be (downloadable_crl)

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
        self.policy = BrokerPolicy(self.ca, db, self.settings)
        self._crl_lock = threading.Lock()
        self._crl: tuple[float, bytes] | None = None  # (monotonic time built, PEM)
        self.publish_broker_policy()

    @property
    def server_client_ids(self) -> tuple[str, ...]:
        return (self.config.mqtt.client_id,)

    @property
    def broker_host(self) -> str:
        return self.settings.broker_host or self.config.mqtt.host

    @property
    def acl_path(self) -> Any:
        return self.policy.acl_path

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
            _audit(session, actor, "enroll-token.create", row.token_id,
                   device_id=spec.device_id, group=spec.group, tags=spec.tags,
                   expires_at=row.expires_at, replace=current is not None and spec.replace)
            return token, token_view(row, now)

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
            _audit(session, f"enroll-token:{row.token_id}", "device.enroll", device_id,
                   serial=serial_hex(cert.serial_number), token_created_by=row.created_by,
                   key=describe_key(csr.public_key()), re_enrolled_after_revocation=was_revoked,
                   revoked_serials=replaced)
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
            _audit(session, f"device:{device_id}", "device.renew", device_id,
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
