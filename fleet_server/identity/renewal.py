"""Renewal decisions (pure): may this certificate be renewed into a certificate for that CSR?

A renewal (``POST /api/v1/enroll/renew``) carries the device's current certificate, a
CSR for a **new** key and ``proof``: the current key's signature over
:func:`contract.enrollment.renewal_message` (device id, serial of the current
certificate, SHA-256 of the CSR text). So:

- only the holder of the current key can renew (the certificate itself is public);
- the proof is bound to one CSR: nobody can attach it to a key of their own;
- the key rotates on every renewal, and the renewed certificate is revoked (and can
  never be renewed again): a copy of an old key dies with its certificate instead of
  living on through renewals. If a thief renews first, the real device's next renewal
  is refused and it has to be enrolled again by an operator: the theft shows.

Why a signature in the request and not mutual TLS on the renewal endpoint (EST's
``simplereenroll``): the fleet server usually sits behind a reverse proxy that ends
TLS, so the application would have to trust a header the proxy sets; a signature in
the body holds end to end, through any proxy or CDN, like ACME's signed requests.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from contract.enrollment import renewal_message
from fleet_server.identity.device_ca import DeviceCA, common_name, serial_hex


def key_sha256(key: object) -> str:
    """SHA-256 of a public key's DER SubjectPublicKeyInfo ('' for an unsupported type)."""
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        return ""
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def proof_verifies(key: object, message: bytes, proof_b64: str) -> bool:
    try:
        signature = base64.b64decode(proof_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def renewal_problem(ca: DeviceCA, current: x509.Certificate, device_id: str,
                    csr_pem: str, csr: x509.CertificateSigningRequest, proof: str,
                    now: dt.datetime) -> str | None:
    """Why ``current`` cannot be renewed into a certificate for ``csr`` (None: it can,
    as far as the certificate and the proof go; the database checks come after)."""
    if not ca.issued_this(current):
        return "the certificate was not issued by this fleet's device CA"
    if common_name(current.subject) != device_id:
        return f"the certificate is not {device_id!r}'s"
    if not current.not_valid_before_utc <= now < current.not_valid_after_utc:
        return f"the certificate expired at {current.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    message = renewal_message(device_id, serial_hex(current.serial_number), csr_pem)
    if not proof_verifies(current.public_key(), message, proof):
        return ("the proof is not a signature by the certified key over this renewal: only "
                "the device holding its current key can renew")
    if key_sha256(csr.public_key()) == key_sha256(current.public_key()):
        return "the CSR is for the current key: renewal makes a new key (nanofleet-agent " \
            "enroll --renew does)"
    return None
