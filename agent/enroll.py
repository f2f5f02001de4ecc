"""Enrollment on the device: key, CSR, the fleet server's answer checked, files stored.

The private key is made here (EC P-256), written 0600 and never sent anywhere: the
server only sees a CSR, which the key signs. What comes back is checked before it is
stored: the certificate must be for this device id and *this* key and be signed by
the CA that came with it, and the TUF root must carry a threshold of its own
signatures. Files in the identity directory (0700)::

    device.key       the private key (0600)
    device.crt       the client certificate (CN = device id)
    ca.crt           the device CA: verifies the broker
    root.json        the TUF root the fleet server trusts now (the OTA trust anchor)
    enrollment.json  server URL, serial, expiry, when to renew

HTTP is urllib from the standard library (the agent has no HTTP client dependency).
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from contract.enrollment import (
    ENROLL_PATH,
    RENEW_PATH,
    EnrollRequest,
    EnrollResponse,
    RenewRequest,
)
from contract.files import write_atomic
from contract.topics import check_device_id

KEY_FILE, CERT_FILE, CA_FILE = "device.key", "device.crt", "ca.crt"
ROOT_FILE, STATE_FILE = "root.json", "enrollment.json"
MAX_RESPONSE_BYTES = 1024 * 1024


class EnrollError(Exception):
    """Enrollment failed; the message says why and what to do. ``exit_code`` 1 or 2."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class IdentityFiles:
    directory: Path

    @property
    def key(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def cert(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def ca(self) -> Path:
        return self.directory / CA_FILE

    @property
    def root(self) -> Path:
        return self.directory / ROOT_FILE

    @property
    def state(self) -> Path:
        return self.directory / STATE_FILE


# --- key and CSR ---------------------------------------------------------------------------

def load_or_make_key(path: Path, fresh: bool = False) -> ec.EllipticCurvePrivateKey:
    """The device key at ``path``; a new one when there is none (or ``fresh``).

    An existing key is reused so that running enroll again after a failed attempt
    does not leave keys behind; ``fresh`` replaces it (a key that may have leaked)."""
    if path.exists() and not fresh:
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise EnrollError(f"{path}: cannot load the device key ({exc}); remove it or "
                              "enroll with --new-key", 2) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise EnrollError(f"{path}: not an EC key; enroll with --new-key", 2)
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return key


def make_csr(key: ec.EllipticCurvePrivateKey, device_id: str) -> str:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


# --- HTTP ----------------------------------------------------------------------------------

def post_json(server: str, path: str, body: dict[str, Any], timeout: float,
              ca_file: Path | None = None) -> dict[str, Any]:
    """POST JSON, return the JSON answer; errors become :class:`EnrollError`."""
    url = server.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise EnrollError(f"--server {server!r}: use an http:// or https:// URL", 2)
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json",
                                              "Accept": "application/json"})
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None) \
        if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            data = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise EnrollError(f"the fleet server refused: {_error_message(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EnrollError(f"cannot reach the fleet server at {server}: {reason} (check --server "
                          "and the device's network)") from None
    if len(data) > MAX_RESPONSE_BYTES:
        raise EnrollError(f"the answer from {url} is over {MAX_RESPONSE_BYTES} bytes")
    try:
        parsed = json.loads(data)
    except ValueError:
        raise EnrollError(f"{url} did not answer JSON: is --server the fleet server?") from None
    if not isinstance(parsed, dict):
        raise EnrollError(f"{url} answered {type(parsed).__name__}, not an object")
    return parsed


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read(64 * 1024))
        error = body["error"]
        return f"{error['message']} ({error['code']}, HTTP {exc.code})"
    except (ValueError, KeyError, TypeError, OSError):
        if exc.code == 404:
            return f"HTTP 404 at {exc.url}: is --server the fleet server?"
        return f"HTTP {exc.code} {exc.reason}"


# --- checking the answer -------------------------------------------------------------------

def parse_response(data: dict[str, Any]) -> EnrollResponse:
    try:
        return EnrollResponse.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise EnrollError(f"the fleet server's answer is not an enrollment ({fields}); is the "
                          "server a compatible nanofleet version?") from None


def check_issued(response: EnrollResponse, key: ec.EllipticCurvePrivateKey,
                 device_id: str) -> tuple[x509.Certificate, x509.Certificate]:
    """The certificate is this device's, for this key, signed by the CA sent along."""
    try:
        cert = x509.load_pem_x509_certificate(response.certificate_pem.encode())
        ca = x509.load_pem_x509_certificate(response.ca_certificate_pem.encode())
    except ValueError as exc:
        raise EnrollError(f"the fleet server sent an unreadable certificate: {exc}") from None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if len(cns) == 1 else None
    if response.device_id != device_id or cn != device_id:
        raise EnrollError(f"CN mismatch: asked for a certificate for {device_id!r}, got one for "
                          f"{cn!r}; nothing was stored")
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise EnrollError("the certificate is not for this device's key; nothing was stored")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise EnrollError("the certificate is not signed by the CA the server sent; nothing "
                          "was stored") from None
    return cert, ca


def check_root(root_json: str) -> int:
    """The TUF root must be signed by a threshold of its own root keys; returns its version."""
    from tuf.api.exceptions import UnsignedMetadataError
    from tuf.api.metadata import Metadata, Root

    try:
        md = Metadata[Root].from_bytes(root_json.encode())
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as exc:
        raise EnrollError(f"the TUF root from the server is not signed by its own root keys "
                          f"({exc}); nothing was stored") from None
    except Exception as exc:  # tuf raises several types for malformed metadata
        raise EnrollError(f"the TUF root from the server is not valid root metadata: "
                          f"{exc}") from None
    return int(md.signed.version)


# --- storing -------------------------------------------------------------------------------

def write_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    write_atomic(path, data, mode, single_writer=True)


def prepare_dir(directory: Path) -> IdentityFiles:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
    except OSError as exc:
        raise EnrollError(f"{directory}: cannot use it for the device identity "
                          f"({exc.strerror}); pass --dir", 2) from None
    return IdentityFiles(directory)


def store(files: IdentityFiles, response: EnrollResponse, server: str,
          write_root: bool = True) -> None:
    write_file(files.ca, response.ca_certificate_pem.encode())
    if write_root and response.tuf_root is not None:
        write_file(files.root, response.tuf_root.encode())
    write_file(files.cert, response.certificate_pem.encode())
    write_file(files.state, json.dumps({
        "server": server, "device_id": response.device_id, "serial": response.serial,
        "not_after": response.not_after, "renew_after": response.renew_after,
        "broker_host": response.broker_host, "broker_port": response.broker_port,
        "metadata_url": response.metadata_url, "target_base_url": response.target_base_url,
        "stored_at": time.time()}, indent=2).encode())


def read_state(files: IdentityFiles) -> dict[str, Any]:
    try:
        data = json.loads(files.state.read_text())
    except (OSError, ValueError) as exc:
        raise EnrollError(f"{files.state}: no enrollment to renew ({exc}); enroll first with "
                          "--token", 2) from None
    if not isinstance(data, dict):
        raise EnrollError(f"{files.state}: not an enrollment record", 2)
    return data


# --- the two operations --------------------------------------------------------------------

def enroll(server: str, token: str, device_id: str, files: IdentityFiles, *,
           new_key: bool = False, timeout: float = 30.0,
           ca_file: Path | None = None) -> EnrollResponse:
    check_device_id(device_id)
    key = load_or_make_key(files.key, fresh=new_key)
    body = EnrollRequest(token=token.strip(), device_id=device_id, csr=make_csr(key, device_id))
    response = parse_response(post_json(server, ENROLL_PATH, body.model_dump(), timeout,
                                        ca_file))
    check_issued(response, key, device_id)
    if response.tuf_root is not None:
        check_root(response.tuf_root)
    store(files, response, server)
    return response


def renew(files: IdentityFiles, *, server: str | None = None, force: bool = False,
          timeout: float = 30.0, ca_file: Path | None = None) -> EnrollResponse | None:
    """A new certificate for the same key; None when it is not due yet (and not ``force``)."""
    state = read_state(files)
    if not force and time.time() < float(state.get("renew_after", 0)):
        return None
    device_id = str(state["device_id"])
    key = load_or_make_key(files.key)
    try:
        current = files.cert.read_text()
    except OSError as exc:
        raise EnrollError(f"{files.cert}: {exc.strerror}; enroll again with --token", 2) \
            from None
    url = server or str(state["server"])
    body = RenewRequest(device_id=device_id, certificate=current,
                        csr=make_csr(key, device_id))
    response = parse_response(post_json(url, RENEW_PATH, body.model_dump(), timeout, ca_file))
    check_issued(response, key, device_id)
    # The root stays: the OTA client follows root rotations from the one it started with.
    store(files, response, url, write_root=False)
    return response
