"""A loaded model: verified bundle + its feature extractor + a runtime.

This is what the pipeline classifies with and what an OTA hot-swap builds, smoke
tests and then swaps in. ``classify`` is serialised by a lock, so the pipeline
and a technician's query can share one model (a LiteRT interpreter must not
run on two threads at once).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from agent.explain import NanoWeights, top_words
from agent.featurizer import Featurizer
from agent.runtime.base import Runtime
from agent.runtime.registry import load_runtime
from contract.bundle import Bundle, BundleManifest, load_bundle

_SANITY_LINE = "nanofleet smoke test line"


class ModelError(RuntimeError):
    """The model produced output of the wrong shape or non-finite values."""


class SmokeTestFailed(ModelError):
    """The model's outputs do not match the bundle's golden vectors."""


class LoadedModel:
    """Use :meth:`load` (from a file) or :meth:`from_bundle` (already verified bytes)."""

    def __init__(self, bundle: Bundle, runtime: Runtime) -> None:
        self.bundle = bundle
        self.manifest: BundleManifest = bundle.manifest
        self.bundle_sha256: str = bundle.sha256
        self.labels: list[str] = list(bundle.manifest.labels)
        self.normal_index = self.labels.index(bundle.manifest.normal_label)
        self.runtime = runtime
        self.runtime_name: str = runtime.name
        self.featurizer = Featurizer(bundle.manifest.tokenizer)
        self._lock = threading.Lock()
        self._weights: NanoWeights | None = None

    @classmethod
    def load(cls, bundle_path: Path, runtime: str = "onnxruntime", threads: int = 1,
             expected_sha256: str | None = None) -> LoadedModel:
        """Read and verify a ``.nfb`` file, then load it (falls back to the other
        runtime with a warning if ``runtime`` is not installed)."""
        return cls.from_bundle(load_bundle(Path(bundle_path), expected_sha256), runtime, threads)

    @classmethod
    def from_bundle(cls, bundle: Bundle, runtime: str = "onnxruntime",
                    threads: int = 1) -> LoadedModel:
        return cls(bundle, load_runtime(runtime, bundle, threads))

    def classify(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities [B, K] float32, anomaly [B] float32)`` for ``texts``."""
        k = len(self.labels)
        if not texts:
            return np.zeros((0, k), np.float32), np.zeros(0, np.float32)
        features = self.featurizer.transform(texts)
        with self._lock:
            outputs = self.runtime.run(features)
        probs = np.asarray(outputs[0], dtype=np.float32)
        if probs.shape != (len(texts), k):
            raise ModelError(f"model returned probabilities of shape {probs.shape}, "
                             f"expected {(len(texts), k)}")
        if len(outputs) > 1:
            anomaly = np.asarray(outputs[1], dtype=np.float32).reshape(len(texts))
        else:
            anomaly = (1.0 - probs[:, self.normal_index]).astype(np.float32)
        return probs, anomaly

    def explain(self, texts: list[str], top: int = 5) -> list[list[dict[str, float | str]]]:
        """Per line, the ``top`` words that drove its anomaly score (see
        :mod:`agent.explain`); raises :class:`agent.explain.NotExplainable` for a
        bundle whose model is not the nano network."""
        if self._weights is None:
            self._weights = NanoWeights.from_bundle(self.bundle)
        return [top_words(self.featurizer, self._weights, t, top) for t in texts]

    def smoke_test(self) -> None:
        """Run the golden vectors; raise :class:`SmokeTestFailed` naming the first
        mismatch. Also checks outputs are finite probabilities."""
        golden = self.manifest.golden
        texts = [g.text for g in golden] or [_SANITY_LINE]
        probs, anomaly = self.classify(texts)
        if not (np.all(np.isfinite(probs)) and np.all(np.isfinite(anomaly))):
            raise SmokeTestFailed("model produced non-finite outputs")
        sums = probs.sum(axis=1)
        if np.any(np.abs(sums - 1.0) > 1e-3):
            raise SmokeTestFailed(f"probabilities do not sum to 1 (sums {sums.min():.4f}.."
                                  f"{sums.max():.4f})")
        atol = self.manifest.golden_atol
        for i, g in enumerate(golden):
            diff = np.abs(probs[i] - np.asarray(g.expected, dtype=np.float32))
            worst = int(diff.argmax())
            if diff[worst] > atol:
                raise SmokeTestFailed(
                    f"golden vector {i} ({g.text[:40]!r}) differs on label "
                    f"{self.labels[worst]!r}: got {probs[i, worst]:.5f}, expected "
                    f"{g.expected[worst]:.5f} (tolerance {atol}) with runtime "
                    f"{self.runtime_name}")

    def close(self) -> None:
        with self._lock:
            self.runtime.close()
