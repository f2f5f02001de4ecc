"""What the server checks in operator-signed targets metadata before publishing it,
beyond signatures and versions: the online ``deltas`` key may reach delta files only,
model targets and slot records must parse (valid, non-reserved model names), a full
target's file must be the bundle it names, and a published release never changes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from tuf.api.metadata import TargetFile, Targets

from contract.bundle import MAX_BUNDLE_BYTES, BundleError, read_bundle, runtime_variant
from contract.tuf_targets import (
    DELTA_PATH_PATTERN,
    DELTAS_ROLE,
    full_target_path,
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


def first_publications(history: Iterable[Targets],
                       into: dict[str, TargetFile] | None = None) -> dict[str, TargetFile]:
    """Every model target path ever published, as it was first published (``history``:
    the targets versions, oldest first; ``into``: what earlier versions gave, added to)."""
    first: dict[str, TargetFile] = {} if into is None else into
    for targets in history:
        for path, target in targets.targets.items():
            if path.startswith("models/"):
                first.setdefault(path, target)
    return first


def check_against_published(first: Mapping[str, TargetFile], current: Targets,
                            new: Targets) -> None:
    """A release, once published, is what every device of the fleet may have installed:
    its bytes never change. Refuse new targets metadata that

    - lists a model target ever published (``first``: :func:`first_publications`, so a
      path retired and listed again counts too) with other bytes or fields;
    - drops a slot record the current targets have, gives its slot another model, or
      lowers its minimum version (devices obey the signed minimum: lowered, it would let
      old versions back in);
    - adds a full version below its slot's signed minimum, or for a slot whose record names
      another model (every device would refuse it, and its path would be taken for good).

    A second bundle of a version under another name cannot be listed: a model target's
    path is the one its fields name (``parse_model_info``); a runtime variant must be the
    variant of the combined bundle beside it (:func:`check_variant`).

    Before (review, December 2026) the operators' key could re-sign ``models/m/3/m-3.nfb``
    with new bytes: devices that had installed v3 kept the old model and reported "v3", the
    others got the new one, and deltas from v3 no longer applied. TUF allows it; a release
    history does not."""
    def same(a: TargetFile, b: TargetFile) -> bool:
        return (a.length, a.hashes, a.custom) == (b.length, b.hashes, b.custom)

    for path, listed in new.targets.items():
        old = first.get(path)
        if old is None:
            continue
        as_now = current.targets.get(path)
        if as_now is not None and same(listed, as_now):
            # Listed as it is now: no change (a repository whose target changed before
            # this check existed can still publish; it cannot change again).
            continue
        if not same(listed, old):
            what = "other bytes" if (listed.length, listed.hashes) != (
                old.length, old.hashes) else "other signed fields"
            raise ValueError(
                f"target {path!r} was published with {what} (sha256 "
                f"{old.hashes.get('sha256', '?')[:16]}..., {old.length} bytes); a published "
                "release cannot change, even after it was retired: publish it as a new version")
    records = {path: parse_slot_record(path, t.custom) for path, t in new.targets.items()
               if path.startswith("slots/")}
    minimums: dict[tuple[str, str], int] = {}
    for path, target in current.targets.items():
        if not path.startswith("slots/"):
            continue
        was = parse_slot_record(path, target.custom)
        now = records.get(path)
        if now is None:
            raise ValueError(f"the slot record {path!r} is left out: a slot's record (its "
                             "model and minimum version) cannot be dropped")
        if now.model != was.model:
            raise ValueError(f"slot {was.slot!r} is served by model {was.model!r}; it cannot "
                             f"change to {now.model!r}: use a slot of its own")
        if now.minimum_version < was.minimum_version:
            raise ValueError(f"slot {was.slot!r} has minimum version {was.minimum_version}; "
                             f"{now.minimum_version} would let older models back in: a "
                             "minimum is never lowered")
    for record in records.values():
        minimums[(record.slot, record.model)] = record.minimum_version
    serving = {record.slot: record.model for record in records.values()}
    for path, target in new.targets.items():
        if not path.startswith("models/") or path in first:
            continue
        info = parse_model_info(path, target.custom)
        if info.kind != "full":
            continue
        if serving.get(info.slot, info.model) != info.model:
            # Devices of the slot would refuse it (another model), and its path would be
            # taken for good (a release never changes).
            raise ValueError(
                f"target {path!r} is signed for slot {info.slot!r}, whose record names model "
                f"{serving[info.slot]!r}, not {info.model!r}: sign it for its own slot")
        minimum = minimums.get((info.slot, info.model), 0)
        if info.version < minimum:
            raise ValueError(
                f"target {path!r} is {info.model} v{info.version}, below the minimum version "
                f"{minimum} of slot {info.slot!r}: every device would refuse it")


def check_variant(path: str, target: TargetFile, new: Targets,
                  combined: Callable[[TargetFile], bytes]) -> None:
    """A runtime variant newly listed must be exactly the variant of the combined bundle
    of its version (:func:`contract.bundle.runtime_variant`, deterministic), and that
    combined bundle must be listed beside it: devices on that runtime install the variant,
    the others the combined bundle, and both are "v<N>" (before, review December 2026, a
    variant with other weights was accepted). ``combined`` reads a listed target's bytes."""
    if not path.startswith("models/"):
        return
    info = parse_model_info(path, target.custom)
    if info.kind != "full" or info.runtime is None:
        return
    combined_path = full_target_path(info.model, info.version)
    base = new.targets.get(combined_path)
    if base is None:
        raise ValueError(f"target {path!r} is a runtime variant of {combined_path!r}, which "
                         "is not listed: publish a variant beside its combined bundle")
    expected = runtime_variant(combined(base), info.runtime)
    if hashlib.sha256(expected).hexdigest() != target.hashes.get("sha256"):
        raise ValueError(f"target {path!r} is not the {info.runtime} variant of "
                         f"{combined_path!r} (its bytes differ from runtime_variant of it): "
                         "sign the variants the operator tool makes")
