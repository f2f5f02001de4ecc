"""ONNX Runtime backend."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from agent.runtime.base import Runtime, RuntimeUnavailable


class OnnxRuntime(Runtime):
    name: ClassVar[str] = "onnxruntime"
    format: ClassVar[Literal["onnx", "tflite"]] = "onnx"

    def __init__(self, model: bytes, threads: int = 1) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailable(f"onnxruntime is not installed: {exc}") from None
        opts = ort.SessionOptions()
        # One device core each: intra-op threads would fight the pipeline thread.
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
        opts.log_severity_level = 3
        self._session: Any = ort.InferenceSession(
            model, sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]

    def run(self, features: np.ndarray) -> list[np.ndarray]:
        outs = self._session.run(self._outputs, {self._input: features})
        return [np.asarray(o) for o in outs]

    def close(self) -> None:
        self._session = None
