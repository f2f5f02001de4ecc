"""Fuzz targets of TUF-delivered metadata: root/timestamp/snapshot/targets/deltas bytes
into python-tuf's trusted metadata set, the component the agent's ngclient feeds.

The trusted state *before* the fuzzed role is deterministic (the real repository's
files, verified in the client's order), so it is built once and copied per case;
the fuzzed file and every role after it are then verified as a device would. After
loading, the agent's own parsing of what it would use runs too: the delegation
lookup of the delta path and the ``custom`` fields of model targets and slot records.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from typing import Any

from securesystemslib.exceptions import FormatError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import Signer
from tuf.api.exceptions import RepositoryError
from tuf.api.metadata import Targets
from tuf.ngclient._internal.trusted_metadata_set import TrustedMetadataSet
from tuf.ngclient.config import EnvelopeType

from contract.tuf_targets import (
    DELTAS_ROLE,
    delta_target_path,
    full_target_path,
    parse_model_info,
    parse_slot_record,
)
from tests.fuzz_targets.base import FuzzTarget
from tests.fuzz_targets.ota import MODEL, ROLES, world

_LOOKUPS = (full_target_path(MODEL, 3), delta_target_path(MODEL, 3, 1), "slots/logs.json")


def _file_name(role: str) -> str:
    """The repository file the client reads for ``role`` (consistent snapshots)."""
    repo = world().kit.repo
    if role == "root":
        return "metadata/2.root.json"  # the next root: a rotation the device must check
    if role == "timestamp":
        return "metadata/timestamp.json"
    if role == "snapshot":
        return f"metadata/{repo.timestamp().signed.snapshot_meta.version}.snapshot.json"
    return f"metadata/{repo.snapshot().signed.meta[f'{role}.json'].version}.{role}.json"


@functools.cache
def _names() -> dict[str, str]:
    return {role: _file_name(role) for role in ROLES}


def _load(trusted: TrustedMetadataSet, role: str, data: bytes) -> None:
    if role == "root":
        trusted.update_root(data)
    elif role == "timestamp":
        trusted.update_timestamp(data)
    elif role == "snapshot":
        trusted.update_snapshot(data)
    elif role == "targets":
        trusted.update_targets(data)
    else:
        trusted.update_delegated_targets(data, role, Targets.type)


@functools.cache
def _state_before(role: str) -> TrustedMetadataSet:
    """The trusted set a device has just before it reads ``role``'s file."""
    trusted = TrustedMetadataSet(world().root, EnvelopeType.METADATA)
    for earlier in ROLES[1:ROLES.index(role)]:
        _load(trusted, earlier, world().files[_names()[earlier]])
    return trusted


def _delegated(trusted: TrustedMetadataSet) -> bool:
    """Whether the trusted top-level targets lead the delta path to the deltas role."""
    delegations = trusted[Targets.type].delegations  # type: ignore[attr-defined]
    return delegations is not None and any(
        name == DELTAS_ROLE for name, _ in delegations.get_roles_for_target(_LOOKUPS[1]))


def _use(trusted: TrustedMetadataSet) -> None:
    """What the agent reads from verified metadata: delegation lookups and customs."""
    for role in (Targets.type, DELTAS_ROLE):
        if role not in trusted:
            continue
        targets: Any = trusted[role]
        for path in _LOOKUPS:
            if targets.delegations is not None:
                list(targets.delegations.get_roles_for_target(path))
            target = targets.targets.get(path)
            if target is None:
                continue
            try:
                if path.startswith("slots/"):
                    parse_slot_record(path, target.custom)
                else:
                    parse_model_info(path, target.custom)
            except ValueError:
                pass


def _verify(files: dict[str, bytes]) -> None:
    """Verify ``files`` (role -> bytes, overriding the real ones) in the client's order,
    from the trusted state before the first overridden role."""
    first = min(files, key=ROLES.index)
    trusted = copy.deepcopy(_state_before(first))
    try:
        for role in ROLES[ROLES.index(first):]:
            if role == "root" and role not in files:
                continue
            if role == DELTAS_ROLE and not _delegated(trusted):
                break  # ngclient only loads a role its delegator's paths lead to
            _load(trusted, role, files[role] if role in files else world().files[_names()[role]])
    except RepositoryError:  # includes DeserializationError: the documented refusals
        return
    _use(trusted)


def run_metadata(data: bytes) -> None:
    """Input: a role selector byte, then the bytes served as that role's file."""
    if data:
        _verify({ROLES[data[0] % len(ROLES)]: data[1:]})


def metadata_seeds() -> list[bytes]:
    files, names = world().files, _names()
    seeds = [bytes([i]) + files[names[role]] for i, role in enumerate(ROLES) if role != "root"]
    return seeds + [bytes([0]) + files["metadata/1.root.json"]]


def _signers(role: str) -> list[Signer]:
    kit = world().kit
    return list(kit.root_signers) if role == "root" else [kit.signer(role)]


def _envelope(signed: Any, signers: list[Signer]) -> bytes:
    canonical = str(encode_canonical(signed)).encode()
    signatures = [{"keyid": s.public_key.keyid, "sig": s.sign(canonical).signature}
                  for s in signers]
    return json.dumps({"signatures": signatures, "signed": signed}).encode()


def run_signed_metadata(data: bytes) -> None:
    """Input: a role selector byte, then the JSON of that role's ``signed`` part, which
    the target signs with the role's real key(s): what a holder of that key can send
    (the online keys live on the fleet server). A new snapshot comes with a timestamp
    re-signed to name its hash and length, as the server would."""
    if not data:
        return
    role = ROLES[data[0] % len(ROLES)]
    try:
        signed = json.loads(data[1:])
        envelope = _envelope(signed, _signers(role))
    except (ValueError, TypeError, RecursionError, FormatError):  # nothing a key can sign
        return
    files = {role: envelope}
    if role == "snapshot":
        timestamp = json.loads(world().files[_names()["timestamp"]])["signed"]
        timestamp["meta"]["snapshot.json"].update(
            length=len(envelope), hashes={"sha256": hashlib.sha256(envelope).hexdigest()})
        files["timestamp"] = _envelope(timestamp, _signers("timestamp"))
    _verify(files)


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


TARGETS = [
    FuzzTarget("ota.tuf-metadata", metadata_seeds, run_metadata, max_len=1 << 20),
    FuzzTarget("ota.tuf-signed", signed_metadata_seeds, run_signed_metadata, max_len=1 << 20),
]
