"""The server side of deltas: every delta rebuilds the new bundle exactly, and is small.

Round trips go through the real applier on real files (``verify_delta``)."""

from __future__ import annotations

import hashlib
import io
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from benchmarks.synthetic_bundles import (
    full_fine_tune,
    head_only,
    make_model,
    pack,
    requantize,
)
from contract.bundle import (
    BundleManifest,
    TensorInfo,
    TensorSignature,
    TokenizerSpec,
    file_entry,
    pack_bundle,
)
from contract.delta import DeltaError, apply_delta, describe_delta
from fleet_server.bundle_layout import bundle_layout
from fleet_server.deltas import (
    build_delta,
    build_generic_delta,
    build_tensor_delta,
    choose_delta,
    verify_delta,
)

pytestmark = pytest.mark.unit

LEVEL = 3  # correctness does not depend on the level; keep the tests fast

Tensors = list[tuple[str, np.ndarray]]


def custom_bundle(files: dict[str, Tensors], version: int = 1) -> bytes:
    """A valid bundle whose model files are glue + tensors, as the manifest describes."""
    blobs, entries = {}, []
    for fname, tensors in files.items():
        buf = bytearray(f"{fname} format header, version {version}\n".encode())
        infos = []
        for name, arr in tensors:
            buf += f"<tensor {name} {arr.dtype} {list(arr.shape)}>".encode()
            buf += b"\0" * (-len(buf) % 16)
            infos.append(TensorInfo(name=name, dtype=str(arr.dtype), shape=list(arr.shape),
                                    offset=len(buf), length=arr.nbytes))
            buf += arr.tobytes()
        blobs[fname] = bytes(buf)
        entries.append(file_entry(fname, bytes(buf), infos))
    manifest = BundleManifest(
        name="test", slot="logs", version=version, version_label=f"v{version}",
        task="text-classification", labels=["normal", "bad"], normal_label="normal",
        tokenizer=TokenizerSpec(kind="hashed-ngrams-v1", buckets=64, char_ngrams=[3],
                                word_ngrams=[1]),
        inputs=[TensorSignature(name="x", dtype="float32", shape=[None, 64])],
        outputs=[TensorSignature(name="p", dtype="float32", shape=[None, 2])],
        files=entries, runtimes={"onnx": next(iter(files))})
    return pack_bundle(manifest, blobs)


def rng_tensors(seed: int, spec: dict[str, tuple[str, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, (dtype, shape) in spec.items():
        if dtype == "int8":
            out[name] = rng.integers(-40, 40, shape).astype(np.int8)
        else:
            out[name] = rng.normal(0, 0.1, shape).astype(dtype)
    return out


BASE = rng_tensors(1, {"embed": ("int8", (512, 32)), "embed.scale": ("float32", (1,)),
                       "hidden": ("float32", (32, 32)), "head": ("float32", (32, 9)),
                       "head.bias": ("float32", (9,))})


def nudged(arr: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if arr.dtype == np.int8:
        return (arr + rng.integers(-1, 2, arr.shape)).astype(np.int8)
    return (arr + rng.normal(0, 0.01, arr.shape)).astype(arr.dtype)


def files_of(t: dict[str, np.ndarray]) -> dict[str, Tensors]:
    return {"model.onnx": list(t.items()), "model.tflite": list(reversed(t.items()))}


def case_identical() -> dict[str, Tensors]:
    return files_of(BASE)


def case_renamed() -> dict[str, Tensors]:
    return files_of({f"layer{i}.{k}": v for i, (k, v) in enumerate(BASE.items())})


def case_file_added() -> dict[str, Tensors]:
    return {**files_of(BASE), "vocab.bin": [("extra", np.arange(3000, dtype=np.int32))]}


def case_file_removed() -> dict[str, Tensors]:
    return {"model.onnx": list(BASE.items())}


def case_shape_changed() -> dict[str, Tensors]:
    t = dict(BASE)
    t["embed"] = np.concatenate([BASE["embed"], BASE["embed"][:100]])
    t["head"] = nudged(BASE["head"][:, :5].copy(), 2)
    return files_of(t)


def case_tensor_added_and_dropped() -> dict[str, Tensors]:
    t = {k: v for k, v in BASE.items() if k != "hidden"}
    t = {"new.first": np.ones((64, 8), np.float32), **t}
    t["embed"] = nudged(BASE["embed"], 3)
    return files_of(t)


def case_all_nudged() -> dict[str, Tensors]:
    return files_of({k: nudged(v, i) for i, (k, v) in enumerate(BASE.items())})


CASES: dict[str, Callable[[], dict[str, Tensors]]] = {
    "identical": case_identical, "renamed": case_renamed, "file_added": case_file_added,
    "file_removed": case_file_removed, "shape_changed": case_shape_changed,
    "tensor_added_and_dropped": case_tensor_added_and_dropped, "all_nudged": case_all_nudged,
}


@pytest.fixture(scope="module")
def synth() -> dict[str, bytes]:
    model = make_model(seed=4, buckets=1024, embed=32, hidden=32)
    return {"base": pack(model), "head": pack(head_only(model)),
            "full": pack(full_fine_tune(model)), "requant": pack(requantize(model))}


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_structural_changes(case: str) -> None:
    old = custom_bundle(files_of(BASE), version=1)
    new = custom_bundle(CASES[case](), version=1 if case == "identical" else 2)
    aware = build_tensor_delta(old, new, LEVEL)
    assert aware is not None
    for delta in (aware, build_generic_delta(old, new, LEVEL)):
        verify_delta(old, new, delta)
    if case == "identical":
        assert len(aware) < 200
        assert describe_delta(io.BytesIO(aware)).ops == {"COPY": 1}


@pytest.mark.parametrize("kind", ["head", "full", "requant"])
def test_round_trip_model_updates(synth: dict[str, bytes], kind: str) -> None:
    old, new = synth["base"], synth[kind]
    aware, generic = build_tensor_delta(old, new, LEVEL), build_generic_delta(old, new, LEVEL)
    assert aware is not None
    verify_delta(old, new, aware)
    verify_delta(old, new, generic)
    assert len(aware) < len(generic)
    if kind == "head":
        assert len(aware) <= 0.05 * len(new)
        summary = describe_delta(io.BytesIO(aware))
        copied = summary.output_bytes.get("COPY", 0) + summary.output_bytes.get("COPYOUT", 0)
        assert copied > len(new) - 10_000  # only the head, the manifest and glue are sent


def test_diff_ops_carry_changed_tensors(synth: dict[str, bytes]) -> None:
    delta = build_tensor_delta(synth["base"], synth["full"], LEVEL)
    assert delta is not None
    summary = describe_delta(io.BytesIO(delta))
    assert summary.output_bytes["DIFF"] > 0.4 * len(synth["full"])
    assert summary.ops.get("COPYOUT", 0) >= 1  # the embedding shared by both model files


@pytest.mark.parametrize("seed", range(12))
def test_randomized_edits_round_trip(seed: int) -> None:
    """Random bytes with random block edits (insert, delete, replace, move, duplicate)."""
    rnd = random.Random(seed)
    size = rnd.choice([0, 1, 700, 40_000, 300_000])
    old = bytearray(rnd.randbytes(size // 2) + bytes(size - size // 2))
    new = bytearray(old)
    for _ in range(rnd.randint(0, 8)):
        pos = rnd.randint(0, len(new))
        n = rnd.randint(1, 5000)
        edit = rnd.choice(["insert", "delete", "replace", "move", "dup"])
        if edit == "insert":
            new[pos:pos] = rnd.randbytes(n)
        elif edit == "delete":
            del new[pos:pos + n]
        elif edit == "replace":
            new[pos:pos + n] = rnd.randbytes(min(n, len(new) - pos))
        else:
            chunk = new[pos:pos + n]
            if edit == "move":
                del new[pos:pos + n]
            at = rnd.randint(0, len(new))
            new[at:at] = chunk
    old_b, new_b = bytes(old), bytes(new)
    assert build_tensor_delta(old_b, new_b, LEVEL) is None  # not bundles
    delta = build_delta(old_b, new_b, LEVEL)
    verify_delta(old_b, new_b, delta)
    if old_b == new_b and old_b:
        assert len(delta) < 150


@pytest.mark.parametrize("seed", range(6))
def test_randomized_bundles_round_trip(seed: int) -> None:
    rnd = random.Random(seed)
    tensors = dict(BASE)
    for name in list(tensors):
        roll = rnd.random()
        if roll < 0.3:
            tensors[name] = nudged(tensors[name], seed)
        elif roll < 0.4:
            del tensors[name]
        elif roll < 0.5:
            tensors[f"{name}.v2"] = tensors.pop(name)
    old = custom_bundle(files_of(BASE), 1)
    new = custom_bundle(files_of(tensors), 2)
    verify_delta(old, new, build_delta(old, new, LEVEL))


def test_generic_fallback_chosen_when_smaller() -> None:
    """Two big tensors swapped (and touched): the names mislead the tensor-aware form,
    the generic form finds the bytes 2 MiB away."""
    rng = np.random.default_rng(9)
    a, b = (rng.integers(-128, 128, 2 << 20).astype(np.int8) for _ in range(2))
    old = custom_bundle({"model.onnx": [("a", a), ("b", b)]}, 1)
    b2, a2 = b.copy(), a.copy()
    b2[0] += 1
    a2[-1] += 1
    new = custom_bundle({"model.onnx": [("a", b2), ("b", a2)]}, 2)
    aware, generic = build_tensor_delta(old, new, 1), build_generic_delta(old, new, 1)
    assert aware is not None and len(generic) < len(aware) / 10
    chosen = build_delta(old, new, 1)
    assert chosen == generic
    verify_delta(old, new, chosen)


def test_generic_reuses_bytes_written_earlier() -> None:
    """Without tensor ranges, a second copy of new weights is still sent once."""
    rnd = random.Random(3)
    old, fresh = rnd.randbytes(300_000), rnd.randbytes(200_000)
    new = old[:50_000] + fresh + old[60_000:100_000] + fresh
    delta = build_generic_delta(old, new, LEVEL)
    verify_delta(old, new, delta)
    summary = describe_delta(io.BytesIO(delta))
    assert summary.output_bytes["COPYOUT"] >= 190_000
    assert len(delta) < 210_000
    periodic = rnd.randbytes(1000) * 300  # copies of what was written just before
    delta = build_generic_delta(old, periodic, LEVEL)
    verify_delta(old, periodic, delta)
    assert len(delta) < 2000


def test_choose_delta_respects_the_threshold(synth: dict[str, bytes]) -> None:
    old, new = synth["base"], synth["full"]
    size = len(build_delta(old, new, LEVEL))
    assert choose_delta(old, new, 0.5 * size / len(new), LEVEL) is None
    delta = choose_delta(old, new, 2 * size / len(new), LEVEL)
    assert delta is not None and len(delta) == size
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="max_fraction"):
            choose_delta(old, new, bad, LEVEL)


def test_deterministic(synth: dict[str, bytes]) -> None:
    assert build_delta(synth["base"], synth["full"], LEVEL) == build_delta(
        synth["base"], synth["full"], LEVEL)


def test_verify_delta_catches_the_wrong_target(synth: dict[str, bytes]) -> None:
    delta = build_delta(synth["base"], synth["head"], LEVEL)
    with pytest.raises(DeltaError, match="not the expected"):
        verify_delta(synth["base"], synth["full"], delta)


def test_layout_ignores_lying_manifest_ranges(synth: dict[str, bytes]) -> None:
    layout = bundle_layout(synth["base"])
    assert layout is not None
    starts = [t.start for t in layout.tensors]
    assert starts == sorted(starts)
    assert all(t.end <= u.start for t, u in zip(layout.tensors, layout.tensors[1:],
                                                strict=False))
    assert bundle_layout(b"not a tar at all" * 100) is None


def test_real_nanomodel_head_only_fine_tune(tmp_path: Path) -> None:
    """The shipped model, fine-tuned with --head-only on new lines: a tiny delta."""
    from benchmarks.delta_size import real_bundles

    bundles = real_bundles(kinds=("head_only",))
    old, new = bundles["base"], bundles["head_only"]
    delta = choose_delta(old, new, 0.05)
    assert delta is not None, "head-only delta over 5% of the bundle"
    (tmp_path / "v1.nfb").write_bytes(old)
    (tmp_path / "v1-v2.nfd").write_bytes(delta)
    apply_delta(tmp_path / "v1.nfb", tmp_path / "v1-v2.nfd", tmp_path / "v2.nfb",
                hashlib.sha256(new).hexdigest(), len(new))
    assert (tmp_path / "v2.nfb").read_bytes() == new
