"""LiteRT backend: ``ai_edge_litert`` (numpy 2), falling back to ``tflite_runtime``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np

from agent.runtime.base import Runtime, RuntimeUnavailable


def interpreter_class() -> Any:
    """LiteRT's Interpreter class, or tflite_runtime's when only that is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as first:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise RuntimeUnavailable(
                f"neither ai-edge-litert nor tflite-runtime is installed: {first}") from None
    return Interpreter


class LiteRtRuntime(Runtime):
    name: ClassVar[str] = "litert"
    format: ClassVar[Literal["onnx", "tflite"]] = "tflite"

    def __init__(self, model: bytes, threads: int = 1) -> None:
        interpreter = interpreter_class()
        # Keep a reference: the interpreter reads the flatbuffer in place.
        self._model = model
        self._interp: Any = interpreter(model_content=model, num_threads=threads)
        self._input = self._interp.get_input_details()[0]
        self._outputs = [d["index"] for d in self._interp.get_output_details()]
        self._batch = -1

    def run(self, features: np.ndarray) -> list[np.ndarray]:
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.shape[0] != self._batch:
            # The graph has a dynamic batch dimension; resizing re-plans memory.
            self._interp.resize_tensor_input(self._input["index"], list(features.shape))
            self._interp.allocate_tensors()
            self._batch = features.shape[0]
        self._interp.set_tensor(self._input["index"], features)
        self._interp.invoke()
        return [np.array(self._interp.get_tensor(i)) for i in self._outputs]

    def close(self) -> None:
        self._interp = None
