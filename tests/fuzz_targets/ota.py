"""Fuzz targets of the update path: deltas, bundles, TUF metadata, signed custom fields.

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
import hashlib
import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from securesystemslib.exceptions import FormatError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Signer
from tuf.api.exceptions import DownloadError, RepositoryError

from agent.ota.errors import UpdateRefused
from agent.ota.policy import InstalledBundle, SignedArtifact, delta_problem, full_target_refusal
from agent.ota.transport import ArtifactNotFound, ArtifactTooLarge, ArtifactTransport
from agent.ota.tuf_client import TufClient
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


# --- TUF metadata through the agent's client --------------------------------------------

class MemoryTransport(ArtifactTransport):
    """The repository's files from memory, with the device's length bound enforced."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def fetch(self, url: str, start: int = 0, max_length: int | None = None) -> Iterator[bytes]:
        path = unquote(urlsplit(url).path).lstrip("/")
        data = self.files.get(path)
        if data is None:
            raise ArtifactNotFound(f"{url}: HTTP 404", 404)
        if max_length is not None and len(data) - start > max_length:
            raise ArtifactTooLarge(f"{url}: {len(data) - start} bytes over {max_length}")
        yield data[start:]


_EXPECTED_CAUSES = (RepositoryError, DownloadError)


def _consult(files: dict[str, bytes]) -> None:
    """What the agent's fetch step asks of the repository, from a fresh provisioned root."""
    state = world().dir / "fuzz-tuf"
    shutil.rmtree(state, ignore_errors=True)
    TufClient.initialize(state, world().root)
    client = TufClient(state, "http://repo/metadata", trusted_root=None,
                       target_base_url="http://repo/targets", transport=MemoryTransport(files))
    try:
        client.refresh()
        found = client.find_model_targets(MODEL, 3, installed_version=1)
        record = client.slot_record(SLOT)
        full_target_refusal(found.full, model=MODEL, slot=SLOT, version=3)
        if found.delta is not None:
            delta_problem(found.full, found.delta, InstalledBundle(MODEL, 1, "0" * 64))
        del record
    except UpdateRefused as exc:
        cause = exc.__cause__
        if cause is not None and not isinstance(cause, _EXPECTED_CAUSES):
            # classify() turned an exception python-tuf does not document into a
            # refusal: the device survives, but the parser has a bug worth knowing.
            raise AssertionError(f"unexpected {type(cause).__name__} became {exc}") from cause


def _metadata_name(role: str) -> str:
    """The file name the client requests for ``role`` (consistent snapshots)."""
    kit = world().kit.repo
    if role == "root":
        return "metadata/2.root.json"  # the next root: a rotation the device must check
    if role == "timestamp":
        return "metadata/timestamp.json"
    if role == "snapshot":
        return f"metadata/{kit.timestamp().signed.snapshot_meta.version}.snapshot.json"
    return f"metadata/{kit.snapshot().signed.meta[f'{role}.json'].version}.{role}.json"


@functools.cache
def _names() -> dict[str, str]:
    return {role: _metadata_name(role) for role in ROLES}


def run_metadata(data: bytes) -> None:
    """Input: a role selector byte, then the bytes served for that role's file."""
    if not data:
        return
    role = ROLES[data[0] % len(ROLES)]
    _consult({**world().files, _names()[role]: data[1:]})


def metadata_seeds() -> list[bytes]:
    files, names = world().files, _names()
    seeds = [bytes([i]) + files[names[role]] for i, role in enumerate(ROLES) if role != "root"]
    return seeds + [bytes([0]) + files["metadata/1.root.json"]]


def _signers(role: str) -> list[Signer]:
    kit = world().kit
    if role == "root":
        return list(kit.root_signers)
    return [kit.signer(role)]


def _envelope(signed: Any, signers: list[Signer]) -> bytes:
    canonical = str(encode_canonical(signed)).encode()
    signatures = [{"keyid": s.public_key.keyid, "sig": s.sign(canonical).signature}
                  for s in signers]
    return json.dumps({"signatures": signatures, "signed": signed}).encode()


def run_signed_metadata(data: bytes) -> None:
    """Input: a role selector byte, then the JSON of that role's ``signed`` part, which
    the target signs with the role's real key(s): what a holder of that key can send.
    A new snapshot also gets a re-signed timestamp naming its hash and length."""
    if not data:
        return
    role = ROLES[data[0] % len(ROLES)]
    try:
        signed = json.loads(data[1:])
        envelope = _envelope(signed, _signers(role))
    except (ValueError, TypeError, RecursionError, FormatError):  # nothing a key holder can sign
        return
    files = {**world().files, _names()[role]: envelope}
    if role == "snapshot":
        timestamp = json.loads(world().files["metadata/timestamp.json"])["signed"]
        timestamp["meta"]["snapshot.json"].update(
            length=len(envelope), hashes={"sha256": hashlib.sha256(envelope).hexdigest()})
        files["metadata/timestamp.json"] = _envelope(timestamp, _signers("timestamp"))
    _consult(files)


def signed_metadata_seeds() -> list[bytes]:
    files, names = world().files, _names()
    seeds = []
    for i, role in enumerate(ROLES):
        name = names[role] if role != "root" else "metadata/1.root.json"
        signed = json.loads(files[name])["signed"]
        if role == "root":
            signed["version"] = 2
        seeds.append(bytes([i]) + json.dumps(signed, indent=1).encode())
    return seeds


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
    FuzzTarget("ota.tuf-metadata", metadata_seeds, run_metadata, max_len=1 << 20),
    FuzzTarget("ota.tuf-signed", signed_metadata_seeds, run_signed_metadata, max_len=1 << 20),
    FuzzTarget("ota.custom", custom_seeds, run_custom, max_len=64 << 10),
]

__all__ = ["TARGETS", "world"]
