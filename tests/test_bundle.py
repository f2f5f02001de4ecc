"""Bundles: deterministic packing, and every malformed or inconsistent bundle is
rejected with a clear error before a runtime sees a byte."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from typing import Any, get_args

import pytest

from agent.model import LoadedModel, SmokeTestFailed
from agent.runtime.registry import RuntimeLoadError
from contract.bundle import (
    MANIFEST_NAME,
    Bundle,
    BundleError,
    BundleManifest,
    TokenizerSpec,
    load_bundle,
    manifest_bytes,
    pack_bundle,
    read_bundle,
    runtime_variant,
)
from contract.bundle_features import (
    BUNDLE_FEATURES,
    FEATURE_HEAD_TIME_HOST,
    FEATURE_KNOWN_PROGRAMS,
    FEATURE_LEVEL_OFFSETS,
    READ_BY_SILENT_AGENTS,
    features_needed,
    missing_features,
)
from nanomodel import default_bundle_path

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def good() -> Bundle:
    return load_bundle(default_bundle_path())


def _tar(members: list[tuple[str, bytes]], kind: bytes = tarfile.REGTYPE) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.type = len(data), kind if name != MANIFEST_NAME else tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _manifest_dict(b: Bundle) -> dict[str, Any]:
    return json.loads(manifest_bytes(b.manifest))


def _with_manifest(b: Bundle, manifest: dict[str, Any] | bytes) -> bytes:
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return _tar([(MANIFEST_NAME, raw)] + [(f.path, b.files[f.path]) for f in b.manifest.files])


def test_packing_is_deterministic_and_round_trips(good: Bundle) -> None:
    once = pack_bundle(good.manifest, good.files)
    twice = pack_bundle(BundleManifest.model_validate_json(manifest_bytes(good.manifest)),
                        dict(reversed(list(good.files.items()))))
    assert once == twice == default_bundle_path().read_bytes()
    again = read_bundle(once, expected_sha256=hashlib.sha256(once).hexdigest())
    assert again.manifest == good.manifest and again.files == good.files


def test_offsets_and_programs_are_features_and_absent_ones_keep_the_old_bytes(
        good: Bundle) -> None:
    """The shipped bundle brings its level offsets and known programs, so it needs an
    agent that reads them (contract.bundle_features); a manifest without one is written
    byte for byte as before the field existed (older agents, which refuse an unknown field,
    still read it), and a runtime variant keeps them."""
    assert good.manifest.level_offsets is not None and good.manifest.known_programs
    assert features_needed(good.manifest) == {FEATURE_LEVEL_OFFSETS, FEATURE_HEAD_TIME_HOST,
                                              FEATURE_KNOWN_PROGRAMS}
    assert features_needed(good.manifest) <= BUNDLE_FEATURES
    for field, feature in (("level_offsets", FEATURE_LEVEL_OFFSETS),
                           ("known_programs", FEATURE_KNOWN_PROGRAMS)):
        bare = good.manifest.model_copy(update={field: None})
        assert field.encode() not in manifest_bytes(bare)
        assert feature not in features_needed(bare)
        assert json.loads(manifest_bytes(bare)) == {
            k: v for k, v in _manifest_dict(good).items() if k != field}
    variant = read_bundle(runtime_variant(default_bundle_path().read_bytes(), "tflite"))
    assert variant.manifest.level_offsets == good.manifest.level_offsets
    assert variant.manifest.known_programs == good.manifest.known_programs
    assert missing_features(features_needed(good.manifest),
                            READ_BY_SILENT_AGENTS) == [FEATURE_KNOWN_PROGRAMS,
                                                       FEATURE_LEVEL_OFFSETS]
    assert missing_features(features_needed(good.manifest), None) == []


def test_every_head_but_keep_is_a_named_feature(good: Bundle) -> None:
    """A new head (or any new manifest part an older agent cannot read) must be named in
    contract.bundle_features, or rollouts would send it to agents that refuse it."""
    heads = get_args(TokenizerSpec.model_fields["head"].annotation)
    for head in heads:
        spec = good.manifest.tokenizer.model_copy(update={"head": head})
        needed = features_needed(good.manifest.model_copy(update={"tokenizer": spec,
                                                                 "level_offsets": None,
                                                                 "known_programs": None}))
        assert needed <= BUNDLE_FEATURES
        assert bool(needed) == (head != "keep"), head


def test_shipped_bundle_is_within_budget() -> None:
    assert default_bundle_path().stat().st_size <= 1024 * 1024


@pytest.mark.parametrize("data, message", [
    (b"", "bad tar container"),
    (b"\x00" * 10, "bad tar container"),
    (b"this is not a tar archive at all" * 40, "bad tar container"),
])
def test_not_a_tar(data: bytes, message: str) -> None:
    with pytest.raises(BundleError, match=message):
        read_bundle(data)


def test_truncated_and_compressed_bundles(good: Bundle) -> None:
    raw = default_bundle_path().read_bytes()
    for cut in (100, 1000, 300_000):
        # A cut inside a member is a broken container; a cut between members leaves a
        # shorter archive, whose missing files the manifest names.
        with pytest.raises(BundleError, match=r"bad tar container|archive holds|truncated"
                           r"|do not match manifest files"):
            read_bundle(raw[:cut])
    with pytest.raises(BundleError):
        read_bundle(gzip.compress(raw))


def test_whole_bundle_hash_is_checked_before_parsing(good: Bundle) -> None:
    with pytest.raises(BundleError, match="does not match the expected"):
        read_bundle(b"garbage that is never parsed", expected_sha256="0" * 64)


def test_missing_file(good: Bundle) -> None:
    members = [(MANIFEST_NAME, manifest_bytes(good.manifest)),
               ("model.onnx", good.files["model.onnx"])]
    with pytest.raises(BundleError, match=r"do not match manifest files"):
        read_bundle(_tar(members))


def test_extra_and_reordered_members(good: Bundle) -> None:
    base = [(MANIFEST_NAME, manifest_bytes(good.manifest))] + [
        (f.path, good.files[f.path]) for f in good.manifest.files]
    with pytest.raises(BundleError, match="do not match manifest files"):
        read_bundle(_tar([*base, ("notes.txt", b"hi")]))
    with pytest.raises(BundleError, match="do not match manifest files"):
        read_bundle(_tar([base[0], base[2], base[1]]))
    with pytest.raises(BundleError, match="appears twice"):
        read_bundle(_tar([*base, base[1]]))
    with pytest.raises(BundleError, match=r"first member must be manifest\.json"):
        read_bundle(_tar(base[1:] + base[:1]))
    with pytest.raises(BundleError, match="not a regular file"):
        read_bundle(_tar(base, kind=tarfile.SYMTYPE))


def test_file_hash_mismatch(good: Bundle) -> None:
    onnx = bytearray(good.files["model.onnx"])
    onnx[1000] ^= 0x01  # one weight bit: same size, different hash
    members = [(MANIFEST_NAME, manifest_bytes(good.manifest)), ("model.onnx", bytes(onnx)),
               ("model.tflite", good.files["model.tflite"])]
    with pytest.raises(BundleError, match=r"model\.onnx: sha256 does not match the manifest"):
        read_bundle(_tar(members))
    members[1] = ("model.onnx", bytes(onnx) + b"x")
    with pytest.raises(BundleError, match=r"model\.onnx: size"):
        read_bundle(_tar(members))


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m.pop("labels"), "labels: Field required"),
    (lambda m: m.update(colour="blue"), "colour: Extra inputs are not permitted"),
    (lambda m: m.update(version=0), "version: Input should be greater than or equal to 1"),
    (lambda m: m.update(slot="Bad Slot!"), "slot: String should match pattern"),
    (lambda m: m.update(task="translation"), "task: Input should be 'text-classification'"),
    (lambda m: m["tokenizer"].update(kind="bpe"), "tokenizer.kind"),
    (lambda m: m.update(runtimes={"onnx": "model.bin"}), "names 'model.bin', which is not"),
    (lambda m: m.update(runtimes={}), "runtimes is empty"),
    (lambda m: m["files"][0].update(path="../etc/passwd"), "plain file names only"),
    (lambda m: m["level_offsets"].update(err=1e9), "level_offsets.err: Input should be less"),
    (lambda m: m["level_offsets"].pop("info"), "level_offsets.info: Field required"),
    (lambda m: m["level_offsets"].update(err="NaN"), "level_offsets.err"),
    (lambda m: m.update(known_programs=["Sshd"]), "known_programs.0: String should match"),
    (lambda m: m.update(known_programs=["a" * 65]), "known_programs.0: String should have"),
    (lambda m: m.update(known_programs=["sshd[1]: "]), "known_programs.0: String should match"),
    (lambda m: m.update(known_programs=[f"p{i}" for i in range(4097)]),
     "known_programs: List should have at most 4096 items"),
    (lambda m: m.update(known_programs="sshd"), "known_programs: Input should be a valid array"),
], ids=["missing-field", "extra-field", "version-0", "bad-slot", "task", "tokenizer",
        "runtime-file", "no-runtimes", "path-traversal", "offset-too-large",
        "offset-missing", "offset-nan", "program-upper-case", "program-too-long",
        "program-tag", "programs-too-many", "programs-not-a-list"])
def test_bad_manifest(good: Bundle, mutate: Any, message: str) -> None:
    m = _manifest_dict(good)
    mutate(m)
    with pytest.raises(BundleError, match="invalid manifest") as err:
        read_bundle(_with_manifest(good, m))
    assert message in str(err.value)


def test_manifest_not_json(good: Bundle) -> None:
    with pytest.raises(BundleError, match="invalid manifest"):
        read_bundle(_with_manifest(good, b"{not json"))
    with pytest.raises(BundleError, match="invalid manifest"):
        read_bundle(_with_manifest(good, b"\xff\xfe\x00"))


@pytest.mark.parametrize("mutate, message", [
    (lambda m: m["golden"][0]["expected"].pop(), "golden[0] has 8 values for 9 labels"),
    (lambda m: m["golden"][1]["expected"].__setitem__(0, 1.5), "golden[1] expected values"),
    (lambda m: m.update(normal_label="fine"), "normal_label 'fine' is not one of the labels"),
    (lambda m: m["labels"].__setitem__(1, "normal"), "labels must be unique"),
    (lambda m: (m["labels"].append("extra"), m.update(golden=[])),
     "has 9 classes for 10 labels"),
    (lambda m: m["tokenizer"].update(buckets=2048), "4096 wide but the tokenizer makes 2048"),
    (lambda m: m["files"][0]["tensors"][0].update(length=10), "needs 262144 bytes, not 10"),
    (lambda m: m["files"][1]["tensors"][0].update(offset=10**6), "lies outside the file"),
    (lambda m: m.update(known_programs=["sshd", "sshd"]), "known_programs must be unique"),
], ids=["golden-length", "golden-not-probability", "normal-label", "duplicate-label",
        "labels-vs-outputs", "buckets-vs-inputs", "tensor-length", "tensor-outside",
        "duplicate-program"])
def test_inconsistent_manifest(good: Bundle, mutate: Any, message: str) -> None:
    m = _manifest_dict(good)
    mutate(m)
    with pytest.raises(BundleError) as err:
        read_bundle(_with_manifest(good, m))
    assert message in str(err.value)


def test_smoke_test_catches_wrong_golden_vectors(good: Bundle) -> None:
    m = _manifest_dict(good)
    m["golden"][4]["expected"] = [1.0] + [0.0] * 8  # "eth0: link down" claimed normal
    bundle = read_bundle(_with_manifest(good, m))
    for runtime in ("onnxruntime", "litert"):
        model = LoadedModel.from_bundle(bundle, runtime)
        with pytest.raises(SmokeTestFailed, match=r"golden vector 4 \('eth0: link down'\)"):
            model.smoke_test()
        model.close()


def test_runtime_refusing_the_bytes_is_a_clear_error(good: Bundle) -> None:
    m = _manifest_dict(good)
    m["runtimes"] = {"onnx": "model.tflite"}  # a TFLite file handed to ONNX Runtime
    bundle = read_bundle(_with_manifest(good, m))
    with pytest.raises(RuntimeLoadError, match=r"onnxruntime could not load model\.tflite"):
        LoadedModel.from_bundle(bundle, "onnxruntime")


def _pax_sparse(name: str, real_size: int, chunk: bytes) -> tuple[tarfile.TarInfo, bytes]:
    """A PAX 1.0 sparse member: a few blocks on disk, ``real_size`` bytes when read."""
    sparse_map = f"1\n{real_size - len(chunk)}\n{len(chunk)}\n".encode().ljust(512, b"\0")
    body = sparse_map + chunk
    info = tarfile.TarInfo(f"GNUSparseFile.0/{name}")
    info.size = len(body)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0",
                        "GNU.sparse.name": name, "GNU.sparse.realsize": str(real_size)}
    return info, body


def _crafted(good: Bundle, extra: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        manifest = manifest_bytes(good.manifest)
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for member, body in extra:
            tar.addfile(member, io.BytesIO(body))
    return out.getvalue()


def _special(name: str, kind: bytes, **fields: Any) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    return info, b""


def _oversized_pax(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = 10
    info.pax_headers = {"size": str(60 << 20)}  # PAX overrides the header's size field
    return info, b"0123456789"


@pytest.mark.parametrize("members, message", [
    pytest.param([_pax_sparse(f"model{i}.onnx", 60 << 20, b"x" * 512) for i in range(6)],
                 "sparse", id="pax-sparse-360MiB"),
    pytest.param([_oversized_pax("model.onnx")], "extended-header|archive holds",
                 id="pax-size-override"),
    pytest.param([_special("model.onnx", tarfile.SYMTYPE, linkname="/etc/shadow")],
                 "not a regular file", id="symlink"),
    pytest.param([_special("model.onnx", tarfile.LNKTYPE, linkname=MANIFEST_NAME)],
                 "not a regular file", id="hardlink"),
    pytest.param([_special("model.onnx", tarfile.CHRTYPE, devmajor=1, devminor=5)],
                 "not a regular file", id="char-device"),
    pytest.param([_special("model.onnx", tarfile.FIFOTYPE)], "not a regular file", id="fifo"),
    pytest.param([_special("models", tarfile.DIRTYPE)], "not a regular file", id="directory"),
    pytest.param([_special("model.onnx", tarfile.CONTTYPE, size=0)], "not a regular file",
                 id="contiguous"),
    pytest.param([_special(f"f{i}", tarfile.REGTYPE) for i in range(100)], "more than 64",
                 id="too-many-members"),
])
def test_special_members_refused_before_reading(good: Bundle, members: list[Any],
                                                message: str) -> None:
    """Finding 8.8: a bundle's members are checked (kind, count, total size) before any
    data is read, so a small archive cannot inflate memory before the manifest check."""
    import tracemalloc

    data = _crafted(good, members)
    assert len(data) < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match=message):
            read_bundle(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * len(data) + (4 << 20), f"peak {peak} bytes for a {len(data)}-byte bundle"
