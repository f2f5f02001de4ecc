"""The fleet's device CA: the certificates devices, the broker and the fleet server use for MQTT.

One self-signed CA (EC P-256) in ``<data_dir>/device-ca/``::

    ca.key   the CA's private key, 0600, never leaves this directory
    ca.crt   the CA certificate: devices verify the broker with it, the broker verifies
             devices (and the fleet server's own MQTT identity) with it
    crl.pem  the certificate revocation list the broker reads (``crlfile``)

What is issued (:meth:`DeviceCA.issue`):

- device certificates: subject CN = device id and nothing else, whatever the CSR asked
  for; extended key usage clientAuth only (so a device certificate can never act as a
  broker), short validity (renewed by the device, see docs/fleet-server.md);
- the broker's TLS certificate: serverAuth only, SANs = the broker's names;
- from a second CA in ``<data_dir>/service-ca/``: the fleet server's MQTT identity,
  CN ``fleet-server``, clientAuth. The broker's listener for the fleet server trusts
  only that CA, so a device certificate cannot even open a session there.

CSR checks are a pure function (:func:`check_csr`): signature, CN, key type and size.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from contract.files import write_atomic
from contract.topics import check_device_id

CA_DIR_NAME = "device-ca"
# A second CA only for the fleet server's own MQTT identity: the broker's server
# listener trusts just this one, so no device certificate gets a session there.
SERVICE_CA_DIR_NAME = "service-ca"
DEVICE_CA_SUBJECT, SERVICE_CA_SUBJECT = "nanofleet device CA", "nanofleet service CA"
CA_KEY, CA_CERT, CRL_FILE = "ca.key", "ca.crt", "crl.pem"
CA_VALIDITY = dt.timedelta(days=3650)
# The fleet server's own MQTT identity (CN) and the prefixes of its MQTT client ids.
# Devices get their id as client id, and a client id taken twice kicks the older
# session, so no device may be named like the fleet server's connections.
FLEET_SERVER_CN = "fleet-server"
RESERVED_PREFIXES = (FLEET_SERVER_CN, "nanofleet-server")
ALLOWED_CURVES = {"secp256r1": 256, "secp384r1": 384}
RSA_MIN_BITS, RSA_MAX_BITS = 2048, 8192
MAX_CSR_BYTES = 16 * 1024
CLOCK_SKEW = dt.timedelta(minutes=5)  # not_before in the past: device clocks drift

CertKind = Literal["device", "fleet-server", "broker"]


class CsrRejected(ValueError):
    """A certificate signing request the CA will not sign; the message says why."""


class CaError(RuntimeError):
    """The CA directory cannot be used (unreadable, half-written, wrong permissions)."""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def common_name(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def describe_key(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    return type(key).__name__


def check_key(key: object) -> None:
    """EC P-256/P-384 or RSA 2048-8192 bits; anything else raises :class:`CsrRejected`."""
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ALLOWED_CURVES:
        return
    if isinstance(key, rsa.RSAPublicKey) and RSA_MIN_BITS <= key.key_size <= RSA_MAX_BITS:
        return
    raise CsrRejected(f"key type {describe_key(key)} is not accepted: use an EC key on P-256 "
                      f"or P-384 (nanofleet-agent enroll makes a P-256 key), or RSA "
                      f"{RSA_MIN_BITS}-{RSA_MAX_BITS} bits")


def check_csr(csr_pem: str | bytes, device_id: str) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR and check it may become ``device_id``'s certificate."""
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    if len(data) > MAX_CSR_BYTES:
        raise CsrRejected(f"CSR of {len(data)} bytes is over {MAX_CSR_BYTES}")
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as exc:
        raise CsrRejected(f"not a PEM certificate signing request: {exc}") from None
    if not csr.is_signature_valid:
        raise CsrRejected("the CSR's signature does not verify with its own public key "
                          "(corrupted, or not made with the private key it names)")
    hash_alg = csr.signature_hash_algorithm
    if not isinstance(hash_alg, hashes.SHA256 | hashes.SHA384 | hashes.SHA512):
        raise CsrRejected(f"CSR signed with {getattr(hash_alg, 'name', hash_alg)}: use "
                          "SHA-256 or stronger")
    cn = common_name(csr.subject)
    if cn is None:
        raise CsrRejected("the CSR subject must have exactly one common name (CN = device id)")
    if cn != device_id:
        raise CsrRejected(f"CSR common name {cn!r} is not the device id {device_id!r}: the "
                          "certificate's CN is the device's MQTT identity, they must match")
    check_key(csr.public_key())
    return csr


def check_enrollable_id(device_id: str, server_client_ids: Sequence[str] = ()) -> str:
    """A device id usable in topics and not one of the fleet server's own MQTT names."""
    check_device_id(device_id)
    for prefix in (*RESERVED_PREFIXES, *server_client_ids):
        if device_id.startswith(prefix):
            raise ValueError(f"device id {device_id!r} is reserved: ids starting with "
                             f"{prefix!r} belong to the fleet server's MQTT connections; "
                             "choose another id")
    return device_id


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _write_private(path: Path, data: bytes) -> None:
    # O_EXCL: two processes creating the CA at once must not overwrite each other's key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def write_public(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Atomic replace (write, fsync, rename): the broker never reads half a CRL."""
    write_atomic(path, data, mode)


@dataclass(frozen=True)
class RevokedSerial:
    serial: int
    revoked_at: dt.datetime


class DeviceCA:
    def __init__(self, directory: Path, key: ec.EllipticCurvePrivateKey,
                 cert: x509.Certificate) -> None:
        self.dir = directory
        self.key = key
        self.cert = cert

    # --- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: Path, *, create: bool = True,
             subject: str = DEVICE_CA_SUBJECT) -> DeviceCA:
        """Load the CA in ``directory``; make a new one there if there is none and ``create``."""
        key_path, cert_path = directory / CA_KEY, directory / CA_CERT
        if not key_path.exists():
            if not create:
                raise CaError(f"no device CA in {directory} (the fleet server makes one at "
                              "its first start)")
            try:
                return cls._create(directory, subject)
            except FileExistsError:
                pass  # another process made it first: load theirs
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            raise CaError(f"cannot load the device CA from {directory}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CaError(f"{key_path}: not an EC private key")
        if key_path.stat().st_mode & 0o077:
            raise CaError(f"{key_path} is readable by others: chmod 600 {key_path}")
        return cls(directory, key, cert)

    @classmethod
    def _create(cls, directory: Path, subject_cn: str) -> DeviceCA:
        directory.mkdir(parents=True, exist_ok=True)
        # 0755: the broker (user mosquitto) reads ca.crt and crl.pem here; ca.key is 0600.
        os.chmod(directory, 0o755)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        subject = _name(subject_cn)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
        _write_private(directory / CA_KEY, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        write_public(directory / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
        ca = cls(directory, key, cert)
        ca.write_crl([])  # the broker refuses every client while its crlfile is missing
        return ca

    # --- files ---------------------------------------------------------------------------
    @property
    def cert_path(self) -> Path:
        return self.dir / CA_CERT

    @property
    def crl_path(self) -> Path:
        return self.dir / CRL_FILE

    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    # --- issuing -------------------------------------------------------------------------
    def issue(self, subject_cn: str, public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
              kind: CertKind, validity: dt.timedelta,
              hosts: Sequence[str] = ()) -> x509.Certificate:
        """Sign a certificate for ``public_key``; extensions depend on ``kind``."""
        now = dt.datetime.now(dt.UTC)
        not_after = min(now + validity, self.cert.not_valid_after_utc)
        server = kind == "broker"
        builder = (
            x509.CertificateBuilder().subject_name(_name(subject_cn))
            .issuer_name(self.cert.subject).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [_san(h) for h in dict.fromkeys(hosts or [subject_cn])]), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue_for_csr(self, csr: x509.CertificateSigningRequest, device_id: str,
                      validity: dt.timedelta) -> x509.Certificate:
        """A device certificate; only the CSR's public key is used (checked by check_csr)."""
        key = csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise CsrRejected(f"key type {describe_key(key)} is not accepted")
        return self.issue(device_id, key, "device", validity)

    def issued_this(self, cert: x509.Certificate) -> bool:
        """True if ``cert`` carries this CA's signature."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    # --- revocation ----------------------------------------------------------------------
    def build_crl(self, revoked: Iterable[RevokedSerial]) -> bytes:
        """A CRL (PEM) listing ``revoked``.

        next_update is the CA's own expiry: OpenSSL (so Mosquitto) refuses *every* client
        once a CRL is past next_update, and this CRL is pushed to the broker on each
        revocation rather than fetched on a schedule, so a short one would only add a way
        to lock the whole fleet out."""
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
                   .last_update(now - CLOCK_SKEW).next_update(self.cert.not_valid_after_utc)
                   .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.key.public_key()), critical=False))
        for entry in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(entry.serial)
                .revocation_date(entry.revoked_at).build())
        crl = builder.sign(self.key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM)

    def write_crl(self, revoked: Iterable[RevokedSerial]) -> bytes:
        pem = self.build_crl(revoked)
        write_public(self.crl_path, pem)
        return pem


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def ca_directory(data_dir: Path) -> Path:
    return data_dir / CA_DIR_NAME


def service_ca_directory(data_dir: Path) -> Path:
    return data_dir / SERVICE_CA_DIR_NAME
