"""A new model that takes too much memory is refused before it goes live or rolled back
during its trial, and its memory is handed back. Real models on ONNX Runtime, the real
process's resident memory, and (last test) the real agent, broker and repository."""

from __future__ import annotations

import hashlib
import mmap
import threading
import time
from pathlib import Path

import pytest

from agent.memory import release_freed_memory
from agent.metrics import reset_resident_high_water, resident_bytes, resident_high_water
from agent.model import LoadedModel
from agent.ota.candidate import Candidate, load_candidate
from agent.ota.config import TrialConfig
from agent.ota.health import (
    TrialStats,
    evaluate,
    memory_allowance_mb,
    memory_failure,
    memory_growth_mb,
)
from agent.ota.record import UpdateTarget
from agent.ota.state import Failed
from agent.ota.store import OtaStore
from agent.ota.trial import MemoryBudget, ObservedModel, release_model, watch_trial
from contract.bundle import read_bundle
from contract.reasons import OtaReason
from hil.models import finetuned, memory_hog, traffic, v1_bundle
from nanomodel import default_bundle_path
from tests.support.mosquitto import Mosquitto
from tests.support.ota_rig import LineWriter, Repo, Reports, make_agent, shuffled

MIB = 1024 * 1024


@pytest.mark.unit
def test_the_allowance_and_its_off_switch() -> None:
    cfg = TrialConfig(max_memory_growth_mb=64)
    assert memory_growth_mb(100 * MIB, 150 * MIB) == 50
    assert memory_growth_mb(None, 150 * MIB) is None  # no /proc: nothing to judge
    # A bigger bundle may take more: four times its size on top.
    assert memory_allowance_mb(cfg, 0) == 64 and memory_allowance_mb(cfg, 10 * MIB) == 104
    assert memory_allowance_mb(TrialConfig(max_memory_growth_mb=0), 10 * MIB) is None
    assert memory_failure(64.0, 64.0, "x") is None
    failed = memory_failure(64.5, 64.0, "during the trial")
    assert failed is not None and failed.reason == OtaReason.HEALTH_MEMORY
    assert "grew by 64.5 MiB during the trial (allowed 64.0 MiB" in failed.detail
    assert memory_failure(None, 64.0, "x") is None and memory_failure(1e6, None, "x") is None
    # The verdict names the growth when healthy, and fails on it like on errors.
    healthy = evaluate(TrialStats(lines=300), None, cfg, timed_out=False, grown_mb=4.2,
                       allowed_mb=64.0)
    assert healthy.healthy and "memory +4.2 MiB" in healthy.detail
    heavy = evaluate(TrialStats(lines=300), None, cfg, timed_out=False, grown_mb=80.0,
                     allowed_mb=64.0)
    assert (heavy.healthy, heavy.reason) == (False, OtaReason.HEALTH_MEMORY)


@pytest.mark.unit
def test_the_peak_sees_memory_taken_and_given_back() -> None:
    if not reset_resident_high_water():
        pytest.skip("this kernel does not let a process reset its peak")
    before = resident_high_water()
    block = mmap.mmap(-1, 64 * MIB)  # touched page by page, then unmapped
    for offset in range(0, 64 * MIB, mmap.PAGESIZE):
        block[offset] = 1
    held = resident_bytes()
    block.close()
    assert before is not None and held is not None
    if held - before < 60 * MIB:
        # Seen once on CI: the process's resident memory did not grow at all, most likely as the
        # kernel reclaimed other pages of it (mapped libraries, model files) as fast as
        # the block was touched. No peak can show what the resident count never held.
        pytest.skip(f"memory pressure: touching 64 MiB grew this process by "
                    f"{(held - before) / MIB:.1f} MiB")
    release_freed_memory()
    after, now = resident_high_water(), resident_bytes()
    assert after is not None and now is not None
    assert after - before > 60 * MIB and after - now > 60 * MIB


def _candidate(tmp_path: Path, data: bytes, version: int, live: LoadedModel,
               cfg: TrialConfig, batch_size: int = 16) -> Candidate | Failed:
    store = OtaStore(tmp_path / "state", "logs")
    download = store.downloads / f"v{version}.nfb"
    download.write_bytes(data)
    ref = store.install(download, "nano-logs", version, hashlib.sha256(data).hexdigest())
    target = UpdateTarget(model="nano-logs", version=version, revision=1)
    return load_candidate(store.path_of(ref), ref, target, live, "onnxruntime", 1, cfg,
                          batch_size)


@pytest.fixture(scope="module")
def bundles() -> dict[str, bytes]:
    return {"tuned": finetuned(2), "heavy": memory_hog(3, 16),
            "heavy_on_batches": memory_hog(4, 4, golden_lines=2)}


# Not in the fast tier: it loads four models and makes ~190 MiB and 64 MiB batches
# (4.5-5.5 s under the suite's load, over the unit budget of 5 s).
def test_a_heavy_model_never_goes_live(tmp_path: Path, bundles: dict[str, bytes]) -> None:
    live = LoadedModel.load(default_bundle_path())
    live.smoke_test()
    cfg = TrialConfig(max_memory_growth_mb=40)
    good = _candidate(tmp_path / "good", bundles["tuned"], 2, live, cfg)
    assert isinstance(good, Candidate), good
    grown = good.memory.grown_mb()
    assert grown is not None and grown < 32  # the shipped network: a few MiB
    release_model(good.model)
    release_freed_memory()
    before = resident_bytes()
    assert before is not None
    # 12 golden lines x 16 MiB: ~190 MiB in the smoke test's one batch.
    heavy = _candidate(tmp_path / "heavy", bundles["heavy"], 3, live, cfg)
    assert isinstance(heavy, Failed) and heavy.reason == OtaReason.HEALTH_MEMORY, heavy
    assert "running its smoke test" in heavy.detail and "nano-logs v3" in heavy.detail
    # Two golden lines (8 MiB) pass; the pipeline's batch of 16 (64 MiB) does not. Before
    # (review, December 2026) a quiet device's trial never ran a full batch, and the model
    # went live to take it on the first busy minute.
    quiet = _candidate(tmp_path / "quiet", bundles["heavy_on_batches"], 4, live, cfg)
    assert isinstance(quiet, Failed) and quiet.reason == OtaReason.HEALTH_MEMORY, quiet
    after = resident_bytes()
    assert after is not None and after - before < 32 * MIB  # handed back
    release_model(live)


@pytest.mark.unit
def test_the_old_models_own_batches_are_not_charged_to_the_new_one(
        tmp_path: Path, bundles: dict[str, bytes]) -> None:
    """Review, December 2026: an old model that had served no full batch yet (a quiet
    device, a trial resumed after a restart) took its batch memory in the trial's
    comparison, and a light replacement for a heavy model was rolled back for it."""
    live = LoadedModel.from_bundle(read_bundle(bundles["heavy_on_batches"]))
    live.smoke_test()  # two lines: cold for a batch of 16 (64 MiB)
    light = _candidate(tmp_path, bundles["tuned"], 2, live,
                       TrialConfig(max_memory_growth_mb=40))
    assert isinstance(light, Candidate), light
    live.classify(traffic(16))  # what the trial's comparison does with the old model
    grown = light.memory.grown_mb()
    assert grown is not None and grown < 32, grown
    release_model(light.model)
    release_model(live)


@pytest.mark.unit
def test_a_model_heavy_on_live_lines_is_rolled_back_during_its_trial() -> None:
    """It passes its smoke test and a full batch of the old model's lines; a live line
    with its trigger word makes a batch take 8 MiB a line."""
    old = LoadedModel.load(default_bundle_path())
    release_freed_memory()
    reset_resident_high_water()
    budget = MemoryBudget(resident_bytes(), 40.0, resident_high_water)
    new = LoadedModel.from_bundle(read_bundle(memory_hog(6, 8, trigger="zzhogzz")))
    new.smoke_test()
    new.classify(traffic(16))
    grown = budget.grown_mb()
    assert grown is not None and grown < 40
    cfg = TrialConfig(duration_s=600, timeout_s=600)
    observed = ObservedModel(new, old, sample_lines=64, prob_sum_tolerance=1e-3)
    stop, rollback, done = threading.Event(), threading.Event(), threading.Event()
    lines = traffic(15) + ["zzhogzz"]

    def serve() -> None:
        while not done.is_set():
            observed.classify(lines)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    guard = threading.Timer(30.0, stop.set)  # no verdict within 30 s: None, and a failure
    guard.start()
    try:
        verdict = watch_trial(observed, old, cfg, started=time.monotonic(), stop=stop,
                              rollback=rollback, batch_size=16, tick_s=0.05, memory=budget)
    finally:
        guard.cancel()
        done.set()
        server.join(10)
    assert verdict is not None and verdict.reason == OtaReason.HEALTH_MEMORY, verdict
    assert "during the trial" in verdict.detail
    assert verdict.figures["memory_growth_mb"] > 40
    observed.retire()
    release_model(new)
    now = memory_growth_mb(budget.baseline, resident_bytes())
    assert now is not None and now < 16  # the candidate's memory went with it
    release_model(old)


def test_the_agent_refuses_or_rolls_back_a_heavy_model_and_keeps_serving(
        tmp_path: Path, broker: Mosquitto) -> None:
    repo = Repo(tmp_path / "tuf")
    repo.publish(v1_bundle())
    repo.publish(memory_hog(2, 16))
    repo.publish(memory_hog(3, 8, trigger="zzhogzz"))
    repo.publish(finetuned(4))
    log = tmp_path / "device.log"
    log.write_text("")
    agent = make_agent(tmp_path, "ota-memory", broker.port, repo, log, duration_s=2.0,
                       min_inferences=20, timeout_s=20.0, max_memory_growth_mb=40)
    reports = Reports(broker.port, "ota-memory")
    # The v3 model blows up on this word only: its smoke test passes, its trial does not.
    writer = LineWriter(log, shuffled(traffic(400) + ["zzhogzz"] * 40),
                        per_second=150).start()
    try:
        agent.start()
        last = 0
        outcomes = {}
        for revision, version in ((1, 2), (2, 3), (3, 4)):
            reports.set_desired(revision, version)
            done = reports.wait_ota(
                lambda e, v=version: e["to_version"] == v
                and e["state"] in ("committed", "failed", "rolled_back"), after=last)
            last = done["seq"]
            outcomes[version] = done
        assert (outcomes[2]["state"], outcomes[2]["reason"]) == ("failed", "health-memory")
        assert (2, "trial") not in [(e["to_version"], e["state"]) for e in reports.ota()]
        assert (outcomes[3]["state"], outcomes[3]["reason"]) == ("rolled_back",
                                                                 "health-memory")
        assert "during the trial" in outcomes[3]["detail"]
        assert outcomes[4]["state"] == "committed" and "memory +" in outcomes[4]["detail"]
        lines = writer.stop()
        reports.wait_results(lines)
        counters = agent.query("metrics")["result"]["counters"]
        assert counters.get("inference_errors", 0) == 0
        assert agent.query("models")["result"][0]["version"] == 4
    finally:
        writer.stop()
        agent.stop()
        reports.close()
        repo.close()
