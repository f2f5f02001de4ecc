"""A throwaway PKI for tests, the demo and HIL rigs: a CA, a server certificate for
127.0.0.1/localhost and client certificates with CN = device id (real X.509, `cryptography`)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class CertPair:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    # Debian's mosquitto drops to the `mosquitto` user when started as root.
    os.chmod(path, 0o644)


class RigPKI:
    """CA + server cert (127.0.0.1) + client certs with CN = device id."""

    def __init__(self, directory: Path, server_ips: tuple[str, ...] = ()) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o755)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.ca_cert = (
            x509.CertificateBuilder().subject_name(_name("nanofleet test CA"))
            .issuer_name(_name("nanofleet test CA")).public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))
        os.chmod(self.ca_file, 0o644)
        self.server_ips = server_ips  # more addresses the server certificate is valid for
        self.server = self.issue("localhost", server=True)

    def issue(self, cn: str, server: bool = False) -> CertPair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(self.ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )
        if server:
            ips = ("127.0.0.1", *getattr(self, "server_ips", ()))
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)]), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        pair = CertPair(self.dir / f"{cn}.crt", self.dir / f"{cn}.key")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        os.chmod(pair.cert, 0o644)
        _write_key(key, pair.key)
        return pair

    def write_crl(self, path: Path, revoked_serials: tuple[int, ...] = ()) -> Path:
        """A CRL signed by this CA listing ``revoked_serials`` (Mosquitto's ``crlfile``)."""
        now = dt.datetime.now(dt.UTC)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.ca_cert.subject)
                   .last_update(now - dt.timedelta(minutes=5))
                   .next_update(now + dt.timedelta(days=2)))
        for serial in revoked_serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now - dt.timedelta(minutes=1)).build())
        path.write_bytes(builder.sign(self.ca_key, hashes.SHA256())
                         .public_bytes(serialization.Encoding.PEM))
        os.chmod(path, 0o644)
        return path
