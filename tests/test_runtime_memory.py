"""Runtime settings chosen for the agent's resident memory (docs/operations.md, "RSS"):
what each one does, on the shipped model with the real runtimes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from agent import default_bundle_path
from agent.featurizer import Featurizer
from agent.runtime.litert import LiteRtRuntime
from agent.runtime.onnx import OnnxRuntime, session_options
from contract.bundle import Bundle, load_bundle


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return load_bundle(default_bundle_path())


@pytest.fixture(scope="module")
def features(bundle: Bundle) -> np.ndarray:
    texts = [g.text for g in bundle.manifest.golden]
    texts += [f"pumpd[{i}]: cycle complete, flow={i / 7:.1f} l/min" for i in range(64)]
    return Featurizer(bundle.manifest.tokenizer).transform(texts)


def _ops(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def test_onnx_weights_are_dequantized_once_at_load(bundle: Bundle, features: np.ndarray,
                                                   tmp_path: Path) -> None:
    """The shipped graph dequantizes its int8 weights (DequantizeLinear); the agent's
    session folds that into float weights at load, so no run does it again, and the
    outputs are those of the unfolded graph (a one-line batch runs another kernel path:
    equal to float32 rounding, a few units in the last place)."""
    model = bundle.model_bytes("onnx")
    assert _ops_of_bytes(model).count("DequantizeLinear") == 2

    folded = session_options()
    folded.optimized_model_filepath = str(tmp_path / "folded.onnx")
    unfolded = session_options()
    unfolded.add_session_config_entry("session.disable_quant_qdq", "0")
    unfolded.optimized_model_filepath = str(tmp_path / "unfolded.onnx")
    a = ort.InferenceSession(model, sess_options=folded, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(model, sess_options=unfolded, providers=["CPUExecutionProvider"])
    assert "DequantizeLinear" not in _ops(tmp_path / "folded.onnx")
    assert _ops(tmp_path / "unfolded.onnx").count("DequantizeLinear") == 2  # the check sees it

    runtime = OnnxRuntime(model)
    for batch in (features[:1], features[:20], features):
        ours = runtime.run(batch)
        plain = b.run(None, {"features": batch})
        direct = a.run(None, {"features": batch})
        for x, y, z in zip(ours, plain, direct, strict=True):
            assert np.array_equal(x, z)
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-9)


def _ops_of_bytes(model: bytes) -> list[str]:
    return [node.op_type for node in onnx.load_from_string(model).graph.node]


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.parametrize("runtime", [OnnxRuntime, LiteRtRuntime])
def test_one_thread_runtime_starts_no_pool(bundle: Bundle, features: np.ndarray,
                                           runtime: type[OnnxRuntime] | type[LiteRtRuntime]
                                           ) -> None:
    """threads=1 (the agent's setting) runs the model on the calling thread: no pool
    threads, whose stacks and per-thread buffers would be resident for nothing."""
    before = _threads()
    r = runtime(bundle.model_bytes(runtime.format), threads=1)
    r.run(features)
    assert _threads() == before
    r.close()
    many = runtime(bundle.model_bytes(runtime.format), threads=3)
    many.run(features)
    assert _threads() > before  # the count sees a pool when there is one
    many.close()
