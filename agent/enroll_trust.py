"""What enrollment trusts, and how it checks the fleet server's answer before storing it.

- **The transport.** ``https://`` only; plain ``http://`` lets anyone on the path read
  the token and hand the device their own CA (and so their own broker), so it needs
  ``--insecure-lab``, and says so loudly each time.
- **The update trust anchor** (TUF ``root.json``) never comes from the online server on
  trust: it is provisioned out of band (``--root FILE``, the config's ``[ota]
  root_file``, or ``/etc/nanofleet/root.json`` from the image or package), or the
  server's copy must match ``--root-sha256`` that the operator took from the key
  ceremony. Otherwise a compromised server (or anyone on an http path) could give new
  devices a root it controls and then make them run any model, which is exactly what
  the offline root and targets keys exist to prevent. With no anchor at all,
  enrollment stops before it spends the token.
- **The certificate** must name this device, carry this device's key and be signed by
  the CA: at enrollment the CA that came with it (over the authenticated channel), at
  renewal the CA stored at enrollment (a renewal never changes whom the device trusts).

Pure checks, plus the small HTTP call (urllib: the agent has no HTTP client dependency).
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from contract.enrollment import EnrollResponse

MAX_RESPONSE_BYTES = 1024 * 1024
MAX_ROOT_BYTES = 512 * 1024
DEFAULT_ROOT_FILE = Path("/etc/nanofleet/root.json")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class EnrollError(Exception):
    """Enrollment failed; the message says why and what to do. ``exit_code`` 1 or 2."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- transport -----------------------------------------------------------------------------

def check_transport(server: str, insecure_lab: bool) -> None:
    """https:// always; http:// only when told it is a lab (and then loudly)."""
    if server.startswith("https://"):
        return
    if not server.startswith("http://"):
        raise EnrollError(f"--server {server!r}: use an https:// URL", 2)
    if not insecure_lab:
        raise EnrollError(f"--server {server}: refusing plain http://: anyone on the path "
                          "could read the token and give this device their own CA and "
                          "broker. Use https:// (--ca-file for a private CA); on a lab "
                          "network only, pass --insecure-lab", 2)
    print(f"WARNING: --insecure-lab: talking to {server} over plain http://, unauthenticated;"
          " never do this outside a lab", file=sys.stderr)


def post_json(url: str, body: dict[str, Any], timeout: float,
              ca_file: Path | None = None) -> dict[str, Any]:
    """POST JSON, return the JSON answer; errors become :class:`EnrollError`."""
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
        raise EnrollError(f"cannot reach the fleet server at {url}: {reason} (check --server "
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


# --- the answer ----------------------------------------------------------------------------

def parse_response(data: dict[str, Any]) -> EnrollResponse:
    try:
        return EnrollResponse.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise EnrollError(f"the fleet server's answer is not an enrollment ({fields}); is the "
                          "server a compatible nanofleet version?") from None


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def check_issued(response: EnrollResponse, key: ec.EllipticCurvePrivateKey, device_id: str,
                 trusted_ca: x509.Certificate | None = None
                 ) -> tuple[x509.Certificate, x509.Certificate]:
    """The certificate is this device's, for this key, signed by ``trusted_ca`` (renewal:
    the CA stored at enrollment) or else by the CA sent along (enrollment)."""
    try:
        cert = x509.load_pem_x509_certificate(response.certificate_pem.encode())
        sent_ca = x509.load_pem_x509_certificate(response.ca_certificate_pem.encode())
    except ValueError as exc:
        raise EnrollError(f"the fleet server sent an unreadable certificate: {exc}") from None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if len(cns) == 1 else None
    if response.device_id != device_id or cn != device_id:
        raise EnrollError(f"CN mismatch: asked for a certificate for {device_id!r}, got one for "
                          f"{cn!r}; nothing was stored")
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise EnrollError("the certificate is not for this device's key; nothing was stored")
    ca = trusted_ca or sent_ca
    if trusted_ca is not None and sent_ca != trusted_ca:
        raise EnrollError("the server answered the renewal with another CA than the one this "
                          "device enrolled with: a renewal never changes whom the device "
                          "trusts (a new CA means enrolling again); nothing was stored")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise EnrollError("the certificate is not signed by the device CA; nothing was "
                          "stored") from None
    return cert, ca


def check_root(root_json: bytes, origin: str) -> int:
    """``root_json`` is root metadata signed by a threshold of its own keys; its version."""
    from tuf.api.exceptions import UnsignedMetadataError
    from tuf.api.metadata import Metadata, Root

    try:
        md = Metadata[Root].from_bytes(root_json)
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as exc:
        raise EnrollError(f"{origin}: the TUF root is not signed by its own root keys "
                          f"({exc}); nothing was stored") from None
    except Exception as exc:  # tuf raises several types for malformed metadata
        raise EnrollError(f"{origin}: not valid TUF root metadata: {exc}") from None
    return int(md.signed.version)


# --- the update trust anchor ---------------------------------------------------------------

def check_pin(pin: str) -> str:
    pin = pin.strip().lower().removeprefix("sha256:")
    if not _SHA256_RE.match(pin):
        raise EnrollError(f"--root-sha256 {pin!r}: give the 64 hex digits of the root.json's "
                          "SHA-256 (sha256sum root.json, from the key ceremony)", 2)
    return pin


@dataclass(frozen=True)
class RootAnchor:
    """Where this device's update trust comes from: a provisioned root file, a pin, both."""

    provisioned: bytes | None = None
    provisioned_from: Path | None = None
    pin_sha256: str | None = None

    def describe(self) -> str:
        if self.provisioned_from is not None:
            return f"provisioned root {self.provisioned_from}"
        return f"root pinned to sha256 {self.pin_sha256}" if self.pin_sha256 else "nothing"


def require_anchor(anchor: RootAnchor) -> None:
    """Before the token is spent: there is something to trust, and it is consistent."""
    if anchor.provisioned is None and anchor.pin_sha256 is None:
        raise EnrollError(
            "no trust anchor for model updates: the TUF root must not be taken from the "
            "online server on trust. Provision it (--root FILE, [ota] root_file in --config, "
            f"or {DEFAULT_ROOT_FILE} in the image) or pin it with --root-sha256 HEX (the "
            "SHA-256 of root.json from the key ceremony)", 2)
    if anchor.provisioned is not None:
        origin = str(anchor.provisioned_from)
        check_root(anchor.provisioned, origin)
        digest = hashlib.sha256(anchor.provisioned).hexdigest()
        if anchor.pin_sha256 is not None and digest != anchor.pin_sha256:
            raise EnrollError(f"{origin} has sha256 {digest}, not the pinned "
                              f"{anchor.pin_sha256}: wrong root file or wrong pin", 2)


def root_to_store(served: str | None, anchor: RootAnchor) -> bytes | None:
    """The root.json to store beside the certificate, or None (keep the provisioned one /
    the server has no repository). Refuses a served root that is not pinned."""
    if served is None or anchor.provisioned is not None:
        # A provisioned root stays the anchor: the OTA client follows signed root
        # rotations from it, so a newer served root needs no trust of its own.
        return None
    data = served.encode()
    digest = hashlib.sha256(data).hexdigest()
    if digest != anchor.pin_sha256:
        raise EnrollError(f"the TUF root the fleet server sent has sha256 {digest}, not the "
                          f"pinned {anchor.pin_sha256}: refusing it (a server that hands out "
                          "another root could make this device run any model). Check the pin "
                          "from the key ceremony; if the root was rotated since, pin or "
                          "provision the current one. The certificate was not stored")
    check_root(data, "the root from the fleet server")
    return data
