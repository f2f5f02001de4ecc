"""Realistic synthetic model bundles for the delta benchmark and tests.

The nano model's shape (hashed n-gram embedding -> hidden -> head over 9 labels,
int8 weights with float32 scales and biases), packed with
:func:`contract.bundle.pack_bundle` into two structurally faithful model files:
``model.onnx`` (protobuf-like records, weights ``[in, out]``) and
``model.tflite`` (flatbuffer-like offset table, 16-byte aligned buffers,
fully-connected weights transposed to ``[out, in]``). Each tensor's byte range
is recorded in the manifest with :class:`contract.bundle.TensorInfo`, exactly
as the real exporter must do.

The three update kinds of the benchmark are simulated on the float weights
and then re-quantized, the way a real release pipeline produces them:
``head_only`` (only the head moves), ``full`` (every weight moves a little),
``requantize`` (same floats, per-channel instead of per-tensor scales).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

import numpy as np

from contract.bundle import (
    BundleManifest,
    GoldenVector,
    TensorInfo,
    TensorSignature,
    TokenizerSpec,
    file_entry,
    pack_bundle,
)

LABELS = ["normal", "auth", "disk", "network", "memory", "kernel", "service", "hardware",
          "security"]
LAYERS = ("embedding", "hidden", "head")


@dataclass
class SynthModel:
    """Float weights (``[in, out]``) and biases of the nano model, plus how to quantize."""

    weights: dict[str, np.ndarray]
    biases: dict[str, np.ndarray]
    per_channel: bool = False
    version: int = 1
    seed: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def make_model(seed: int = 0, buckets: int = 4096, embed: int = 64, hidden: int = 64) -> SynthModel:
    rng = np.random.default_rng(seed)
    weights = {
        "embedding": rng.normal(0, 0.08, (buckets, embed)).astype(np.float32),
        "hidden": rng.normal(0, 0.15, (embed, hidden)).astype(np.float32),
        "head": rng.normal(0, 0.2, (hidden, len(LABELS))).astype(np.float32),
    }
    biases = {
        "hidden": rng.normal(0, 0.05, hidden).astype(np.float32),
        "head": rng.normal(0, 0.05, len(LABELS)).astype(np.float32),
    }
    return SynthModel(weights, biases, seed=seed)


def _moved(model: SynthModel, layers: tuple[str, ...], step: float, seed: int) -> SynthModel:
    rng = np.random.default_rng(seed)
    weights = dict(model.weights)
    biases = dict(model.biases)
    for name in layers:
        w = weights[name]
        weights[name] = (w + rng.normal(0, step * float(w.std()), w.shape)).astype(np.float32)
        if name in biases:
            b = biases[name]
            biases[name] = (b + rng.normal(0, step * 0.05, b.shape)).astype(np.float32)
    return replace(model, weights=weights, biases=biases, version=model.version + 1, seed=seed)


def head_only(model: SynthModel, seed: int = 1) -> SynthModel:
    """A head-only fine-tune: embedding and hidden layers frozen."""
    return _moved(model, ("head",), 0.3, seed)


def full_fine_tune(model: SynthModel, seed: int = 2) -> SynthModel:
    """Every weight moves a little (a few epochs at a small learning rate)."""
    return _moved(model, LAYERS, 0.05, seed)


def requantize(model: SynthModel) -> SynthModel:
    """Same float weights, per-channel scales instead of one per tensor."""
    return replace(model, per_channel=not model.per_channel, version=model.version + 1)


def _quantize(w: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8; per-channel means one scale per output column."""
    peak = np.abs(w).max(axis=0) if per_channel else np.array([np.abs(w).max()])
    scale = (np.maximum(peak, 1e-8) / 127.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def _tensors(model: SynthModel, transpose_fc: bool) -> list[tuple[str, np.ndarray]]:
    out: list[tuple[str, np.ndarray]] = []
    for name in LAYERS:
        q, scale = _quantize(model.weights[name], model.per_channel)
        if transpose_fc and name != "embedding":
            q = np.ascontiguousarray(q.T)
        out.append((f"{name}.weight", q))
        out.append((f"{name}.scale", scale))
        if name in model.biases:
            out.append((f"{name}.bias", model.biases[name]))
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


_DTYPE_CODE = {"int8": 3, "float32": 1}


def onnx_like(model: SynthModel) -> tuple[bytes, list[TensorInfo]]:
    """Protobuf-shaped: header, one record per initializer (raw_data inline), then nodes."""
    buf = bytearray(b"\x08\x08\x12\x09nanofleet\x1a\x050.1.0:")
    infos: list[TensorInfo] = []
    for name, arr in _tensors(model, transpose_fc=False):
        dims = b"".join(b"\x08" + _varint(d) for d in arr.shape)
        head = dims + b"\x10" + bytes([_DTYPE_CODE[str(arr.dtype)]]) + b"\x42" + \
            _varint(len(name)) + name.encode() + b"\x4a" + _varint(arr.nbytes)
        buf += b"\x8a\x01" + _varint(len(head) + arr.nbytes) + head
        infos.append(TensorInfo(name=name, dtype=str(arr.dtype), shape=list(arr.shape),
                                offset=len(buf), length=arr.nbytes))
        buf += arr.tobytes()
    for i, op in enumerate(["Gather", "ReduceMean", "DequantizeLinear", "MatMul", "Add", "Relu",
                            "DequantizeLinear", "MatMul", "Add", "Softmax"]):
        node = f"node_{i}:{op}:in_{i}:out_{i}".encode()
        buf += b"\x0a" + _varint(len(node)) + node
    meta = f"version={model.version};seed={model.seed}".encode()
    buf += b"\x72" + _varint(len(meta)) + meta
    return bytes(buf), infos


def tflite_like(model: SynthModel) -> tuple[bytes, list[TensorInfo]]:
    """Flatbuffer-shaped: offset table up front, then 16-byte aligned buffers in reverse order."""
    tensors = list(reversed(_tensors(model, transpose_fc=True)))
    table_size = 16 + 48 * len(tensors)
    layout: list[tuple[str, np.ndarray, int]] = []
    offset = table_size
    for name, arr in tensors:
        offset = (offset + 15) & ~15
        layout.append((name, arr, offset))
        offset += arr.nbytes
    buf = bytearray(b"\x1c\x00\x00\x00TFL3" + struct.pack("<II", 3, len(tensors)))
    for name, arr, off in layout:
        shape = list(arr.shape) + [0] * (2 - arr.ndim)
        buf += struct.pack("<24sIIII", name.encode(), off, arr.nbytes, *shape) + \
            struct.pack("<II", _DTYPE_CODE[str(arr.dtype)], 0)
    infos: list[TensorInfo] = []
    for name, arr, off in layout:
        buf += b"\x00" * (off - len(buf))
        infos.append(TensorInfo(name=name, dtype=str(arr.dtype), shape=list(arr.shape),
                                offset=off, length=arr.nbytes))
        buf += arr.tobytes()
    buf += f"\x00min_runtime=2.3;version={model.version}".encode()
    return bytes(buf), infos


def pack(model: SynthModel) -> bytes:
    """The model as a bundle, with golden vectors and figures that change per version."""
    rng = np.random.default_rng(1000 + model.seed + model.version)
    onnx_data, onnx_tensors = onnx_like(model)
    tflite_data, tflite_tensors = tflite_like(model)
    files = {"model.onnx": onnx_data, "model.tflite": tflite_data}
    golden = []
    for i in range(6):
        p = rng.dirichlet(np.ones(len(LABELS)))
        golden.append(GoldenVector(text=f"sample line {i}: sshd failed password for root",
                                   expected=[round(float(x), 6) for x in p]))
    buckets = model.weights["embedding"].shape[0]
    manifest = BundleManifest(
        name="nano-logs", slot="logs", version=model.version,
        version_label=f"2026.{model.version:02d}", task="text-classification",
        labels=LABELS, normal_label="normal",
        tokenizer=TokenizerSpec(kind="hashed-ngrams-v1", buckets=buckets, char_ngrams=[3, 4],
                                word_ngrams=[1, 2]),
        inputs=[TensorSignature(name="features", dtype="float32", shape=[None, buckets])],
        outputs=[TensorSignature(name="probs", dtype="float32", shape=[None, len(LABELS)])],
        files=[file_entry("model.onnx", onnx_data, onnx_tensors),
               file_entry("model.tflite", tflite_data, tflite_tensors)],
        runtimes={"onnx": "model.onnx", "tflite": "model.tflite"},
        golden=golden, evaluation={"macro_f1": round(0.8 + 0.01 * model.version, 4)},
        created_by="benchmarks.synthetic_bundles",
    )
    return pack_bundle(manifest, files)
