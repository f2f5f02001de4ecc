"""Model <-> bundle: export to both formats, record tensor byte ranges, pack; and back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

import nanomodel
from contract.bundle import (
    Bundle,
    BundleError,
    BundleManifest,
    GoldenVector,
    TensorSignature,
    TokenizerSpec,
    file_entry,
    pack_bundle,
)
from contract.bundle_features import BundleLevelOffsets
from nanomodel.export_onnx import INPUT_NAME, OUTPUT_NAMES, export_onnx, read_onnx_tensors
from nanomodel.export_onnx import tensor_ranges as onnx_ranges
from nanomodel.export_tflite import export_tflite
from nanomodel.export_tflite import tensor_ranges as tflite_ranges
from nanomodel.features import Featurizer
from nanomodel.network import (
    ANOMALY_MASK,
    EMBED_B,
    EMBED_S,
    EMBED_W,
    HEAD_B,
    HEAD_W,
    HIDDEN_B,
    HIDDEN_S,
    HIDDEN_W,
    QuantizedBody,
    ShippedModel,
    reference_forward,
)

GOLDEN_ATOL = 2e-3


def build_bundle(model: ShippedModel, *, spec: TokenizerSpec, labels: list[str],
                 normal_label: str, name: str, slot: str, version: int, version_label: str,
                 golden_texts: Sequence[str], evaluation: dict[str, float],
                 formats: Sequence[str] = ("onnx", "tflite"),
                 level_offsets: BundleLevelOffsets | None = None,
                 known_programs: Sequence[str] | None = None) -> bytes:
    """Export ``model`` and pack a deterministic ``.nfb`` bundle; ``level_offsets``: the
    model's own calibration of journald's levels, ``known_programs``: the programs whose
    lines it was trained on, for the manifest (agents since December 2026 read them; older
    ones refuse the bundle, and rollouts skip them)."""
    if model.num_labels != len(labels):
        raise ValueError(f"model has {model.num_labels} outputs for {len(labels)} labels")
    if model.input_width != spec.buckets:
        raise ValueError(f"model input width {model.input_width} != {spec.buckets} buckets")
    files: dict[str, bytes] = {}
    entries = []
    runtimes: dict[Literal["onnx", "tflite"], str] = {}
    if "onnx" in formats:
        data = export_onnx(model)
        files["model.onnx"] = data
        entries.append(file_entry("model.onnx", data, onnx_ranges(data)))
        runtimes["onnx"] = "model.onnx"
    if "tflite" in formats:
        data = export_tflite(model)
        files["model.tflite"] = data
        entries.append(file_entry("model.tflite", data, tflite_ranges(data)))
        runtimes["tflite"] = "model.tflite"
    probs, _ = reference_forward(model, Featurizer(spec).transform(list(golden_texts)))
    golden = [GoldenVector(text=t, expected=[round(float(v), 6) for v in row])
              for t, row in zip(golden_texts, probs, strict=True)]
    k = len(labels)
    manifest = BundleManifest(
        name=name, slot=slot, version=version, version_label=version_label,
        task="text-classification", labels=labels, normal_label=normal_label, tokenizer=spec,
        inputs=[TensorSignature(name=INPUT_NAME, dtype="float32", shape=[None, spec.buckets])],
        outputs=[TensorSignature(name=OUTPUT_NAMES[0], dtype="float32", shape=[None, k]),
                 TensorSignature(name=OUTPUT_NAMES[1], dtype="float32", shape=[None])],
        files=entries, runtimes=runtimes, golden=golden, golden_atol=GOLDEN_ATOL,
        evaluation={key: round(float(v), 6) for key, v in evaluation.items()},
        created_by=f"nanomodel {nanomodel.__version__}", level_offsets=level_offsets,
        known_programs=sorted(set(known_programs)) if known_programs is not None else None)
    return pack_bundle(manifest, files)


def shipped_model(bundle: Bundle) -> ShippedModel:
    """The exact weights inside a bundle (for fine-tuning on top of it)."""
    if "onnx" not in bundle.manifest.runtimes:
        raise BundleError("fine-tuning needs a base bundle with model.onnx")
    t = read_onnx_tensors(bundle.model_bytes("onnx"))
    missing = [n for n in (EMBED_W, EMBED_S, EMBED_B, HIDDEN_W, HIDDEN_S, HIDDEN_B, HEAD_W,
                           HEAD_B, ANOMALY_MASK) if n not in t]
    if missing:
        raise BundleError(f"base model.onnx lacks tensors {missing}: not a nanomodel bundle")
    body = QuantizedBody(t[EMBED_W], np.float32(t[EMBED_S].item()), t[EMBED_B], t[HIDDEN_W],
                         np.float32(t[HIDDEN_S].item()), t[HIDDEN_B])
    return ShippedModel(body, t[HEAD_W], t[HEAD_B], t[ANOMALY_MASK])
