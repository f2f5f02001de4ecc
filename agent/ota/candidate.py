"""Load and smoke-test an installed candidate bundle next to the live model.

Apart from the engine so the checks a candidate must pass before it serves a single
line read in one place: the file's hash again, that it is the model, version and slot
that was signed, that its labels keep the live model's meaning, and one inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.memory import release_freed_memory
from agent.metrics import resident_bytes
from agent.model import LoadedModel
from agent.ota.config import TrialConfig
from agent.ota.health import memory_failure, memory_growth_mb
from agent.ota.policy import labels_refusal
from agent.ota.record import InstalledRef, UpdateTarget
from agent.ota.state import Failed
from agent.ota.trial import ServingModel, release_model
from contract.reasons import OtaReason


@dataclass(frozen=True)
class Candidate:
    """A smoke-tested candidate and the agent's resident bytes just before it loaded
    (None without /proc): the trial measures the memory it takes from there."""

    model: LoadedModel
    memory_baseline: float | None


def load_candidate(path: Path, ref: InstalledRef, target: UpdateTarget, live: ServingModel,
                   runtime: str, threads: int, trial: TrialConfig) -> Candidate | Failed:
    """The smoke-tested candidate, or why it is refused (its model released)."""
    # What the download and the delta left behind is not the model's: handed back first.
    release_freed_memory()
    baseline = resident_bytes()
    loaded = _load_and_test(path, ref, target, live, runtime, threads)
    if isinstance(loaded, Failed):
        return loaded
    # Loaded and run once on the golden lines: a model whose graph takes hundreds of MiB
    # is refused here, before it serves a line.
    m = loaded.manifest
    heavy = memory_failure(memory_growth_mb(baseline, resident_bytes()), trial,
                           f"loading {m.name} v{m.version} and running its smoke test")
    if heavy is not None:
        release_model(loaded)
        return Failed(OtaReason.HEALTH_MEMORY, heavy.detail)
    return Candidate(loaded, baseline)


def _load_and_test(path: Path, ref: InstalledRef, target: UpdateTarget, live: ServingModel,
                   runtime: str, threads: int) -> LoadedModel | Failed:
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
    except Exception as exc:
        release_model(model)
        return Failed(OtaReason.SMOKE_TEST_FAILED,
                      f"{m.name} v{m.version} on {model.runtime_name}: {exc}")
    return model
