"""Operator side: sign a new targets version for a model release (runs where the
targets key is, never on the server).

The result (:class:`TargetsUpdate`) is the signed metadata plus the files it
lists; the server's :meth:`Repository.publish_targets` checks and stores them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path

from securesystemslib.signer import Signer
from tuf.api.exceptions import DownloadError, RepositoryError, UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, TargetFile, Targets
from tuf.api.serialization import DeserializationError
from tuf.api.serialization.json import JSONSerializer
from tuf.ngclient import Updater

from contract.bundle import read_bundle, runtime_variant
from contract.tuf_targets import (
    DELTA_PATH_PATTERN,
    DELTAS_ROLE,
    ModelTargetInfo,
    SlotRecord,
    full_target_path,
    parse_slot_record,
    slot_target_path,
)


class TargetsUpdateError(ValueError):
    """The release cannot be signed as asked; the message says why."""


@dataclass(frozen=True)
class DeltaFile:
    """An operator-made delta to include in the release (server-made ones go elsewhere)."""

    data: bytes
    base_version: int
    base_sha256: str
    delta_format: str


@dataclass
class TargetsUpdate:
    """Signed targets metadata and the files (target path -> bytes) to upload with it."""

    metadata: bytes
    version: int
    files: dict[str, bytes] = field(default_factory=dict)


def slot_record_file(record: SlotRecord) -> bytes:
    """Content of ``slots/<slot>.json``: the same JSON as its signed ``custom``."""
    return json.dumps(record.model_dump(mode="json"), sort_keys=True).encode()


def _target(path: str, data: bytes, custom: dict[str, object]) -> TargetFile:
    target = TargetFile.from_data(path, data, ["sha256"])
    target.unrecognized_fields["custom"] = custom
    return target


def _load_current(current_targets: bytes, trusted_root: bytes | None) -> Metadata[Targets]:
    try:
        md = Metadata[Targets].from_bytes(current_targets)
    except DeserializationError as exc:
        raise TargetsUpdateError(f"current targets metadata is unreadable: {exc}") from None
    if trusted_root is not None:
        # The server hands us the current targets; re-signing it blindly would
        # launder anything a compromised server slipped in.
        root = Metadata[Root].from_bytes(trusted_root).signed
        try:
            root.verify_delegate(Targets.type, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as exc:
            raise TargetsUpdateError(f"current targets metadata is not signed by the targets "
                                     f"keys of the trusted root: {exc}") from None
    return md


def anchor_delta_delegation(targets: Targets) -> None:
    """Give the ``deltas`` role the anchored path pattern (the only one the server accepts).

    Repositories created before the pattern was anchored on ``.nfd`` delegate
    ``models/*/*/delta-from-*``, which also matches a full bundle of a model whose name
    starts with ``delta-from-``; the operators' next release replaces it."""
    roles = targets.delegations.roles if targets.delegations else None
    role = roles.get(DELTAS_ROLE) if roles else None
    if role is not None:
        role.paths = [DELTA_PATH_PATTERN]
        role.path_hash_prefixes = None
        role.terminating = True


def fetch_verified_targets(metadata_url: str, trusted_root: bytes, cache_dir: Path) -> bytes:
    """The repository's current targets metadata, verified the way a device would
    (root chain, timestamp, snapshot, signatures, versions, expiry) with python-tuf's
    ngclient: what :func:`add_targets` should build on when the server is remote."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    updater = Updater(str(cache_dir), metadata_url, bootstrap=trusted_root)
    try:
        updater.refresh()
    except (RepositoryError, DownloadError) as exc:
        raise TargetsUpdateError(f"cannot verify the repository's current metadata: "
                                 f"{type(exc).__name__}: {exc}") from None
    # ngclient caches each role only after verifying it, under its plain name.
    return (cache_dir / f"{Targets.type}.json").read_bytes()


def add_targets(current_targets: bytes, signers: Sequence[Signer], *, bundle: bytes,
                deltas: Sequence[DeltaFile] = (), minimum_version: int | None = None,
                trusted_root: bytes | None = None, expires_days: float = 90,
                remove: Sequence[str] = (), variants: bool = False) -> TargetsUpdate:
    """Sign targets version N+1 listing ``bundle`` (its name/slot/version come from its
    verified manifest), optional ``deltas`` to it, and the slot record.

    With ``variants`` (``nanofleet model publish`` sets it) and a bundle of several
    runtimes, each runtime's variant (:func:`contract.bundle.runtime_variant`) is
    signed as a full target too, so a device downloads only the model file it runs;
    the combined bundle stays for agents that predate variants.

    ``minimum_version`` sets the slot's signed minimum; by default the previous minimum
    is kept. ``trusted_root`` (recommended) checks that ``current_targets`` really is
    what the targets keys signed before building on it."""
    if not signers:
        raise TargetsUpdateError("no targets signer given")
    md = _load_current(current_targets, trusted_root)
    manifest = read_bundle(bundle).manifest
    targets = md.signed
    try:
        full_path = full_target_path(manifest.name, manifest.version)
    except ValueError as exc:
        raise TargetsUpdateError(f"bundle manifest: {exc}") from None
    anchor_delta_delegation(targets)
    if full_path in targets.targets:
        raise TargetsUpdateError(f"{full_path} is already published; bump the bundle version")
    for path in remove:
        targets.targets.pop(path, None)

    slot_path = slot_target_path(manifest.slot)
    previous = targets.targets.get(slot_path)
    prev_record = parse_slot_record(slot_path, previous.custom) if previous else None
    if prev_record is not None and prev_record.model != manifest.name:
        raise TargetsUpdateError(f"slot {manifest.slot!r} is served by model "
                                 f"{prev_record.model!r}, not {manifest.name!r}")
    latest = max(manifest.version, prev_record.latest_version if prev_record else 0)
    minimum = minimum_version if minimum_version is not None else (
        prev_record.minimum_version if prev_record else 0)
    if prev_record is not None and minimum < prev_record.minimum_version:
        # The minimum is the fleet's floor against old models coming back; the server
        # refuses a lower one too (publish_checks.check_against_published).
        raise TargetsUpdateError(f"slot {manifest.slot!r} has minimum version "
                                 f"{prev_record.minimum_version}; a minimum is never lowered")
    try:
        record = SlotRecord(slot=manifest.slot, model=manifest.name, minimum_version=minimum,
                            latest_version=latest)
    except ValueError as exc:
        raise TargetsUpdateError(f"slot record: {exc}") from None

    full = TargetFile.from_data(full_path, bundle, ["sha256"])
    full_info = ModelTargetInfo(kind="full", model=manifest.name, slot=manifest.slot,
                                version=manifest.version, result_sha256=full.hashes["sha256"],
                                result_length=full.length)
    full.unrecognized_fields["custom"] = full_info.model_dump(mode="json", exclude_none=True)
    update = TargetsUpdate(metadata=b"", version=targets.version + 1,
                           files={full_path: bundle})
    targets.targets[full_path] = full
    runtimes = sorted(manifest.runtimes) if variants and len(manifest.runtimes) > 1 else []
    for fmt in runtimes:
        data = runtime_variant(bundle, fmt)
        info = ModelTargetInfo(kind="full", model=manifest.name, slot=manifest.slot,
                               version=manifest.version, result_sha256=sha256(data).hexdigest(),
                               result_length=len(data), runtime=fmt)
        path = info.target_path()
        targets.targets[path] = _target(path, data, info.model_dump(mode="json",
                                                                    exclude_none=True))
        update.files[path] = data
    for delta in deltas:
        info = ModelTargetInfo(kind="delta", model=manifest.name, slot=manifest.slot,
                               version=manifest.version, result_sha256=full_info.result_sha256,
                               result_length=len(bundle), base_version=delta.base_version,
                               base_sha256=delta.base_sha256, delta_format=delta.delta_format)
        path = info.target_path()
        targets.targets[path] = _target(path, delta.data,
                                        info.model_dump(mode="json", exclude_none=True))
        update.files[path] = delta.data
    record_bytes = slot_record_file(record)
    targets.targets[slot_path] = _target(slot_path, record_bytes, record.model_dump(mode="json"))
    update.files[slot_path] = record_bytes

    targets.version += 1
    targets.expires = (datetime.now(UTC) + timedelta(days=expires_days)).replace(microsecond=0)
    md.signatures.clear()
    for signer in signers:
        md.sign(signer, append=True)
    update.metadata = md.to_bytes(JSONSerializer(compact=False))
    return update
