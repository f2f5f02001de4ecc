"""The runtime plug-in interface: run one model file on a feature batch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import numpy as np


class RuntimeUnavailable(RuntimeError):
    """The runtime's Python package is not installed on this device."""


class Runtime(ABC):
    """Executes a model in one format. Instances are not shared between threads
    while running; the pipeline owns one per live model."""

    name: ClassVar[str]
    format: ClassVar[Literal["onnx", "tflite"]]

    @abstractmethod
    def __init__(self, model: bytes, threads: int = 1) -> None:
        """Load ``model`` (already hash-verified bytes)."""

    @abstractmethod
    def run(self, features: np.ndarray) -> list[np.ndarray]:
        """Run a float32 batch ``[B, F]``; return the outputs in manifest order
        (first: probabilities ``[B, K]``)."""

    def close(self) -> None:  # noqa: B027 - optional hook, most runtimes need nothing
        """Release native resources."""
