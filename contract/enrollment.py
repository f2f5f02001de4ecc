"""Enrollment on the wire: what ``nanofleet-agent enroll`` sends and the fleet server answers.

``POST /api/v1/enroll`` takes :class:`EnrollRequest` (no operator token: the
single-use enrollment token is the credential), ``POST /api/v1/enroll/renew`` takes
:class:`RenewRequest`; both answer :class:`EnrollResponse`. Errors are the API's
``{"error": {"code", "message"}}`` with the codes in :data:`ERROR_CODES`.

Renewal proves possession of the *current* key and rotates it: the CSR is for a new
key (its own signature proves the device holds that one), and ``proof`` is a signature
by the current key over :func:`renewal_message`, which names the device, the serial of
the certificate being renewed and the SHA-256 of the exact CSR text. So the proof
cannot be lifted onto another CSR, and a certificate is renewed once: the server
revokes it as it issues the successor (a replayed request gets the same successor back).
"""

from __future__ import annotations

import hashlib

from pydantic import Field

from contract.strict import Strict
from contract.topics import DEVICE_ID_PATTERN

ENROLL_PATH = "/api/v1/enroll"
RENEW_PATH = "/api/v1/enroll/renew"
MAX_PEM_CHARS = 16 * 1024
MAX_TOKEN_CHARS = 200
MAX_PROOF_CHARS = 2048  # base64 of an RSA-8192 signature is 1368

ERROR_CODES = {
    "token-unknown": "the token is not known (or was cancelled)",
    "token-expired": "the token expired",
    "token-used": "the token was already used (tokens are single-use)",
    "token-device-mismatch": "the token was made for another device id",
    "device-revoked": "the device id was revoked; only a token for exactly this id re-enrolls",
    "bad-csr": "the CSR is malformed, mis-signed, has the wrong CN or a refused key",
    "bad-device-id": "the device id is not allowed (characters, or a reserved name)",
    "device-enrolled": "the device id is enrolled; only a token bound to exactly this id "
                       "(enroll-token create --device ID --replace) enrolls it again",
    "device-known": "the device id is in the inventory; only a token bound to exactly this "
                    "id gives it a certificate",
    "root-mismatch": "the server's TUF root is not the one the device pinned (token unused)",
    "renewal-refused": "the certificate cannot be renewed (expired, revoked, renewed "
                       "already, no proof of the current key, same key)",
}

RENEWAL_CONTEXT = b"nanofleet renew v1"


def renewal_message(device_id: str, serial: str, csr_pem: str) -> bytes:
    """What the current key signs to renew: bound to the device, the certificate being
    renewed (serial, hex) and the exact CSR text sent along."""
    csr_sha256 = hashlib.sha256(csr_pem.encode("utf-8")).hexdigest()
    return b"\0".join((RENEWAL_CONTEXT, device_id.encode("utf-8"),
                       serial.lower().encode("ascii"), csr_sha256.encode("ascii")))


class EnrollRequest(Strict):
    token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS,
                       description="Enrollment token from `nanofleet enroll-token create`.")
    device_id: str = Field(pattern=DEVICE_ID_PATTERN,
                           description="The id the device will have (the certificate's CN).")
    csr: str = Field(min_length=1, max_length=MAX_PEM_CHARS,
                     description="PEM certificate signing request, CN = device_id, made with "
                     "a key that never leaves the device.")
    root_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$",
        description="The TUF root the device has pinned (SHA-256 of root.json): a server "
        "whose current root differs refuses before the token is spent (root-mismatch). "
        "The device checks the root it receives either way.")


class RenewRequest(Strict):
    device_id: str = Field(pattern=DEVICE_ID_PATTERN, description="The device's id.")
    certificate: str = Field(min_length=1, max_length=MAX_PEM_CHARS,
                             description="The device's current, unexpired certificate (PEM).")
    csr: str = Field(min_length=1, max_length=MAX_PEM_CHARS,
                     description="PEM CSR for a NEW key (renewal rotates the key), CN = "
                     "device_id.")
    proof: str = Field(min_length=1, max_length=MAX_PROOF_CHARS,
                       pattern=r"^[A-Za-z0-9+/=]+$",
                       description="Base64 signature by the current certificate's key over "
                       "renewal_message(device_id, serial, csr): ECDSA with SHA-256 for an "
                       "EC key, PKCS#1 v1.5 with SHA-256 for RSA.")


class EnrollResponse(Strict):
    device_id: str = Field(pattern=DEVICE_ID_PATTERN,
                           description="The enrolled device id (CN of the certificate).")
    certificate_pem: str = Field(description="The device's client certificate (PEM).")
    ca_certificate_pem: str = Field(description="The device CA (PEM): verifies the broker.")
    serial: str = Field(description="Serial number of the certificate (hex).")
    not_after: float = Field(description="The certificate expires then (unix time).")
    renew_after: float = Field(description="Renew from then on (unix time; 2/3 of validity).")
    tuf_root: str | None = Field(description="The repository's current root.json: the trust "
                                 "anchor for model updates.")
    broker_host: str = Field(description="MQTT broker host for devices.")
    broker_port: int = Field(ge=1, le=65535, description="MQTT broker TLS port.")
    metadata_url: str | None = Field(description="TUF metadata base URL (server public_url).")
    target_base_url: str | None = Field(description="TUF targets base URL.")
