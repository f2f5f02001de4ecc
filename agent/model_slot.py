"""The live model of a slot, and what the agent needs of a loaded model: swapped by the
OTA engine (agent.ota.hot_swap), read once per batch by the pipeline."""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from contract.bundle import BundleManifest


class Model(Protocol):
    """What the pipeline needs of a loaded model (see agent.model.LoadedModel)."""

    manifest: BundleManifest
    runtime_name: str
    bundle_sha256: str

    def classify(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]: ...


class ModelSlot:
    """The live model of a slot. A batch takes the model once and keeps it to the end,
    so a swap never changes the model under a running batch."""

    def __init__(self, name: str, model: Model) -> None:
        self.name = name
        self._model = model
        self._lock = threading.Lock()

    def current(self) -> Model:
        with self._lock:
            return self._model

    def swap(self, model: Model) -> Model:
        with self._lock:
            old, self._model = self._model, model
            return old
