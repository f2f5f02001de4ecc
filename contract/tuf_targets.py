"""How model releases appear in the signed TUF repository (both sides agree here).

Target paths (the TUF "targetpath" of each artifact):

- full bundle:   ``models/<model>/<version>/<model>-<version>.nfb``
- delta:         ``models/<model>/<version>/delta-from-<base>.nfd``
- runtime variant of either (one model file, :func:`contract.bundle.runtime_variant`):
  ``models/<model>/<version>/<model>-<version>.<fmt>.nfb`` and
  ``models/<model>/<version>/delta-from-<base>.<fmt>.nfd`` (``fmt``: onnx | tflite)
- slot record:   ``slots/<slot>.json``

Every model target carries a ``custom`` object (:class:`ModelTargetInfo`) and
every slot record a ``custom`` object (:class:`SlotRecord`). Both are inside the
signed targets metadata, so a device reads them only after TUF verified them.

Who signs what: full bundles and slot records are listed in the top-level
``targets`` role (the operators' offline key). Deltas may be listed there too,
or in the delegated role :data:`DELTAS_ROLE`, whose key is online on the fleet
server (the server computes deltas on publish). A delta never needs more trust
than that: the device rebuilds the bundle and checks it against the
operator-signed *full* target before anything parses it, so a bad delta costs a
download, not an installation. Three things keep the online key away from full
bundles and slot records: the delegation's path pattern
(:data:`DELTA_PATH_PATTERN`) is anchored on the ``.nfd`` extension and a numeric
base, model names may not start with :data:`RESERVED_MODEL_PREFIX` (so no full
bundle's path can look like a delta's), and devices take full targets and slot
records only from the top-level ``targets`` role, whatever a delegation says.

Runtime variants (``ModelTargetInfo.runtime`` set) are separate targets with their
own signed hashes: the full variant is signed by the operators next to the combined
bundle, variant deltas lead from one variant to the next of the same runtime. The
variant delta path still matches :data:`DELTA_PATH_PATTERN` (``[0-9]*`` covers
``3.onnx``) and the variant full path does not (it ends in ``.nfb``). Agents that
predate variants look targets up by the combined paths only and never parse these.

The signed minimum version of a slot lives in its slot record
(``SlotRecord.minimum_version``): devices refuse to install anything below it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from contract.limits import MAX_STORED_INT
from contract.strict import Strict
from contract.topics import check_slot

DELTAS_ROLE = "deltas"
# python-tuf matches a pattern per "/"-separated part with fnmatch: the last part can
# only be a delta file name. Repositories made before it was anchored delegate
# "models/*/*/delta-from-*"; the operators' next signed targets version replaces it.
DELTA_PATH_PATTERN = "models/*/*/delta-from-[0-9]*.nfd"
RESERVED_MODEL_PREFIX = "delta-from-"
FULL_SUFFIX = ".nfb"
DELTA_SUFFIX = ".nfd"
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN)
_SHA256 = r"^[0-9a-f]{64}$"


def check_model_name(name: str) -> str:
    """Return ``name`` if it can be a path component of a target, else raise ValueError."""
    if not isinstance(name, str) or not _MODEL_NAME_RE.match(name) or name in (".", ".."):
        raise ValueError(
            f"invalid model name {name!r}: use 1-64 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    if name.lower().startswith(RESERVED_MODEL_PREFIX):
        raise ValueError(f"invalid model name {name!r}: names starting with "
                         f"{RESERVED_MODEL_PREFIX!r} are reserved (a delta's file name)")
    return name


def _check_version(version: int, what: str = "version") -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"invalid {what} {version!r}: must be an integer >= 1")
    return version


RuntimeFormat = Literal["onnx", "tflite"]
RUNTIME_FORMATS: tuple[RuntimeFormat, ...] = ("onnx", "tflite")


def _variant(runtime: str | None) -> str:
    if runtime is None:
        return ""
    if runtime not in RUNTIME_FORMATS:
        raise ValueError(f"invalid runtime {runtime!r}: one of {', '.join(RUNTIME_FORMATS)}")
    return f".{runtime}"


def full_target_path(model: str, version: int, runtime: RuntimeFormat | None = None) -> str:
    """Path of the combined full bundle, or of its ``runtime`` variant."""
    check_model_name(model)
    _check_version(version)
    return f"models/{model}/{version}/{model}-{version}{_variant(runtime)}{FULL_SUFFIX}"


def delta_target_path(model: str, version: int, base_version: int,
                      runtime: RuntimeFormat | None = None) -> str:
    """Path of the delta between combined bundles, or between ``runtime`` variants."""
    check_model_name(model)
    _check_version(version)
    _check_version(base_version, "base version")
    if base_version >= version:
        raise ValueError(f"delta base version {base_version} must be below {version}")
    return (f"models/{model}/{version}/delta-from-{base_version}{_variant(runtime)}"
            f"{DELTA_SUFFIX}")


def slot_target_path(slot: str) -> str:
    return f"slots/{check_slot(slot)}.json"


class ModelTargetInfo(Strict):
    """``custom`` of a model target (full bundle or delta)."""

    kind: Literal["full", "delta"] = Field(description="Full bundle or delta to a full bundle.")
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name (bundle manifest).")
    slot: str = Field(description="Slot the model serves on devices.")
    version: int = Field(ge=1, le=MAX_STORED_INT,
                         description="Version of the full bundle this target yields.")
    result_sha256: str = Field(
        pattern=_SHA256, description="sha256 of the full bundle (for a full target: itself)."
    )
    result_length: int = Field(ge=1, description="Length in bytes of the full bundle.")
    base_version: int | None = Field(
        default=None, ge=1, le=MAX_STORED_INT,
        description="Delta only: version the delta applies to.")
    base_sha256: str | None = Field(
        default=None, pattern=_SHA256, description="Delta only: sha256 of the base bundle."
    )
    delta_format: str | None = Field(
        default=None, max_length=32, description="Delta only: delta format name, e.g. 'nfd-1'."
    )
    runtime: RuntimeFormat | None = Field(
        default=None, description="Runtime variant (the bundle holds only this runtime's model "
        "file; result_sha256/base_sha256 are the variants'); absent: the combined bundle.")

    @model_validator(mode="after")
    def _consistent(self) -> ModelTargetInfo:
        check_slot(self.slot)
        check_model_name(self.model)
        delta_fields = (self.base_version, self.base_sha256, self.delta_format)
        if self.kind == "delta":
            if None in delta_fields:
                raise ValueError("a delta needs base_version, base_sha256 and delta_format")
            assert self.base_version is not None
            if self.base_version >= self.version:
                raise ValueError(f"base_version {self.base_version} must be below "
                                 f"version {self.version}")
        elif any(f is not None for f in delta_fields):
            raise ValueError("a full target has no base_version/base_sha256/delta_format")
        return self

    def target_path(self) -> str:
        if self.kind == "full":
            return full_target_path(self.model, self.version, self.runtime)
        assert self.base_version is not None
        return delta_target_path(self.model, self.version, self.base_version, self.runtime)


class SlotRecord(Strict):
    """``custom`` (and content) of ``slots/<slot>.json``: signed per-slot policy."""

    kind: Literal["slot"] = Field(default="slot", description="Marks a slot record.")
    slot: str = Field(description="The slot this record is about.")
    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Model that serves the slot.")
    minimum_version: int = Field(
        ge=0, le=MAX_STORED_INT,
        description="Devices refuse to install a version below this (0: no minimum).")
    latest_version: int = Field(ge=1, le=MAX_STORED_INT,
                                description="Newest published version for the slot.")

    @model_validator(mode="after")
    def _consistent(self) -> SlotRecord:
        check_slot(self.slot)
        check_model_name(self.model)
        if self.minimum_version > self.latest_version:
            raise ValueError(f"minimum_version {self.minimum_version} is above "
                             f"latest_version {self.latest_version}")
        return self


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
    )


def parse_model_info(path: str, custom: Any) -> ModelTargetInfo:
    """Parse and cross-check a model target's ``custom``; raise ValueError naming the problem.

    The path must be the one the custom fields imply: a target signed as v2 must
    not be presented under the path of v3."""
    try:
        info = ModelTargetInfo.model_validate(custom)
    except ValidationError as exc:
        raise ValueError(f"target {path!r}: invalid custom fields: {_describe(exc)}") from None
    if info.target_path() != path:
        raise ValueError(f"target {path!r}: custom fields describe {info.target_path()!r}")
    return info


def parse_slot_record(path: str, custom: Any) -> SlotRecord:
    try:
        record = SlotRecord.model_validate(custom)
    except ValidationError as exc:
        raise ValueError(f"target {path!r}: invalid slot record: {_describe(exc)}") from None
    if slot_target_path(record.slot) != path:
        raise ValueError(f"target {path!r}: slot record is for slot {record.slot!r}")
    return record
