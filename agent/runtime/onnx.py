"""ONNX Runtime backend."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from agent.runtime.base import Runtime, RuntimeUnavailable


def _import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise RuntimeUnavailable(f"onnxruntime is not installed: {exc}") from None
    return ort


def session_options(threads: int = 1) -> Any:
    """The agent's ``onnxruntime.SessionOptions`` (docs/operations.md, "RSS", has the
    figures behind each setting)."""
    ort = _import_ort()
    opts = ort.SessionOptions()
    # One device core each: intra-op threads would fight the pipeline thread. With one
    # thread ONNX Runtime starts no pool threads at all.
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # The CPU arena keeps one pool sized by the largest batch and reuses it: ~2 MB
    # less steady RSS than malloc/free per run, whose freed chunks scatter over
    # glibc's thread arena (docs/operations.md). It goes with the session; the
    # release after a swap (malloc_trim) keeps RSS flat over swaps (docs/updates.md).
    opts.enable_cpu_mem_arena = True
    # Basic graph rewrites only (constant folding, redundant nodes): the extended and
    # layout ones cost ~1 MB of resident memory and gain nothing measurable on the
    # nano model (same outputs, same run time; docs/operations.md).
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    # Constant folding also folds the int8 weights' DequantizeLinear (by default it is
    # kept for QDQ fusions, which the basic level does not do): the float weights are
    # made once at load instead of into the arena at every run. Same outputs (a one-line
    # batch takes another kernel path: equal to float32 rounding); runs ~2x faster; the
    # arena no longer holds a 1 MB weight copy (tests/test_runtime_memory.py,
    # docs/operations.md).
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    opts.log_severity_level = 3
    return opts


class OnnxRuntime(Runtime):
    name: ClassVar[str] = "onnxruntime"
    format: ClassVar[Literal["onnx", "tflite"]] = "onnx"

    def __init__(self, model: bytes, threads: int = 1) -> None:
        ort = _import_ort()
        self._session: Any = ort.InferenceSession(
            model, sess_options=session_options(threads), providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]

    def run(self, features: np.ndarray) -> list[np.ndarray]:
        outs = self._session.run(self._outputs, {self._input: features})
        return [np.asarray(o) for o in outs]

    def close(self) -> None:
        self._session = None
