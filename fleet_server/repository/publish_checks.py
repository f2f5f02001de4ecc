"""What the server checks in operator-signed targets metadata before publishing it,
beyond signatures and versions: the online ``deltas`` key may reach delta files only,
model targets and slot records must parse (valid, non-reserved model names), a full
target's file must be the bundle it names, and a published release never changes."""

from __future__ import annotations

from pathlib import Path

from tuf.api.metadata import TargetFile, Targets

from contract.bundle import MAX_BUNDLE_BYTES, BundleError, read_bundle
from contract.tuf_targets import (
    DELTA_PATH_PATTERN,
    DELTAS_ROLE,
    parse_model_info,
    parse_slot_record,
)


class DelegationRefused(ValueError):
    """The targets metadata delegates the ``deltas`` role more than delta files."""


def check_delta_delegation(targets: Targets) -> None:
    """The online ``deltas`` key may sign delta files and nothing else: refuse targets
    metadata that delegates it any other path (a legacy or widened pattern)."""
    roles = targets.delegations.roles if targets.delegations else None
    role = roles.get(DELTAS_ROLE) if roles else None
    if role is not None and (role.paths != [DELTA_PATH_PATTERN] or role.path_hash_prefixes):
        raise DelegationRefused(
            f"targets delegate {DELTAS_ROLE!r} paths {role.paths or role.path_hash_prefixes}; "
            f"only [{DELTA_PATH_PATTERN!r}] is accepted (the online key must not reach full "
            "bundles or slot records): re-sign with this version's operator tool")


def check_release_target(path: str, target: TargetFile) -> None:
    """Model targets and slot records must parse (valid, non-reserved model names)."""
    if path.startswith("models/"):
        parse_model_info(path, target.custom)
    elif path.startswith("slots/"):
        parse_slot_record(path, target.custom)


def check_model_file(path: str, target: TargetFile, data: bytes | Path) -> None:
    """A full model target's file must be the bundle its signed fields name: a valid
    bundle (its members' hashes, its manifest) of that model, slot and version, holding
    only its runtime's file for a runtime variant, and no larger than a device accepts.
    Before (review, December 2026) the server signed random bytes, 100 MiB of zeros or
    another model's bundle as a release, built deltas to them, and devices refused them
    only during the rollout. Deltas are checked when built (the rebuilt bundle's hash)."""
    if not path.startswith("models/"):
        return
    info = parse_model_info(path, target.custom)
    if info.kind != "full":
        return
    if target.length > MAX_BUNDLE_BYTES:
        raise ValueError(f"target {path!r} is {target.length} bytes; devices accept bundles "
                         f"of at most {MAX_BUNDLE_BYTES}")
    raw = data if isinstance(data, bytes) else Path(data).read_bytes()
    try:
        manifest = read_bundle(raw).manifest
    except (BundleError, ValueError) as exc:
        raise ValueError(f"target {path!r} is not a valid model bundle: {exc}") from None
    signed = (info.model, info.slot, info.version)
    if (manifest.name, manifest.slot, manifest.version) != signed:
        raise ValueError(f"target {path!r} is signed as {signed[0]} v{signed[2]} for slot "
                         f"{signed[1]!r} but its bundle is {manifest.name} v{manifest.version} "
                         f"for slot {manifest.slot!r}")
    if info.runtime is not None and set(manifest.runtimes) != {info.runtime}:
        raise ValueError(f"target {path!r} is the {info.runtime} variant but its bundle holds "
                         f"{sorted(manifest.runtimes)}")


def check_against_published(current: Targets, new: Targets) -> None:
    """A release, once published, is what every device of the fleet may have installed:
    its bytes never change. Refuse new targets metadata that lists a published model
    target with other bytes or fields, or a new full version below its slot's signed
    minimum (every device would refuse it). A second bundle of a published version under
    another name cannot be listed: a model target's path is the one its fields name
    (``parse_model_info``).

    Before (review, December 2026) the operators' key could re-sign
    ``models/m/3/m-3.nfb`` with new bytes: devices that had installed v3 kept the old
    model and reported "v3", the others got the new one, and deltas from v3 no longer
    applied. TUF allows it; a release history does not."""
    for path, old in current.targets.items():
        listed = new.targets.get(path)
        if not path.startswith("models/") or listed is None:
            continue  # slot records change with every release; a retired target is left out
        if (listed.length, listed.hashes, listed.custom) != (old.length, old.hashes, old.custom):
            raise ValueError(
                f"target {path!r} is already published with other contents (sha256 "
                f"{old.hashes.get('sha256', '?')[:16]}..., {old.length} bytes); a published "
                "release cannot change: publish it as a new version")
    minimums: dict[tuple[str, str], int] = {}
    for path, target in new.targets.items():
        if path.startswith("slots/"):
            record = parse_slot_record(path, target.custom)
            minimums[(record.slot, record.model)] = record.minimum_version
    for path, target in new.targets.items():
        if not path.startswith("models/") or path in current.targets:
            continue
        info = parse_model_info(path, target.custom)
        if info.kind != "full":
            continue
        minimum = minimums.get((info.slot, info.model), 0)
        if info.version < minimum:
            raise ValueError(
                f"target {path!r} is {info.model} v{info.version}, below slot "
                f"{info.slot!r}'s minimum version {minimum}: every device would refuse it")
