"""Enrollment on the wire: what ``nanofleet-agent enroll`` sends and the fleet server answers.

``POST /api/v1/enroll`` takes :class:`EnrollRequest` (no operator token: the
single-use enrollment token is the credential), ``POST /api/v1/enroll/renew`` takes
:class:`RenewRequest`; both answer :class:`EnrollResponse`. Errors are the API's
``{"error": {"code", "message"}}`` with the codes in :data:`ERROR_CODES`.
"""

from __future__ import annotations

from pydantic import Field

from contract.strict import Strict
from contract.topics import DEVICE_ID_PATTERN

ENROLL_PATH = "/api/v1/enroll"
RENEW_PATH = "/api/v1/enroll/renew"
MAX_PEM_CHARS = 16 * 1024
MAX_TOKEN_CHARS = 200

ERROR_CODES = {
    "token-unknown": "the token is not known (or was cancelled)",
    "token-expired": "the token expired",
    "token-used": "the token was already used (tokens are single-use)",
    "token-device-mismatch": "the token was made for another device id",
    "device-revoked": "the device id was revoked; only a token for exactly this id re-enrolls",
    "bad-csr": "the CSR is malformed, mis-signed, has the wrong CN or a refused key",
    "bad-device-id": "the device id is not allowed (characters, or a reserved name)",
    "renewal-refused": "the certificate cannot be renewed (expired, revoked, other key)",
}


class EnrollRequest(Strict):
    token: str = Field(min_length=1, max_length=MAX_TOKEN_CHARS,
                       description="Enrollment token from `nanofleet enroll-token create`.")
    device_id: str = Field(pattern=DEVICE_ID_PATTERN,
                           description="The id the device will have (the certificate's CN).")
    csr: str = Field(min_length=1, max_length=MAX_PEM_CHARS,
                     description="PEM certificate signing request, CN = device_id, made with "
                     "a key that never leaves the device.")


class RenewRequest(Strict):
    device_id: str = Field(pattern=DEVICE_ID_PATTERN, description="The device's id.")
    certificate: str = Field(min_length=1, max_length=MAX_PEM_CHARS,
                             description="The device's current, unexpired certificate (PEM).")
    csr: str = Field(min_length=1, max_length=MAX_PEM_CHARS,
                     description="PEM CSR for the same key as the current certificate.")


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
