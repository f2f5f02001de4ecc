"""The repository directory's signed metadata: reading each role, writing new versions,
and re-signing what the ONLINE keys own (snapshot, timestamp, the delta role).

:class:`MetadataStore` is the layer every change of the repository writes through:
:class:`fleet_server.repository.repo.Repository` (the initial ceremony, operator-signed
targets, server-made deltas, with their checks), root rotation
(:mod:`fleet_server.repository.rotation`) and the server's refresh timer. It is separate
from :mod:`.repo` because it decides nothing about what may be published: it only knows
where each version lives and how the online keys sign.

Layout and write discipline: :mod:`fleet_server.repository.storage`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from securesystemslib.signer import Signer
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer

from contract.files import copy_atomic, write_atomic
from contract.tuf_targets import DELTAS_ROLE
from fleet_server.repository import storage
from fleet_server.repository.expiry import ExpiryPolicy
from fleet_server.repository.keys import load_signer
from fleet_server.repository.publish_checks import first_publications
from fleet_server.repository.storage import METADATA_DIR, TARGETS_DIR


@dataclass(frozen=True)
class OnlineSigners:
    """Keys the server holds. ``deltas`` is optional: without it no server-made deltas."""

    snapshot: Signer
    timestamp: Signer
    deltas: Signer | None = None

    @classmethod
    def from_key_dir(cls, key_dir: Path, passphrase: bytes | None = None) -> OnlineSigners:
        """``snapshot.pem``, ``timestamp.pem`` and (if present) ``deltas.pem`` from ``key_dir``."""
        key_dir = Path(key_dir)
        deltas = key_dir / "deltas.pem"
        return cls(snapshot=load_signer(key_dir / "snapshot.pem", passphrase),
                   timestamp=load_signer(key_dir / "timestamp.pem", passphrase),
                   deltas=load_signer(deltas, passphrase) if deltas.exists() else None)


class RepositoryError(Exception):
    """The repository is missing, inconsistent, or an operation cannot be done."""


_SERIALIZER = JSONSerializer(compact=False)


def sha256_of(data: bytes | Path) -> tuple[str, int]:
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest(), len(data)
    digest, length = hashlib.sha256(), 0
    with open(data, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            length += len(chunk)
    return digest.hexdigest(), length


def sign_metadata(signed: Signed, signers: Sequence[Signer]) -> Metadata:
    """``signed`` with a signature of each of ``signers`` (public: :mod:`.repo` signs too)."""
    md: Metadata = Metadata(signed)
    for signer in signers:
        md.sign(signer, append=True)
    return md


class MetadataStore:
    """A TUF repository directory's signed metadata. Stateless between calls: all state is
    on disk."""

    def __init__(self, path: Path, online: OnlineSigners | None = None,
                 expiry: ExpiryPolicy | None = None) -> None:
        self.path = Path(path)
        self.online = online
        self.expiry = expiry or ExpiryPolicy()
        self.metadata_dir = self.path / METADATA_DIR
        self.targets_dir = self.path / TARGETS_DIR
        # What _first_publications has read of the targets history, and up to which version
        self._first: dict[str, TargetFile] = {}
        self._history_read = 0

    # ---------------------------------------------------------------- reading
    def _read(self, name: str) -> bytes:
        try:
            return (self.metadata_dir / name).read_bytes()
        except FileNotFoundError:
            raise RepositoryError(f"{self.metadata_dir / name} is missing") from None

    def root_version(self) -> int:
        versions = storage.versions_of(self.metadata_dir, Root.type)
        if not versions:
            raise RepositoryError(f"no root metadata in {self.metadata_dir}")
        return versions[-1]

    def root_bytes(self, version: int | None = None) -> bytes:
        """Root metadata as published; the newest one by default (what devices get provisioned
        with, out of band)."""
        return self._read(f"{version or self.root_version()}.root.json")

    def root(self) -> Metadata[Root]:
        return Metadata[Root].from_bytes(self.root_bytes())

    def timestamp(self) -> Metadata[Timestamp]:
        return Metadata[Timestamp].from_bytes(self._read("timestamp.json"))

    def snapshot(self) -> Metadata[Snapshot]:
        version = self.timestamp().signed.snapshot_meta.version
        return Metadata[Snapshot].from_bytes(self._read(f"{version}.snapshot.json"))

    def targets_bytes(self, role: str = Targets.type) -> bytes:
        """Current (snapshot-listed) targets metadata of ``role``, as signed."""
        meta = self.snapshot().signed.meta.get(f"{role}.json")
        if meta is None:
            raise RepositoryError(f"snapshot does not list role {role!r}")
        return self._read(f"{meta.version}.{role}.json")

    def targets(self, role: str = Targets.type) -> Metadata[Targets]:
        return Metadata[Targets].from_bytes(self.targets_bytes(role))

    def _first_publications(self) -> dict[str, TargetFile]:
        """Every model target ever published, as first published (a release must never
        change, even after it was retired): the targets versions up to the current one
        (a file a failed publish left beyond it was never published), read once each and
        remembered (old versions never change)."""
        current = self.targets().signed.version
        for version in range(self._history_read + 1, current + 1):
            name = f"{version}.{Targets.type}.json"
            try:
                signed = Metadata[Targets].from_bytes(self._read(name)).signed
            except RepositoryError:
                continue  # never written (a repository older than its history), or pruned
            except DeserializationError as exc:
                raise RepositoryError(f"{self.metadata_dir / name} cannot be read ({exc}): "
                                      "restore it from a backup") from None
            self._first = first_publications([signed], into=self._first)
            self._history_read = version
        return self._first

    def target_file_path(self, target: TargetFile) -> Path:
        """Where the bytes of ``target`` are stored (and served from)."""
        return self.targets_dir / storage.consistent_target_name(target.path,
                                                                  target.hashes["sha256"])

    # ---------------------------------------------------------------- writing
    def require_online(self) -> OnlineSigners:
        if self.online is None:
            raise RepositoryError("this operation needs the online snapshot/timestamp keys")
        return self.online

    def write_versioned(self, md: Metadata, role: str) -> bytes:
        data = md.to_bytes(_SERIALIZER)
        write_atomic(self.metadata_dir / f"{md.signed.version}.{role}.json", data)
        return data

    def write_root(self, md: Metadata[Root]) -> None:
        data = self.write_versioned(md, Root.type)
        write_atomic(self.metadata_dir / "root.json", data)

    def write_snapshot_and_timestamp(self, meta_versions: Mapping[str, int]) -> None:
        """New snapshot listing ``meta_versions`` (role -> version, others kept), then the
        timestamp pointing at it. Timestamp last: until it lands, clients see the old state."""
        online = self.require_online()
        try:
            current = self.snapshot().signed
            meta, version = dict(current.meta), current.version + 1
            ts_version = self.timestamp().signed.version + 1
        except RepositoryError:
            meta, version, ts_version = {}, 1, 1
        for role, role_version in meta_versions.items():
            # Length and hash, not just the version: a device then downloads exactly the
            # bytes the snapshot names (no 5 MB default cap, no swapped file).
            digest, length = sha256_of(self._read(f"{role_version}.{role}.json"))
            meta[f"{role}.json"] = MetaFile(version=role_version, length=length,
                                            hashes={"sha256": digest})
        snapshot = Snapshot(version=version, expires=self.expiry.expires(Snapshot.type),
                            meta=meta)
        snap_bytes = self.write_versioned(sign_metadata(snapshot, [online.snapshot]), Snapshot.type)
        digest, length = sha256_of(snap_bytes)
        timestamp = Timestamp(version=ts_version, expires=self.expiry.expires(Timestamp.type),
                              snapshot_meta=MetaFile(version, length, {"sha256": digest}))
        write_atomic(self.metadata_dir / "timestamp.json",
                     sign_metadata(timestamp, [online.timestamp]).to_bytes(_SERIALIZER))

    def _store_target(self, target: TargetFile, data: bytes | Path) -> None:
        dest = self.target_file_path(target)
        if dest.exists():
            return  # content-addressed: same name means same bytes
        if isinstance(data, bytes):
            write_atomic(dest, data)
        else:
            copy_atomic(data, dest)

    def refresh_timestamp(self, *, force: bool = False, now: datetime | None = None) -> bool:
        """Re-sign what the online keys own before it expires; True if anything was re-signed.

        Meant to run periodically (the server does it on a timer): timestamp always,
        snapshot and the delta role when they near expiry."""
        online = self.require_online()
        with storage.exclusive_lock(self.path):
            ts, snap = self.timestamp().signed, self.snapshot().signed
            bumps: dict[str, int] = {}
            if f"{DELTAS_ROLE}.json" in snap.meta and online.deltas is not None:
                deltas = self.targets(DELTAS_ROLE).signed
                if force or self.expiry.needs_resign(DELTAS_ROLE, deltas.expires, now):
                    deltas.version += 1
                    deltas.expires = self.expiry.expires(DELTAS_ROLE)
                    self.write_versioned(sign_metadata(deltas, [online.deltas]), DELTAS_ROLE)
                    bumps[DELTAS_ROLE] = deltas.version
            if (bumps or force or self.expiry.needs_resign(Snapshot.type, snap.expires, now)
                    or self.expiry.needs_resign(Timestamp.type, ts.expires, now)):
                # A new timestamp always comes with a new snapshot: cheap, and it keeps
                # "snapshot expires" from ever outliving the timestamp that points at it.
                self.write_snapshot_and_timestamp(bumps)
                return True
        return False
