"""The fleet's TUF repository on disk, built with python-tuf's Metadata API: what may
be written to it, and the checks that decide it.

Server side only ever holds the ONLINE keys (snapshot, timestamp, deltas). The
operator-signed targets metadata arrives already signed (:meth:`publish_targets`);
the server checks it against root, stores the files and re-signs snapshot and
timestamp. Root versions arrive signed by a threshold of offline keys
(:func:`fleet_server.repository.rotation.rotate_root`, run wherever those keys are
brought together, writes them through this class's public ``write_*`` methods; this
module does not import it).

Reading and writing the signed metadata, and re-signing what the online keys own, is
:class:`fleet_server.repository.metadata_store.MetadataStore`, which
:class:`Repository` extends. Layout and write discipline:
:mod:`fleet_server.repository.storage`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import LengthOrHashMismatchError, UnsignedMetadataError
from tuf.api.metadata import (
    DelegatedRole,
    Delegations,
    Metadata,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError

from contract.files import write_atomic
from contract.tuf_targets import (
    DELTA_PATH_PATTERN,
    DELTAS_ROLE,
    ModelTargetInfo,
    full_target_path,
)
from fleet_server.repository import storage
from fleet_server.repository.expiry import ExpiryPolicy
from fleet_server.repository.metadata_store import (
    MetadataStore,
    OnlineSigners,
    RepositoryError,
    sha256_of,
    sign_metadata,
)
from fleet_server.repository.publish_checks import (
    check_against_published,
    check_delta_delegation,
    check_model_file,
    check_release_target,
    check_variant,
)


class PublishRejected(RepositoryError):
    """Uploaded metadata or files were refused; the message names the problem."""


class ReleaseChangeRefused(PublishRejected):
    """Well-signed metadata that would change the release history (a published target,
    a slot record, a minimum): signing again does not help; the message says what does."""


class Repository(MetadataStore):
    """A TUF repository directory and what may be written to it: the initial ceremony,
    operator-signed targets, server-made deltas, each checked first. Stateless between
    calls: all state is on disk."""

    # ---------------------------------------------------------------- creation
    @classmethod
    def create(cls, path: Path, *, root_signers: Sequence[Signer], root_threshold: int,
               targets_signers: Sequence[Signer], online: OnlineSigners,
               expiry: ExpiryPolicy | None = None) -> Repository:
        """Initial ceremony: root v1 (all ``root_signers`` sign), empty targets, snapshot,
        timestamp, and, when ``online.deltas`` is set, the delegated delta role."""
        repo = cls(path, online, expiry)
        if storage.versions_of(repo.metadata_dir, Root.type):
            raise RepositoryError(f"{repo.metadata_dir} already holds a repository")
        if not targets_signers:
            raise RepositoryError("at least one targets signer is needed to sign targets v1")
        if not 1 <= root_threshold <= len(root_signers):
            raise RepositoryError(f"root threshold {root_threshold} needs 1..{len(root_signers)} "
                                  "root keys")
        root = Root(expires=repo.expiry.expires(Root.type), consistent_snapshot=True)
        for signer in root_signers:
            root.add_key(signer.public_key, Root.type)
        root.roles[Root.type].threshold = root_threshold
        for signer in targets_signers:
            root.add_key(signer.public_key, Targets.type)
        root.add_key(online.snapshot.public_key, Snapshot.type)
        root.add_key(online.timestamp.public_key, Timestamp.type)
        targets = Targets(expires=repo.expiry.expires(Targets.type))
        if online.deltas is not None:
            key = online.deltas.public_key
            targets.delegations = Delegations(keys={key.keyid: key}, roles={
                DELTAS_ROLE: DelegatedRole(DELTAS_ROLE, [key.keyid], 1, True,
                                           paths=[DELTA_PATH_PATTERN])})
        with storage.exclusive_lock(repo.path):
            repo.write_root(sign_metadata(root, root_signers))
            repo.write_versioned(sign_metadata(targets, targets_signers), Targets.type)
            roles = [Targets.type]
            if online.deltas is not None:
                deltas = Targets(expires=repo.expiry.expires(DELTAS_ROLE))
                repo.write_versioned(sign_metadata(deltas, [online.deltas]), DELTAS_ROLE)
                roles.append(DELTAS_ROLE)
            repo.write_snapshot_and_timestamp({r: 1 for r in roles})
        return repo

    def _check_file(self, target: TargetFile, data: bytes | Path) -> None:
        try:
            if isinstance(data, bytes):
                target.verify_length_and_hashes(data)
            else:
                with open(data, "rb") as fh:
                    target.verify_length_and_hashes(fh)
        except LengthOrHashMismatchError as exc:
            raise PublishRejected(f"file for target {target.path!r} does not match its signed "
                                  f"length/hashes: {exc}") from None

    def publish_targets(self, metadata: bytes, files: Mapping[str, bytes | Path]) -> int:
        """Accept operator-signed targets metadata and the files it lists; returns its version.

        Checks: signed by a threshold of the targets keys in the current root; version
        exactly current + 1; not expired; every listed target has a sha256 and either an
        uploaded file matching its signed length and hashes or one already stored; no
        uploaded file that is not listed. Then stores files, targets metadata, snapshot,
        timestamp (in that order)."""
        try:
            md = Metadata[Targets].from_bytes(metadata)
        except DeserializationError as exc:
            raise PublishRejected(f"not TUF targets metadata: {exc}") from None
        if not isinstance(md.signed, Targets):
            raise PublishRejected(f"expected targets metadata, got {md.signed.type!r}")
        with storage.exclusive_lock(self.path):
            root = self.root()
            try:
                root.signed.verify_delegate(Targets.type, md.signed_bytes, md.signatures)
            except UnsignedMetadataError as exc:
                raise PublishRejected(f"targets metadata is not signed by the targets keys of "
                                      f"root v{root.signed.version}: {exc}") from None
            current = self.targets().signed.version
            if md.signed.version != current + 1:
                raise PublishRejected(f"targets version {md.signed.version} must be "
                                      f"{current + 1} (current is {current})")
            if md.signed.is_expired():
                raise PublishRejected(f"targets metadata expired at {md.signed.expires}")
            unlisted = set(files) - set(md.signed.targets)
            if unlisted:
                raise PublishRejected(f"uploaded files not listed in the metadata: "
                                      f"{sorted(unlisted)}")
            try:
                check_delta_delegation(md.signed)
            except ValueError as exc:
                raise PublishRejected(str(exc)) from None
            first = self._first_publications()
            try:
                check_against_published(first, self.targets().signed, md.signed)
            except ValueError as exc:
                raise ReleaseChangeRefused(str(exc)) from None
            for path, target in md.signed.targets.items():
                try:
                    storage.check_target_path(path)
                    check_release_target(path, target)
                except ValueError as exc:
                    raise PublishRejected(str(exc)) from None
                if "sha256" not in target.hashes:
                    raise PublishRejected(f"target {path!r} has no sha256 hash")
                if path in files:
                    self._check_file(target, files[path])
                    try:
                        check_model_file(path, target, files[path])
                    except ValueError as exc:
                        raise PublishRejected(str(exc)) from None
                elif not self.target_file_path(target).exists():
                    raise PublishRejected(f"target {path!r} has no file: upload it")

            read: dict[str, bytes] = {}  # a combined bundle once, whatever its variants

            def listed_bytes(target: TargetFile) -> bytes:
                if target.path not in read:
                    data = files.get(target.path)
                    if data is None:  # published earlier: the stored file
                        data = self.target_file_path(target)
                    read[target.path] = data if isinstance(data, bytes) else \
                        Path(data).read_bytes()
                return read[target.path]

            for path, target in md.signed.targets.items():
                if path not in first:
                    try:
                        check_variant(path, target, md.signed, listed_bytes)
                    except ValueError as exc:  # a BundleError too
                        raise ReleaseChangeRefused(str(exc)) from None
            for path, data in files.items():
                self._store_target(md.signed.targets[path], data)
            write_atomic(self.metadata_dir / f"{md.signed.version}.targets.json",
                                 metadata)
            self.write_snapshot_and_timestamp({Targets.type: md.signed.version})
        return md.signed.version

    # ------------------------------------------------- deltas and rotation
    def add_delta_targets(self, deltas: Sequence[DeltaUpload],
                          remove: Sequence[str] = ()) -> int:
        """Server side: list delta files in the delegated delta role (online key).

        A delta must lead to a full bundle the operators signed: its ``result_sha256`` and
        ``result_length`` must equal that full target's, and its base must match the
        signed base bundle when that is still listed. Returns the new delta role version."""
        online = self.require_online()
        if online.deltas is None:
            raise RepositoryError("no online delta key configured")
        with storage.exclusive_lock(self.path):
            top = self.targets().signed
            role = top.delegations.roles.get(DELTAS_ROLE) if (
                top.delegations and top.delegations.roles) else None
            if role is None or online.deltas.public_key.keyid not in role.keyids:
                raise RepositoryError(f"targets metadata does not delegate {DELTAS_ROLE!r} to "
                                      "this server's delta key")
            current = self.targets(DELTAS_ROLE).signed
            for path in remove:
                current.targets.pop(path, None)
            staged: list[tuple[TargetFile, bytes | Path]] = []
            for delta in deltas:
                target = self._delta_target(top, delta)
                current.targets[target.path] = target
                staged.append((target, delta.data))
            for target, data in staged:
                self._store_target(target, data)
            current.version += 1
            current.expires = self.expiry.expires(DELTAS_ROLE)
            self.write_versioned(sign_metadata(current, [online.deltas]), DELTAS_ROLE)
            self.write_snapshot_and_timestamp({DELTAS_ROLE: current.version})
            return current.version

    def _delta_target(self, top: Targets, delta: DeltaUpload) -> TargetFile:
        info = delta.info
        path = info.target_path()
        if info.kind != "delta":
            raise PublishRejected(f"{path}: not a delta (kind {info.kind!r})")
        full = top.targets.get(full_target_path(info.model, info.version, info.runtime))
        if full is None:
            raise PublishRejected(f"{path}: the operators have not signed {info.model} "
                                  f"v{info.version}")
        if (full.hashes.get("sha256"), full.length) != (info.result_sha256, info.result_length):
            raise PublishRejected(f"{path}: result sha256/length differ from the signed full "
                                  "bundle")
        assert info.base_version is not None  # guaranteed for kind == "delta"
        base = top.targets.get(full_target_path(info.model, info.base_version, info.runtime))
        if base is not None and base.hashes.get("sha256") != info.base_sha256:
            raise PublishRejected(f"{path}: base_sha256 differs from the signed v"
                                  f"{info.base_version} bundle")
        digest, length = sha256_of(delta.data)
        return TargetFile(length, {"sha256": digest}, path,
                          {"custom": info.model_dump(mode="json", exclude_none=True)})



@dataclass(frozen=True)
class DeltaUpload:
    """A delta file the server made, and what it is a delta of."""

    data: bytes | Path
    info: ModelTargetInfo


__all__ = [
    "DeltaUpload",
    "ExpiryPolicy",
    "Key",
    "PublishRejected",
    "Repository",
]
