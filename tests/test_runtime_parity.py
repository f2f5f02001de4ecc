"""ONNX Runtime and LiteRT give the same answers; the registry falls back when one is missing."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from agent.model import LoadedModel
from agent.runtime.registry import load_runtime, runtime_order
from contract.bundle import (
    Bundle,
    file_entry,
    load_bundle,
    manifest_bytes,
    pack_bundle,
    read_bundle,
)
from nanomodel import default_bundle_path
from nanomodel.corpus import HELDOUT_STYLES, STYLES, generate
from nanomodel.network import reference_forward
from nanomodel.pack import shipped_model

PARITY_ATOL = 1e-5


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return load_bundle(default_bundle_path())


def test_both_runtimes_pass_the_golden_vectors(bundle: Bundle) -> None:
    for name in ("onnxruntime", "litert"):
        model = LoadedModel.from_bundle(bundle, name)
        try:
            assert model.runtime_name == name
            model.smoke_test()
        finally:
            model.close()


@pytest.mark.parametrize("batch", [1, 7, 64, 3])
def test_runtimes_agree_with_each_other_and_numpy(bundle: Bundle, batch: int) -> None:
    texts = [g.text for g in bundle.manifest.golden]
    texts += [e.text for e in generate(200, 21, list(STYLES))]
    onnx_model = LoadedModel.from_bundle(bundle, "onnxruntime")
    lite_model = LoadedModel.from_bundle(bundle, "litert")
    ref_probs, ref_anomaly = reference_forward(shipped_model(bundle),
                                               onnx_model.featurizer.transform(texts))
    try:
        for start in range(0, len(texts), batch):
            chunk = texts[start : start + batch]
            p1, a1 = onnx_model.classify(chunk)
            p2, a2 = lite_model.classify(chunk)
            assert p1.shape == p2.shape == (len(chunk), len(bundle.manifest.labels))
            assert a1.shape == a2.shape == (len(chunk),)
            np.testing.assert_allclose(p1, p2, atol=PARITY_ATOL)
            np.testing.assert_allclose(a1, a2, atol=PARITY_ATOL)
            np.testing.assert_allclose(p1, ref_probs[start : start + batch], atol=PARITY_ATOL)
            np.testing.assert_allclose(a1, ref_anomaly[start : start + batch], atol=PARITY_ATOL)
    finally:
        onnx_model.close()
        lite_model.close()


def test_anomaly_is_the_probability_mass_off_normal(bundle: Bundle) -> None:
    model = LoadedModel.from_bundle(bundle, "litert")
    try:
        probs, anomaly = model.classify([e.text for e in generate(50, 8, HELDOUT_STYLES)])
        np.testing.assert_allclose(anomaly, 1.0 - probs[:, model.normal_index], atol=1e-5)
        assert np.all((anomaly >= 0) & (anomaly <= 1 + 1e-6))
    finally:
        model.close()


def _without(bundle: Bundle, fmt: str) -> Bundle:
    """The same model with one format removed (as an operator could ship it)."""
    m = bundle.manifest
    keep = {p: d for p, d in bundle.files.items() if p != m.runtimes[fmt]}  # type: ignore[index]
    manifest = m.model_copy(update={
        "files": [f for f in m.files if f.path in keep],
        "runtimes": {k: v for k, v in m.runtimes.items() if k != fmt}})
    return read_bundle(pack_bundle(manifest, keep))


def test_registry_falls_back_when_the_bundle_lacks_the_format(
        bundle: Bundle, caplog: pytest.LogCaptureFixture) -> None:
    onnx_only = _without(bundle, "tflite")
    with caplog.at_level(logging.WARNING, logger="nanofleet.agent.runtime"):
        runtime = load_runtime("litert", onnx_only, 1)
    assert runtime.name == "onnxruntime"
    assert "falling back to onnxruntime" in caplog.text
    assert "bundle has no tflite model" in caplog.text
    tflite_only = _without(bundle, "onnx")
    model = LoadedModel.from_bundle(tflite_only, "onnxruntime")
    assert model.runtime_name == "litert"
    model.smoke_test()


def test_registry_rejects_unknown_names(bundle: Bundle) -> None:
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        load_runtime("tensorrt", bundle, 1)
    assert runtime_order("litert") == ["litert", "onnxruntime"]


def test_missing_litert_packages_fall_back_or_fail_clearly(bundle: Bundle,
                                                          tmp_path: Path) -> None:
    """A device where neither LiteRT package is importable: a child interpreter in
    which those imports genuinely fail asks for LiteRT."""
    tflite_only = _without(bundle, "onnx")
    tflite_path = tmp_path / "tflite-only.nfb"
    tflite_path.write_bytes(pack_bundle(tflite_only.manifest, tflite_only.files))
    script = textwrap.dedent(f"""
        import sys
        for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
                     "tflite_runtime.interpreter"):
            sys.modules[name] = None  # import now raises ImportError
        from pathlib import Path
        from agent.model import LoadedModel
        from agent.runtime.base import RuntimeUnavailable
        model = LoadedModel.load(Path({str(default_bundle_path())!r}), "litert")
        print("FALLBACK:", model.runtime_name)
        try:
            LoadedModel.load(Path({str(tflite_path)!r}), "litert")
        except RuntimeUnavailable as exc:
            print("UNAVAILABLE:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True)
    assert "FALLBACK: onnxruntime" in out.stdout
    assert "runtime litert unavailable" in out.stderr
    assert "neither ai-edge-litert nor tflite-runtime is installed" in out.stderr
    assert "UNAVAILABLE: no usable runtime for this bundle" in out.stdout


def test_manifest_round_trip_is_stable(bundle: Bundle) -> None:
    again = read_bundle(pack_bundle(bundle.manifest, bundle.files))
    assert manifest_bytes(again.manifest) == manifest_bytes(bundle.manifest)
    assert file_entry("model.onnx", bundle.files["model.onnx"]).sha256 == \
        bundle.manifest.file("model.onnx").sha256
