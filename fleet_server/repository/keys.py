"""Signing key files for the TUF repository (Ed25519, PEM, mode 0600).

Where each key lives (see docs/updates.md):

- ``root-*.pem``: OFFLINE (a threshold of them signs each root version),
- ``targets.pem``: OFFLINE, the operators' key (signs which models exist),
- ``snapshot.pem``, ``timestamp.pem``, ``deltas.pem``: ONLINE on the fleet server.

A private key file is PKCS#8 PEM, optionally encrypted with a passphrase; the
public key sits next to it as ``<name>.pub.pem`` so that a ceremony can add a
key to root without handling the private half.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from securesystemslib.signer import CryptoSigner, SSlibKey

ONLINE_ROLES = ("snapshot", "timestamp", "deltas")
PUBLIC_SUFFIX = ".pub.pem"


class KeyFileError(ValueError):
    """A key file is missing, unreadable, of the wrong type or too widely readable."""


def public_key_path(private_path: Path) -> Path:
    name = private_path.name.removesuffix(".pem")
    return private_path.with_name(name + PUBLIC_SUFFIX)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (never world-readable, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def generate_key(path: Path, passphrase: bytes | None = None) -> CryptoSigner:
    """Generate an Ed25519 key at ``path`` (0600) plus ``<name>.pub.pem``; refuse to overwrite."""
    path = Path(path)
    if path.exists():
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key")
    path.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase
        else serialization.NoEncryption()
    )
    _write_new(path, private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption), 0o600)
    pub_path = public_key_path(path)
    pub_path.unlink(missing_ok=True)
    _write_new(pub_path, private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
    return CryptoSigner(private)


def load_signer(path: Path, passphrase: bytes | None = None) -> CryptoSigner:
    """Load a private key file as a signer. Refuses files readable by group or others."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: mode {stat.S_IMODE(mode):04o} lets others read a private "
                           "key; chmod 600 it")
    try:
        private = serialization.load_pem_private_key(data, passphrase)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a usable PEM private key ({exc})") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: expected an Ed25519 key, got {type(private).__name__}")
    return CryptoSigner(private)


def load_signers(paths: Sequence[Path], passphrase: bytes | None = None) -> list[CryptoSigner]:
    return [load_signer(p, passphrase) for p in paths]


def load_public_key(path: Path) -> SSlibKey:
    """Public key from ``<name>.pub.pem``, or from a private key file (its public half)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror}") from None
    if b"PRIVATE KEY" in data:
        return load_signer(path).public_key
    try:
        public = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyFileError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(public, Ed25519PublicKey):
        raise KeyFileError(f"{path}: expected an Ed25519 key, got {type(public).__name__}")
    return SSlibKey.from_crypto(public)


def generate_role_keys(key_dir: Path, root_keys: int = 3) -> dict[str, list[Path]]:
    """Generate a full key set in ``key_dir``: role name -> private key files.

    After the init ceremony the root and targets files must leave the server
    (offline storage / the operators' machines); only the online ones stay."""
    if root_keys < 1:
        raise ValueError("root_keys must be at least 1")
    key_dir = Path(key_dir)
    key_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(key_dir, 0o700)
    files: dict[str, list[Path]] = {
        "root": [key_dir / f"root-{i}.pem" for i in range(1, root_keys + 1)],
        "targets": [key_dir / "targets.pem"],
    }
    files.update({role: [key_dir / f"{role}.pem"] for role in ONLINE_ROLES})
    for paths in files.values():
        for p in paths:
            generate_key(p)
    return files
