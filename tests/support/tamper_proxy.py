"""A real HTTP server in front of the fleet server that rewrites its JSON answers: what a
compromised fleet server, or anyone on the path of a plain-http enrollment, can do.

``TamperProxy(upstream, tamper).start()``; ``tamper(path, answer) -> answer`` sees each
JSON answer to a POST. With ``tls=(cert, key)`` it ends TLS like the reverse proxy in
front of a production fleet server (and :func:`passthrough` changes nothing). Also: a
TUF root signed by keys the attacker holds, and a CA of the attacker's own that signs
whatever public key a device sent.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Tamper = Callable[[str, dict[str, Any]], dict[str, Any]]


def passthrough(_path: str, answer: dict[str, Any]) -> dict[str, Any]:
    return answer


class TamperProxy:
    def __init__(self, upstream: str, tamper: Tamper,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.upstream, self.tamper = upstream.rstrip("/"), tamper
        self.seen: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append(self.path)
                answer = httpx.post(proxy.upstream + self.path, content=body, timeout=30,
                                    headers={"Content-Type": "application/json"})
                data = answer.content
                if answer.status_code == 200:
                    data = json.dumps(proxy.tamper(self.path, answer.json())).encode()
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> TamperProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def attacker_root() -> str:
    """A valid, self-signed TUF root whose every role key the attacker holds."""
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata, Root
    from tuf.api.serialization.json import JSONSerializer

    signer = CryptoSigner.generate_ed25519()
    root = Root(expires=dt.datetime.now(dt.UTC) + dt.timedelta(days=365))
    for role in ("root", "timestamp", "snapshot", "targets"):
        root.add_key(signer.public_key, role)
    md = Metadata(root)
    md.sign(signer)
    return md.to_bytes(JSONSerializer()).decode()


def attacker_certificate(answer: dict[str, Any]) -> dict[str, Any]:
    """The same answer with the certificate re-issued by the attacker's own CA (same
    subject, same device key), and that CA in place of the fleet's."""
    cert = x509.load_pem_x509_certificate(answer["certificate_pem"].encode())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nanofleet device CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    forged = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(name)
              .public_key(cert.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(cert.not_valid_before_utc)
              .not_valid_after(cert.not_valid_after_utc).sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return {**answer, "certificate_pem": forged.public_bytes(pem).decode(),
            "ca_certificate_pem": ca.public_bytes(pem).decode()}


def https_identity(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for https://127.0.0.1: what an
    operator's private CA gives the reverse proxy; the device gets the CA (--ca-file)."""
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ops private CA")])
    now = dt.datetime.now(dt.UTC)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths
