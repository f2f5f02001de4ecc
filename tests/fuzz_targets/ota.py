"""Fuzz targets of the update path: deltas, bundles, signed custom fields (and the
real artifacts every OTA target starts from; TUF metadata: :mod:`.ota_tuf`).

Seeds are real artifacts made once per process with the real code (synthetic nano
models packed with :func:`contract.bundle.pack_bundle`, deltas from
:func:`fleet_server.deltas.build_delta`, a TUF repository from
:mod:`fleet_server.repository` with releases and a server-made delta role), cached
in a temp dir. Each ``run`` feeds the product's real parser and catches only the
refusal the product documents for that input.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from agent.ota.policy import InstalledBundle, SignedArtifact, delta_problem, full_target_refusal
from benchmarks.synthetic_bundles import full_fine_tune, head_only, make_model, pack
from contract.bundle import BundleError, BundleManifest, read_bundle
from contract.delta import HEADER, DeltaError, apply_delta
from contract.tuf_targets import (
    DELTAS_ROLE,
    ModelTargetInfo,
    delta_target_path,
    full_target_path,
    parse_model_info,
    parse_slot_record,
)
from fleet_server.deltas import build_delta, build_generic_delta
from fleet_server.repository.repo import DeltaUpload
from tests.fuzz_targets.base import FuzzTarget
from tests.support.tuf_repo import RepoKit, make_repo

MODEL, SLOT = "nano-logs", "logs"
ROLES = ("root", "timestamp", "snapshot", "targets", DELTAS_ROLE)


@dataclass(frozen=True)
class DeltaCase:
    base: Path
    delta: bytes
    result_sha256: str
    result_length: int


@dataclass
class World:
    dir: Path
    bundles: dict[int, bytes]
    deltas: list[DeltaCase]
    kit: RepoKit
    files: dict[str, bytes]  # repository-relative path -> bytes (metadata/, targets/)
    root: bytes  # the device's provisioned root (version 1)


@functools.cache
def world() -> World:
    """Real artifacts, built once per process."""
    shm = Path("/dev/shm")  # tmpfs: the per-case files cost no disk I/O
    work = Path(tempfile.mkdtemp(prefix="nanofleet-fuzz-ota-",
                                 dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))
    atexit.register(shutil.rmtree, work, True)
    model = make_model(seed=3, buckets=256, embed=16, hidden=16)
    v2 = head_only(model)
    bundles = {1: pack(model), 2: pack(v2), 3: pack(full_fine_tune(v2))}
    for version, data in bundles.items():
        (work / f"v{version}.nfb").write_bytes(data)
    deltas = []
    for old, new in ((1, 2), (1, 3), (2, 3)):
        for build in (build_delta, build_generic_delta):
            delta = build(bundles[old], bundles[new], 3)
            deltas.append(DeltaCase(work / f"v{old}.nfb", delta,
                                    read_bundle(bundles[new]).sha256, len(bundles[new])))
    kit = make_repo(work / "tuf")
    for version in (1, 2, 3):
        kit.publish(bundles[version])
    top = kit.repo.targets().signed.targets
    uploads = []
    for base_version in (1, 2):
        full = top[full_target_path(MODEL, 3)]
        base_target = top[full_target_path(MODEL, base_version)]
        info = ModelTargetInfo(kind="delta", model=MODEL, slot=SLOT, version=3,
                               result_sha256=full.hashes["sha256"], result_length=full.length,
                               base_version=base_version, base_sha256=base_target.hashes["sha256"],
                               delta_format="nfd-1")
        uploads.append(DeltaUpload(build_delta(bundles[base_version], bundles[3], 3), info))
    kit.repo.add_delta_targets(uploads)
    files = {str(p.relative_to(kit.path)): p.read_bytes()
             for p in kit.path.rglob("*") if p.is_file() and not p.name.startswith(".")}
    return World(work, bundles, deltas, kit, files, kit.repo.root_bytes(1))


# --- deltas -------------------------------------------------------------------------------

def _apply(case: DeltaCase, delta: bytes) -> None:
    path = world().dir / "fuzz.nfd"
    path.write_bytes(delta)
    with contextlib.suppress(DeltaError):
        # max_output is the signed full target's length, as the device passes it
        apply_delta(case.base, path, world().dir / "fuzz-out.nfb", case.result_sha256,
                    case.result_length)


def _case_for(delta: bytes) -> DeltaCase:
    """The base/result pair whose base the header names (else the first)."""
    for case in world().deltas:
        if delta[:HEADER.size] == case.delta[:HEADER.size]:
            return case
    for case in world().deltas:
        if delta[20:52] == case.delta[20:52]:
            return case
    return world().deltas[0]


def run_delta_file(data: bytes) -> None:
    _apply(_case_for(data), data)


def run_delta_ops(data: bytes) -> None:
    """Input: a selector byte, then the op stream up to END. The CRC-32 trailer is fixed
    up, so mutations reach every op instead of stopping at a damaged-file refusal."""
    if not data:
        return
    cases = world().deltas
    case = cases[data[0] % len(cases)]
    body = case.delta[:HEADER.size] + data[1:]
    _apply(case, body + zlib.crc32(body).to_bytes(4, "little"))


def delta_file_seeds() -> list[bytes]:
    return [c.delta for c in world().deltas]


def delta_ops_seeds() -> list[bytes]:
    return [bytes([i]) + c.delta[HEADER.size:-4] for i, c in enumerate(world().deltas)]


# --- bundles ------------------------------------------------------------------------------

def run_bundle(data: bytes) -> None:
    with contextlib.suppress(BundleError):
        read_bundle(data)


def run_manifest(data: bytes) -> None:
    with contextlib.suppress(ValueError):  # pydantic's ValidationError
        BundleManifest.model_validate_json(data)


def bundle_seeds() -> list[bytes]:
    return list(world().bundles.values())


def manifest_seeds() -> list[bytes]:
    return [read_bundle(b).manifest.model_dump_json(indent=1).encode()
            for b in world().bundles.values()]


# --- signed custom fields: slot records and model targets ----------------------------------

_PATHS = (full_target_path(MODEL, 3), delta_target_path(MODEL, 3, 1))


def run_custom(data: bytes) -> None:
    """The ``custom`` object of a target, after TUF verified it: slot record, full or delta."""
    try:
        custom = json.loads(data)
    except (ValueError, RecursionError):  # TUF's own parser refuses it first
        return
    with contextlib.suppress(ValueError):
        parse_slot_record("slots/logs.json", custom)
    for path in _PATHS:
        try:
            info = parse_model_info(path, custom)
        except ValueError:
            continue
        artifact = SignedArtifact(path, info.result_length, info.result_sha256, info)
        full_target_refusal(artifact, model=MODEL, slot=SLOT, version=3)
        delta_problem(artifact, artifact, InstalledBundle(MODEL, 1, "0" * 64))


def custom_seeds() -> list[bytes]:
    seeds = []
    for role in ("targets", DELTAS_ROLE):
        for target in world().kit.repo.targets(role).signed.targets.values():
            seeds.append(json.dumps(target.custom, indent=1).encode())
    return seeds


TARGETS = [
    FuzzTarget("ota.delta-file", delta_file_seeds, run_delta_file, max_len=1 << 20),
    FuzzTarget("ota.delta-ops", delta_ops_seeds, run_delta_ops, max_len=1 << 20),
    FuzzTarget("ota.bundle", bundle_seeds, run_bundle, max_len=2 << 20),
    FuzzTarget("ota.manifest", manifest_seeds, run_manifest, max_len=1 << 20),
    FuzzTarget("ota.custom", custom_seeds, run_custom, max_len=64 << 10),
]

__all__ = ["MODEL", "ROLES", "SLOT", "TARGETS", "World", "world"]
