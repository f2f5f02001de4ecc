"""Enrollment on the device: key, CSR, the fleet server's answer checked, files stored.

The private key is made here (EC P-256), written 0600 and never sent anywhere: the
server only sees a CSR, which the key signs. What comes back is checked before it is
stored (:mod:`agent.enroll_trust`): the certificate must be for this device id and
*this* key and be signed by the device CA, and the TUF root must be the provisioned or
pinned one. Files in the identity directory (0700)::

    device.key       the private key (0600)
    device.crt       the client certificate (CN = device id)
    ca.crt           the device CA: verifies the broker
    root.json        the pinned TUF root (only when no root was provisioned)
    enrollment.json  server URL, serial, expiry, when to renew

Run as root, enroll writes into a directory the agent's user owns: every file goes
through :class:`agent.safe_dir.SafeDir` (no symlink followed, new files created
exclusively and chowned through their descriptor).

Renewal rotates the key: ``device.key.next`` is made (and kept across a failed
attempt, so a retry asks for the same key), the request is signed with the current
key, and the answer is stored as ``device.crt.next`` before both are renamed into
place; an interrupted renewal is finished by the next run.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.enroll_trust import (
    EnrollError,
    RootAnchor,
    check_issued,
    check_transport,
    parse_response,
    post_json,
    require_anchor,
    root_to_store,
)
from agent.safe_dir import SafeDir, UnsafePath
from contract.enrollment import (
    ENROLL_PATH,
    RENEW_PATH,
    EnrollRequest,
    EnrollResponse,
    RenewRequest,
    renewal_message,
)
from contract.topics import check_device_id

__all__ = ["EnrollError", "IdentityFiles", "RootAnchor", "enroll", "prepare_dir", "renew"]

KEY_FILE, CERT_FILE, CA_FILE = "device.key", "device.crt", "ca.crt"
ROOT_FILE, STATE_FILE = "root.json", "enrollment.json"
NEXT_KEY, NEXT_CERT = "device.key.next", "device.crt.next"
MAX_PEM_BYTES = 64 * 1024


@dataclass
class IdentityFiles:
    """The identity directory, opened safely once; paths for messages and the config."""

    dir: SafeDir

    @property
    def directory(self) -> Path:
        return self.dir.path

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

    def read(self, name: str, limit: int = MAX_PEM_BYTES) -> bytes | None:
        try:
            return self.dir.read(name, limit)
        except UnsafePath as exc:
            raise EnrollError(str(exc), 2) from None

    def close(self) -> None:
        self.dir.close()


def prepare_dir(directory: Path, owner: tuple[int, int] | None = None) -> IdentityFiles:
    """Open (or make) the identity directory, 0700, owned by ``owner`` if given."""
    try:
        return IdentityFiles(SafeDir.open(directory, create=True, mode=0o700, owner=owner))
    except UnsafePath as exc:
        raise EnrollError(f"{exc}", 2) from None
    except OSError as exc:
        raise EnrollError(f"{directory}: cannot use it for the device identity "
                          f"({exc.strerror}); pass --dir", 2) from None


# --- keys and CSRs -------------------------------------------------------------------------

def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_key(files: IdentityFiles, name: str) -> ec.EllipticCurvePrivateKey | None:
    data = files.read(name)
    if data is None:
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise EnrollError(f"{files.directory / name}: cannot load the device key ({exc}); "
                          "remove it or enroll with --new-key", 2) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise EnrollError(f"{files.directory / name}: not an EC key; enroll with --new-key", 2)
    return key


def load_or_make_key(files: IdentityFiles, name: str = KEY_FILE,
                     fresh: bool = False) -> ec.EllipticCurvePrivateKey:
    """The key in ``name``; a new one when there is none (or ``fresh``).

    An existing key is reused so that running enroll again after a failed attempt
    does not leave keys behind; ``fresh`` replaces it (a key that may have leaked)."""
    key = None if fresh else load_key(files, name)
    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
        files.dir.write(name, _key_pem(key), 0o600)
    return key


def make_csr(key: ec.EllipticCurvePrivateKey, device_id: str) -> str:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


# --- storing -------------------------------------------------------------------------------

def store(files: IdentityFiles, response: EnrollResponse, server: str, *,
          root: bytes | None = None, insecure_lab: bool = False,
          cert_name: str = CERT_FILE, write_ca: bool = True) -> None:
    if write_ca:
        files.dir.write(CA_FILE, response.ca_certificate_pem.encode())
    if root is not None:
        files.dir.write(ROOT_FILE, root)
    files.dir.write(cert_name, response.certificate_pem.encode())
    files.dir.write(STATE_FILE, json.dumps({
        "server": server, "device_id": response.device_id, "serial": response.serial,
        "not_after": response.not_after, "renew_after": response.renew_after,
        "broker_host": response.broker_host, "broker_port": response.broker_port,
        "metadata_url": response.metadata_url, "target_base_url": response.target_base_url,
        "insecure_lab": insecure_lab, "stored_at": time.time()}, indent=2).encode())


def read_state(files: IdentityFiles) -> dict[str, Any]:
    raw = files.read(STATE_FILE)
    try:
        data = json.loads(raw) if raw is not None else None
    except ValueError as exc:
        raise EnrollError(f"{files.state}: unreadable ({exc}); enroll again", 2) from None
    if not isinstance(data, dict) or "device_id" not in data or "server" not in data:
        raise EnrollError(f"{files.state}: no enrollment to renew; enroll first with a token",
                          2)
    return data


# --- enrollment ----------------------------------------------------------------------------

def enroll(server: str, token: str, device_id: str, files: IdentityFiles, *,
           anchor: RootAnchor, new_key: bool = False, timeout: float = 30.0,
           ca_file: Path | None = None, insecure_lab: bool = False) -> EnrollResponse:
    check_device_id(device_id)
    check_transport(server, insecure_lab)
    require_anchor(anchor)  # before the token is spent
    key = load_or_make_key(files, fresh=new_key)
    # A pin goes along, so a server with another root refuses before spending the token.
    pin = anchor.pin_sha256 if anchor.provisioned is None else None
    body = EnrollRequest(token=token.strip(), device_id=device_id,
                         csr=make_csr(key, device_id), root_sha256=pin)
    response = parse_response(post_json(server.rstrip("/") + ENROLL_PATH, body.model_dump(),
                                        timeout, ca_file))
    check_issued(response, key, device_id)
    root = root_to_store(response.tuf_root, anchor)
    store(files, response, server, root=root, insecure_lab=insecure_lab)
    return response


# --- renewal -------------------------------------------------------------------------------

def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return bool(cert.public_key().public_bytes(der, spki) ==
                key.public_key().public_bytes(der, spki))


def finish_pending(files: IdentityFiles) -> bool:
    """Complete a renewal that stopped between storing the new certificate and renaming
    key and certificate into place. True if one was finished."""
    pem = files.read(NEXT_CERT)
    if pem is None:
        return False
    cert = x509.load_pem_x509_certificate(pem)
    next_key = load_key(files, NEXT_KEY)
    if next_key is not None and _same_key(cert, next_key):
        files.dir.rename(NEXT_KEY, KEY_FILE)
    current = load_key(files, KEY_FILE)
    if current is not None and _same_key(cert, current):
        files.dir.rename(NEXT_CERT, CERT_FILE)
        return True
    files.dir.remove(NEXT_CERT)
    return False


def _sign(key: ec.EllipticCurvePrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, ec.ECDSA(hashes.SHA256()))).decode()


def renew(files: IdentityFiles, *, server: str | None = None, force: bool = False,
          timeout: float = 30.0, ca_file: Path | None = None,
          insecure_lab: bool = False) -> EnrollResponse | None:
    """A certificate for a new key, proven with the current one; None when it is not due
    yet (and not ``force``)."""
    finish_pending(files)
    state = read_state(files)
    if not force and time.time() < float(state.get("renew_after", 0)):
        return None
    device_id = str(state["device_id"])
    url = server or str(state["server"])
    lab = insecure_lab or bool(state.get("insecure_lab"))
    check_transport(url, lab)
    current_key = load_key(files, KEY_FILE)
    current_pem, ca_pem = files.read(CERT_FILE), files.read(CA_FILE)
    if current_key is None or current_pem is None or ca_pem is None:
        raise EnrollError(f"{files.directory}: the key, certificate or CA is missing; enroll "
                          "again with a token", 2)
    try:
        current = x509.load_pem_x509_certificate(current_pem)
        trusted_ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError as exc:
        raise EnrollError(f"{files.directory}: unreadable certificate ({exc}); enroll again",
                          2) from None
    if not _same_key(current, current_key):
        raise EnrollError(f"{files.cert} is not for {files.key}; enroll again with a token", 2)
    # The next key survives a failed attempt: a retry asks for the same key, and the
    # server answers a repeated renewal with the same successor.
    next_key = load_or_make_key(files, NEXT_KEY)
    csr = make_csr(next_key, device_id)
    serial = format(current.serial_number, "x")
    body = RenewRequest(device_id=device_id, certificate=current_pem.decode(), csr=csr,
                        proof=_sign(current_key, renewal_message(device_id, serial, csr)))
    response = parse_response(post_json(url.rstrip("/") + RENEW_PATH, body.model_dump(),
                                        timeout, ca_file))
    check_issued(response, next_key, device_id, trusted_ca=trusted_ca)
    # Stored beside, then renamed into place: key and certificate change together.
    store(files, response, url, insecure_lab=lab, cert_name=NEXT_CERT, write_ca=False)
    finish_pending(files)
    return response


def give_to(files: IdentityFiles, owner: tuple[int, int]) -> None:
    """Files from before this run (an earlier enrollment by another user): chown through
    no link (lchown semantics), regular files with one name only. A hard link the agent's
    user made in its identity directory to a file of root's would otherwise have been
    given to it by a root-run ``enroll --owner`` (where ``fs.protected_hardlinks`` is 0;
    review, December 2026): such a file is left alone and named."""
    for name in (KEY_FILE, CERT_FILE, CA_FILE, ROOT_FILE, STATE_FILE):
        st = files.dir.mode_of(name)
        if st is None or not stat.S_ISREG(st.st_mode) or (st.st_uid, st.st_gid) == owner:
            continue
        if st.st_nlink != 1:
            raise EnrollError(f"{files.dir.path}/{name} has {st.st_nlink} names (a hard link): "
                              "not given to the agent's user; remove the extra name or the "
                              "file and enroll again", 2)
        os.chown(name, *owner, dir_fd=files.dir.fd, follow_symlinks=False)
