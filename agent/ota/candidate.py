"""Load and smoke-test an installed candidate bundle next to the live model.

Apart from the engine so the checks a candidate must pass before it serves a single
line read in one place: the file's hash again, that it is the model, version and slot
that was signed, that its labels keep the live model's meaning, and one inference.
"""

from __future__ import annotations

from pathlib import Path

from agent.model import LoadedModel
from agent.ota.policy import labels_refusal
from agent.ota.record import InstalledRef, UpdateTarget
from agent.ota.state import Failed
from agent.ota.trial import ServingModel, release_model
from contract.reasons import OtaReason


def load_candidate(path: Path, ref: InstalledRef, target: UpdateTarget, live: ServingModel,
                   runtime: str, threads: int) -> LoadedModel | Failed:
    """The smoke-tested candidate, or why it is refused (its model released)."""
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
