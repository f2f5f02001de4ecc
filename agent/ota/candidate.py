"""Load and smoke-test an installed candidate bundle next to the live model.

Apart from the engine so the checks a candidate must pass before it serves a single
line read in one place: the file's hash again, that it is the model, version and slot
that was signed, that its labels keep the live model's meaning, and one inference.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from agent.memory import release_freed_memory
from agent.metrics import reset_resident_high_water, resident_bytes, resident_high_water
from agent.model import LoadedModel
from agent.ota.config import TrialConfig
from agent.ota.health import memory_allowance_mb, memory_failure
from agent.ota.policy import labels_refusal
from agent.ota.record import InstalledRef, UpdateTarget
from agent.ota.state import Failed
from agent.ota.trial import MemoryBudget, ServingModel, golden_texts, release_model
from contract.reasons import OtaReason

log = logging.getLogger("nanofleet.agent.ota")


@dataclass(frozen=True)
class Candidate:
    """A smoke-tested candidate and what it may take of the agent's memory."""

    model: LoadedModel
    memory: MemoryBudget


def load_candidate(path: Path, ref: InstalledRef, target: UpdateTarget, live: ServingModel,
                   runtime: str, threads: int, trial: TrialConfig,
                   batch_size: int = 1) -> Candidate | Failed:
    """The smoke-tested candidate, or why it is refused (its model released).
    ``batch_size``: the pipeline's; both models run a batch of it (twice) before the memory
    is judged, so neither the new model's largest batch nor the old one's is first seen live."""
    # What the download and the delta left behind is not the model's: handed back first.
    release_freed_memory()
    peaks = reset_resident_high_water()
    texts = _batch(live, batch_size)
    # The old model's batch memory, which it may take and give back each time, is the
    # device's already: the baseline is its peak. Twice: ONNX Runtime's arena grows again
    # on the second run of a batch and then holds (measured, December 2026).
    try:
        for _ in range(2 if texts else 0):
            live.classify(texts)
    except Exception as exc:  # a warm-up only: the live model's health is not judged here
        log.warning("warming the live model up before the smoke test failed: %s", exc)
    read = resident_high_water if peaks else resident_bytes
    try:
        size = path.stat().st_size
    except OSError:
        size = 0  # _load_and_test says what is wrong with it
    memory = MemoryBudget(read(), memory_allowance_mb(trial, size), read)
    loaded = _load_and_test(path, ref, target, live, runtime, threads, texts)
    if isinstance(loaded, Failed):
        return loaded
    # Loaded, run on its golden lines and on a full batch: a model whose graph takes
    # hundreds of MiB is refused here, before it serves a line.
    m = loaded.manifest
    heavy = memory_failure(memory.grown_mb(), memory.allowed_mb,
                           f"loading {m.name} v{m.version} and running its smoke test")
    if heavy is not None:
        release_model(loaded)
        return Failed(OtaReason.HEALTH_MEMORY, heavy.detail)
    return Candidate(loaded, memory)


def _batch(live: ServingModel, size: int) -> list[str]:
    """``size`` lines from the live model's golden texts (a full batch to warm up on)."""
    golden = golden_texts(live) or ["nanofleet smoke test line"]
    return [golden[i % len(golden)] for i in range(size)] if size > 1 else []


def _load_and_test(path: Path, ref: InstalledRef, target: UpdateTarget, live: ServingModel,
                   runtime: str, threads: int, batch: list[str]) -> LoadedModel | Failed:
    try:
        # expected_sha256: the installed file is hash-checked again before parsing.
        model = LoadedModel.load(path, runtime, threads, expected_sha256=ref.sha256)
    except FileNotFoundError:
        return Failed(OtaReason.CANDIDATE_MISSING, f"{path} disappeared before the smoke test")
    except Exception as exc:
        return Failed(OtaReason.BUNDLE_INVALID, f"{ref.file}: {exc}")
    m, slot = model.manifest, live.manifest.slot
    if (m.name, m.version, m.slot) != (target.model, target.version, slot):
        release_model(model)
        return Failed(OtaReason.WRONG_MODEL,
                      f"{ref.file} contains {m.name} v{m.version} for slot {m.slot!r}, signed "
                      f"as {target.model} v{target.version} for {slot!r}")
    refusal = labels_refusal(live.manifest, m)
    if refusal is not None:
        release_model(model)
        return Failed(OtaReason.LABELS_CHANGED, refusal)
    try:
        model.smoke_test()  # also the warm-up run: a slow first inference is not a hang
        for _ in range(2 if batch else 0):  # the pipeline's batch size, as above
            model.classify(batch)
    except Exception as exc:
        release_model(model)
        return Failed(OtaReason.SMOKE_TEST_FAILED,
                      f"{m.name} v{m.version} on {model.runtime_name}: {exc}")
    return model
