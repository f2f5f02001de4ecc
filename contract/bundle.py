"""The model bundle: one file (``.nfb``) holding a manifest and the model files.

Layout: an uncompressed POSIX tar whose first member is ``manifest.json``,
followed by the files the manifest lists, in manifest order. Packing is
deterministic (fixed mtime/owner/mode, sorted JSON), so the same inputs give the
same bytes — which lets a device rebuild a bundle from a delta and check it
against the signed hash of the full bundle. It is uncompressed on purpose:
byte ranges of tensors stay stable, which keeps deltas small and lets the
delta applier stream without decompressing the old bundle.

Trust order on a device: the bundle file's sha256 is checked against signed
metadata *before* this module parses it; this module then checks structure,
sizes and each file's sha256 against the manifest before any runtime sees a
byte (:func:`read_bundle`).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from contract.bundle_features import MAX_KNOWN_PROGRAMS, BundleLevelOffsets, ProgramName
from contract.limits import MAX_STORED_INT
from contract.strict import Strict
from contract.tar_headers import TarContainerError, TarHeaderError, check_plain_members
from contract.topics import SLOT_PATTERN

BUNDLE_FORMAT = 1
MANIFEST_NAME = "manifest.json"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_MEMBERS = 64  # the manifest and the files it lists (two model formats today)
RUNTIME_FILES = {"onnx": "model.onnx", "tflite": "model.tflite"}


_ITEMSIZE = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2,
             "bfloat16": 2, "int32": 4, "uint32": 4, "float32": 4, "int64": 8, "uint64": 8,
             "float64": 8}


class BundleError(ValueError):
    """A bundle is malformed or inconsistent; the message says what and where."""


class TensorInfo(Strict):
    """Where a weight tensor lives inside a bundle file (used to build small deltas)."""

    name: str = Field(description="Tensor name, stable across versions of a model.")
    dtype: str = Field(description="numpy dtype string, e.g. 'int8', 'float32'.")
    shape: list[int] = Field(description="Tensor shape.")
    offset: int = Field(ge=0, description="Byte offset of the raw data inside the file.")
    length: int = Field(ge=0, description="Byte length of the raw data.")


class FileEntry(Strict):
    path: str = Field(description="File name inside the bundle (no directories).")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the file.")
    size: int = Field(ge=0, description="Size in bytes.")
    tensors: list[TensorInfo] = Field(
        default_factory=list, description="Weight tensors inside this file, if any."
    )


class TokenizerSpec(Strict):
    """Feature hashing spec; implemented once in :mod:`agent.featurizer`."""

    kind: Literal["hashed-ngrams-v1"] = Field(description="Feature extractor algorithm.")
    buckets: int = Field(gt=0, le=1 << 20, description="Number of hash buckets (input width).")
    char_ngrams: list[int] = Field(description="Character n-gram sizes, e.g. [3, 4].")
    word_ngrams: list[int] = Field(description="Word n-gram sizes, e.g. [1, 2].")
    lowercase: bool = Field(default=True, description="Lower-case before hashing.")
    mask_digits: bool = Field(default=True, description="Replace every digit by '0'.")
    max_chars: int = Field(default=512, gt=0, description="Characters of a line considered.")
    seed: int = Field(default=0, ge=0, description="Hash seed.")
    head: Literal["keep", "time-host-v1"] = Field(
        default="keep",
        description="A line's head before hashing: 'keep' hashes the whole line; "
        "'time-host-v1' first drops a leading timestamp (RFC 3164 or ISO 8601) and the "
        "syslog host after it (agent.featurizer.TIME_HOST_V1).")

    @model_serializer(mode="wrap")
    def _without_default_head(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        # A manifest whose features keep the head is written as before the field
        # existed: older agents (extra fields forbidden) still read such bundles, and
        # their bytes do not change. A bundle that strips heads names it, so an agent
        # that cannot compute its features refuses it instead of scoring other features.
        data: dict[str, object] = handler(self)
        if self.head == "keep":
            data.pop("head", None)
        return data


class TensorSignature(Strict):
    name: str = Field(description="Tensor name in the model graph.")
    dtype: str = Field(description="numpy dtype string.")
    shape: list[int | None] = Field(description="Shape; None marks the batch dimension.")


class GoldenVector(Strict):
    text: str = Field(description="Input line.")
    expected: list[float] = Field(description="Expected output probabilities, label order.")


class BundleManifest(Strict):
    format: int = Field(default=BUNDLE_FORMAT, description="Bundle format version.")
    name: str = Field(min_length=1, max_length=64, description="Model name.")
    slot: str = Field(pattern=SLOT_PATTERN, description="Slot the model serves on devices.")
    version: int = Field(ge=1, le=MAX_STORED_INT,
                         description="Monotonic version; devices never go down (at most "
                         "2^31 - 1: what every database and record stores).")
    version_label: str = Field(max_length=64, description="Human label, e.g. '2026.11-a'.")
    task: Literal["text-classification"] = Field(description="What the model does.")
    labels: list[str] = Field(min_length=2, description="Output labels, in output order.")
    normal_label: str = Field(description="The label meaning 'nothing wrong'.")
    tokenizer: TokenizerSpec = Field(description="How text becomes the input tensor.")
    inputs: list[TensorSignature] = Field(description="Model inputs.")
    outputs: list[TensorSignature] = Field(description="Model outputs (first: probabilities).")
    files: list[FileEntry] = Field(min_length=1, description="Files in the bundle.")
    runtimes: dict[Literal["onnx", "tflite"], str] = Field(
        description="Runtime format -> file name of the model in that format."
    )
    golden: list[GoldenVector] = Field(
        default_factory=list, description="Smoke-test inputs and expected outputs."
    )
    golden_atol: float = Field(default=0.02, gt=0, description="Absolute tolerance for golden.")
    evaluation: dict[str, float] = Field(
        default_factory=dict, description="Figures the model was released with (macro_f1...)."
    )
    created_by: str = Field(default="", description="Tool and version that built it.")
    level_offsets: BundleLevelOffsets | None = Field(
        default=None, description="How much the level a program logged a line at moves this "
        "model's anomaly (the agent's [model.level_evidence]; an operator's own offsets in "
        "the agent's config still win). Absent: the agent's defaults. Needs the agent to "
        "read the feature 'level_offsets' (contract.bundle_features).")
    known_programs: list[ProgramName] | None = Field(
        default=None, max_length=MAX_KNOWN_PROGRAMS, description="The programs whose lines "
        "the model was trained on, lower case as a syslog tag names them (sshd, postfix): "
        "the agent leaves their lines to the model's words and weighs the keywords in on "
        "other programs' (the agent's [model.keyword_evidence]; an operator's own list in "
        "the agent's config still wins). Absent: the list shipped with the agent. Needs "
        "the agent to read the feature 'known_programs' (contract.bundle_features).")

    @model_serializer(mode="wrap")
    def _without_absent_offsets(self, handler: SerializerFunctionWrapHandler
                                ) -> dict[str, object]:
        # As TokenizerSpec.head: a manifest without offsets or programs is written as
        # before the fields existed, so older agents still read it and its bytes do not
        # change.
        data: dict[str, object] = handler(self)
        for optional in ("level_offsets", "known_programs"):
            if getattr(self, optional) is None:
                data.pop(optional, None)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> BundleManifest:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if self.normal_label not in self.labels:
            raise ValueError(f"normal_label {self.normal_label!r} is not one of the labels")
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("file paths must be unique")
        for p in paths:
            if p == MANIFEST_NAME or "/" in p or "\\" in p or p in ("", ".", ".."):
                raise ValueError(f"bad file path {p!r}: plain file names only")
        for fmt, path in self.runtimes.items():
            if path not in paths:
                raise ValueError(f"runtime {fmt!r} names {path!r}, which is not in files")
        if not self.runtimes:
            raise ValueError("runtimes is empty: a bundle needs at least one model file")
        for i, g in enumerate(self.golden):
            if len(g.expected) != len(self.labels):
                raise ValueError(f"golden[{i}] has {len(g.expected)} values for "
                                 f"{len(self.labels)} labels")
            if not all(0.0 <= v <= 1.0 for v in g.expected):  # also rejects NaN
                raise ValueError(f"golden[{i}] expected values must be probabilities in [0, 1]")
        if not self.inputs or not self.outputs:
            raise ValueError("inputs and outputs must each name at least one tensor")
        width = self.inputs[0].shape[-1] if self.inputs[0].shape else None
        if width is not None and width != self.tokenizer.buckets:
            raise ValueError(f"input {self.inputs[0].name!r} is {width} wide but the tokenizer "
                             f"makes {self.tokenizer.buckets} buckets")
        k = self.outputs[0].shape[-1] if self.outputs[0].shape else None
        if k is not None and k != len(self.labels):
            raise ValueError(f"output {self.outputs[0].name!r} has {k} classes for "
                             f"{len(self.labels)} labels")
        for f in self.files:
            for t in f.tensors:
                itemsize = _ITEMSIZE.get(t.dtype)
                count = 1
                for d in t.shape:
                    count *= d
                if itemsize is not None and count * itemsize != t.length:
                    raise ValueError(f"{f.path}: tensor {t.name} {t.dtype}{t.shape} needs "
                                     f"{count * itemsize} bytes, not {t.length}")
        if self.known_programs is not None and \
                len(set(self.known_programs)) != len(self.known_programs):
            raise ValueError("known_programs must be unique")
        return self

    def file(self, path: str) -> FileEntry:
        for f in self.files:
            if f.path == path:
                return f
        raise KeyError(path)


class Bundle:
    """A verified bundle in memory: the manifest and each file's bytes."""

    def __init__(self, manifest: BundleManifest, files: dict[str, bytes], sha256: str) -> None:
        self.manifest = manifest
        self.files = files
        self.sha256 = sha256

    def model_bytes(self, fmt: Literal["onnx", "tflite"]) -> bytes:
        return self.files[self.manifest.runtimes[fmt]]


def file_entry(path: str, data: bytes, tensors: list[TensorInfo] | None = None) -> FileEntry:
    return FileEntry(path=path, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                     tensors=tensors or [])


def manifest_bytes(manifest: BundleManifest) -> bytes:
    return json.dumps(manifest.model_dump(mode="json"), sort_keys=True, indent=1).encode()


def pack_bundle(manifest: BundleManifest, files: dict[str, bytes]) -> bytes:
    """Pack deterministically. ``manifest.files`` must describe ``files`` exactly."""
    listed = {f.path for f in manifest.files}
    if listed != set(files):
        raise BundleError(f"manifest lists {sorted(listed)} but files are {sorted(files)}")
    for entry in manifest.files:
        data = files[entry.path]
        if hashlib.sha256(data).hexdigest() != entry.sha256 or len(data) != entry.size:
            raise BundleError(f"{entry.path}: sha256/size do not match the manifest")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in [(MANIFEST_NAME, manifest_bytes(manifest))] + [
            (f.path, files[f.path]) for f in manifest.files
        ]:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def runtime_variant(bundle_bytes: bytes, fmt: Literal["onnx", "tflite"]) -> bytes:
    """The bundle reduced to runtime ``fmt``: the manifest lists only that runtime and
    drops the other runtimes' model files (golden vectors and every other file stay),
    packed by :func:`pack_bundle`.

    Deterministic (the server signs the result; a device rebuilds a delta's base from
    its installed bundle with it) and idempotent: a bundle that already holds only
    ``fmt`` is returned as it is. Raises :class:`BundleError` when ``fmt`` is absent."""
    bundle = read_bundle(bundle_bytes)
    manifest = bundle.manifest
    if fmt not in manifest.runtimes:
        raise BundleError(f"bundle has no {fmt} model (runtimes: "
                          f"{', '.join(sorted(manifest.runtimes))})")
    if list(manifest.runtimes) == [fmt]:
        return bundle_bytes
    keep_file = manifest.runtimes[fmt]
    dropped = {p for f, p in manifest.runtimes.items() if f != fmt and p != keep_file}
    files = [f for f in manifest.files if f.path not in dropped]
    reduced = BundleManifest.model_validate(
        {**manifest.model_dump(), "files": [f.model_dump() for f in files],
         "runtimes": {fmt: keep_file}})
    return pack_bundle(reduced, {f.path: bundle.files[f.path] for f in files})


def _plain_file_problem(m: tarfile.TarInfo) -> str | None:
    """Why ``m`` is not a member :func:`pack_bundle` could have written, or None."""
    if m.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        return "is not a regular file"
    if m.issparse() or m.pax_headers:  # a sparse map or a size override inflates reads
        return "is a sparse or extended-header member"
    return None


def _read_members(data: bytes) -> dict[str, bytes]:
    """Member name -> bytes, in archive order, with structural checks.

    Every header is checked before its data is read: plain regular files only (a
    sparse member of a few blocks can expand to its declared size, filled with
    zeros), at most :data:`MAX_MEMBERS`, and the sizes added up can never exceed the
    archive itself — an uncompressed tar holds every byte it yields."""
    try:
        check_plain_members(data, MAX_MEMBERS)  # before tarfile reads a header
    except TarContainerError as exc:
        raise BundleError(f"not a bundle (bad tar container): {exc}") from None
    except TarHeaderError as exc:
        raise BundleError(str(exc)) from None
    contents: dict[str, bytes] = {}
    total = 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        while (m := tar.next()) is not None:
            if not contents and m.name != MANIFEST_NAME:
                raise BundleError(f"first member must be {MANIFEST_NAME}")
            if len(contents) >= MAX_MEMBERS:
                raise BundleError(f"more than {MAX_MEMBERS} members")
            problem = _plain_file_problem(m)
            if problem is not None:
                raise BundleError(f"member {m.name!r} {problem}")
            if m.name in contents:
                raise BundleError(f"member {m.name!r} appears twice")
            limit = MAX_MANIFEST_BYTES if m.name == MANIFEST_NAME else MAX_BUNDLE_BYTES
            if m.size > limit:
                raise BundleError(f"member {m.name!r} is too large ({m.size} bytes)")
            total += m.size
            if total > len(data):
                raise BundleError(f"members claim {total} bytes, more than the "
                                  f"{len(data)}-byte archive holds")
            fh = tar.extractfile(m)
            if fh is None:
                raise BundleError(f"member {m.name!r} cannot be read")
            blob = fh.read(m.size + 1)
            if len(blob) != m.size:
                raise BundleError(f"member {m.name!r} is truncated")
            contents[m.name] = blob
    if not contents:
        raise BundleError(f"first member must be {MANIFEST_NAME}")
    return contents


def read_bundle(data: bytes, expected_sha256: str | None = None) -> Bundle:
    """Parse and verify a bundle. Raises :class:`BundleError` naming the problem.

    ``expected_sha256``, when given, is checked first, before any parsing."""
    digest = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise BundleError(f"bundle sha256 {digest[:16]}… does not match the expected "
                          f"{expected_sha256[:16]}…")
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle is {len(data)} bytes, over the {MAX_BUNDLE_BYTES} limit")
    try:
        contents = _read_members(data)
    except (tarfile.TarError, EOFError) as exc:
        raise BundleError(f"not a bundle (bad tar container): {exc}") from None
    try:
        manifest = BundleManifest.model_validate_json(contents.pop(MANIFEST_NAME))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in exc.errors()
        )
        raise BundleError(f"invalid manifest: {problems}") from None
    listed = [f.path for f in manifest.files]
    if list(contents) != listed:
        raise BundleError(f"bundle members {list(contents)} do not match manifest files {listed}")
    for entry in manifest.files:
        blob = contents[entry.path]
        if len(blob) != entry.size:
            raise BundleError(f"{entry.path}: size {len(blob)} != manifest {entry.size}")
        if hashlib.sha256(blob).hexdigest() != entry.sha256:
            raise BundleError(f"{entry.path}: sha256 does not match the manifest")
        for t in entry.tensors:
            if t.offset + t.length > entry.size:
                raise BundleError(f"{entry.path}: tensor {t.name} lies outside the file")
    return Bundle(manifest, contents, digest)


def load_bundle(path: Path, expected_sha256: str | None = None) -> Bundle:
    size = path.stat().st_size
    if size > MAX_BUNDLE_BYTES:
        raise BundleError(f"{path}: {size} bytes, over the {MAX_BUNDLE_BYTES} limit")
    return read_bundle(path.read_bytes(), expected_sha256)
