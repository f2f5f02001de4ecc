"""Engine pieces with real models and real files: the observed trial model, the paired
comparison, and start-up recovery when an installed bundle is damaged."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.metrics import Counters
from agent.model import LoadedModel
from agent.model_slot import ModelSlot
from agent.ota.boot import factory_examples
from agent.ota.config import OtaConfig, TrialConfig
from agent.ota.engine import OtaEngine
from agent.ota.health import TrialStats, evaluate, swapped_labels
from agent.ota.record import InstalledRef, OtaRecord, UpdateTarget
from agent.ota.store import OtaStore
from agent.ota.trial import ObservedModel, compare_on_sample, reference_lines, release_model
from agent.query_service import QueryService
from contract.messages import DesiredModel, DesiredState
from hil.models import collapsed, finetuned, swapped, traffic
from nanomodel import default_bundle_path
from tests.support.query_fakes import words_alone_pipeline

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def v2_bundle() -> bytes:
    return finetuned(2)


def test_observed_model_counts_samples_and_retires() -> None:
    old = LoadedModel.load(default_bundle_path())
    new = LoadedModel.load(default_bundle_path())
    observed = ObservedModel(new, old, sample_lines=50, prob_sum_tolerance=1e-3)
    lines = traffic(120)
    for i in range(0, 120, 16):
        probs, _ = observed.classify(lines[i:i + 16])
        assert probs.shape == (len(lines[i:i + 16]), 9)
    stats = observed.stats()
    assert stats.lines == 120 and stats.calls == 8 and stats.error_lines == 0
    assert sum(stats.labels.values()) == 120 and len(stats.labels) > 3
    assert stats.nonfinite_rows == stats.bad_sum_rows == 0 and stats.latency_p99_ms > 0
    sample = observed.sample()
    assert len(sample) == 50 and set(sample) <= set(lines)
    observed.retire()
    release_model(new)  # closed: only the fallback can answer now
    probs, _ = observed.classify(["disk /dev/sda: I/O error"])
    assert probs.shape == (1, 9) and observed.stats().lines == 120
    release_model(old)


def test_a_technicians_query_during_a_trial_is_not_trial_traffic() -> None:
    """Review, December 2026: one 256-line classify query met min_inferences and filled
    the trial's whole sample; explanations held the trial's gate and stalled the pipeline."""
    old = LoadedModel.load(default_bundle_path())
    new = LoadedModel.load(default_bundle_path())
    observed = ObservedModel(new, old, sample_lines=256, prob_sum_tolerance=1e-3)
    observed.classify(traffic(16))  # the device's own traffic
    agent = SimpleNamespace(slot=ModelSlot("logs", observed), counters=Counters(),
                            pipeline=words_alone_pipeline())
    texts = [f"technician test line {i}" for i in range(256)]
    service = QueryService(agent)  # type: ignore[arg-type]
    for args in ({"text": texts}, {"text": texts[:32], "explain": True}):
        answer = service.answer(json.dumps({"cmd": "classify", "args": args}).encode())
        assert answer.ok and len(answer.result) == len(args["text"]), answer.error
    assert "why" in answer.result[0]
    assert observed.stats().lines == 16 and len(observed.sample()) == 16
    # An explanation runs outside the gate the pipeline's batches take (it reads no runtime).
    explain, gate_held = new.explain, []

    def explaining(texts: list[str], top: int = 5) -> Any:
        gate_held.append(observed._gate.locked())
        return explain(texts, top)

    new.explain = explaining  # type: ignore[method-assign]
    assert len(observed.explain(texts[:4])) == 4 and gate_held == [False]
    release_model(new)
    release_model(old)


def test_compare_on_sample_sees_a_collapse(tmp_path: Path) -> None:
    (tmp_path / "c.nfb").write_bytes(collapsed(2, label="power"))
    old = LoadedModel.load(default_bundle_path())
    new = LoadedModel.load(tmp_path / "c.nfb")
    paired = compare_on_sample(old, new, traffic(64), batch_size=16)
    assert paired.lines == 64 and paired.candidate_labels == {"power": 64}
    assert paired.baseline_labels.get("power", 0) < 16
    assert paired.baseline_p99_ms > 0 and paired.candidate_p99_ms > 0


def test_compare_on_sample_sees_labels_exchanged(tmp_path: Path) -> None:
    """Real models on the same lines: v1 with its hardware and security outputs exchanged
    is caught by the ring check; a site's fine-tune is not."""
    old = LoadedModel.load(default_bundle_path())
    cfg = TrialConfig()
    for name, data, caught in (("swapped", swapped(2), True), ("tuned", finetuned(3), False)):
        (tmp_path / f"{name}.nfb").write_bytes(data)
        new = LoadedModel.load(tmp_path / f"{name}.nfb")
        paired = compare_on_sample(old, new, traffic(256), batch_size=32)
        assert sum(paired.pairs.values()) == 256
        verdict = evaluate(TrialStats(lines=300), paired, cfg, timed_out=False)
        assert (verdict.reason == "health-labels-swapped") is caught, verdict.detail
        assert bool(swapped_labels(paired, cfg)) is caught
        release_model(new)
    release_model(old)


def test_the_cure_of_a_swapped_model_is_not_taken_for_a_swap(tmp_path: Path) -> None:
    """Review, December 2026: a device already running a swapped model (committed before
    the check, or through a quiet trial) saw the fixed release exchange the labels back and
    rolled the fix back. The factory bundle's example lines arbitrate: they side with the
    fixed model, and against a swapped candidate."""
    (tmp_path / "swapped.nfb").write_bytes(swapped(2))
    bad = LoadedModel.load(tmp_path / "swapped.nfb")
    good = LoadedModel.load(default_bundle_path())
    cfg = TrialConfig()
    examples = factory_examples(default_bundle_path())
    assert {label for _, label in examples} >= {"hardware", "security"}
    for old, new, healthy in ((bad, good, True), (good, bad, False)):
        paired = compare_on_sample(old, new, traffic(256), batch_size=32)
        assert swapped_labels(paired, cfg)  # a ring either way round
        reference = reference_lines(old, new, examples)
        verdict = evaluate(TrialStats(lines=300), paired, cfg, timed_out=False,
                           reference=reference)
        assert verdict.healthy is healthy, verdict.detail
        if healthy:
            assert "show to be the swapped one" in verdict.detail
    assert factory_examples(tmp_path / "absent.nfb") == []
    release_model(bad)
    release_model(good)


def make_engine(tmp_path: Path, reports: list[dict[str, Any]],
                trial: TrialConfig | None = None) -> OtaEngine:
    cfg = OtaConfig(metadata_url="http://127.0.0.1:9/metadata",
                    target_base_url="http://127.0.0.1:9/targets", root_file=tmp_path / "root",
                    trial=trial or TrialConfig())
    return OtaEngine(cfg, tmp_path / "state", "logs", runtime="onnxruntime", threads=1,
                     initial_bundle=default_bundle_path(), report=reports.append)


def install(store: OtaStore, data: bytes, version: int) -> InstalledRef:
    path = store.downloads / f"v{version}.nfb"
    path.write_bytes(data)
    return store.install(path, "nano-logs", version, hashlib.sha256(data).hexdigest())


def test_recover_runs_committed_and_falls_back_when_damaged(tmp_path: Path,
                                                           v2_bundle: bytes) -> None:
    store = OtaStore(tmp_path / "state", "logs")
    v2 = install(store, v2_bundle, 2)
    store.save(OtaRecord(slot="logs", state="committed", committed=v2))
    engine = make_engine(tmp_path, [])
    assert engine.recover() == store.path_of(v2)

    store.path_of(v2).write_bytes(b"\0" * len(v2_bundle))  # bit rot on the device
    reports: list[dict[str, Any]] = []
    engine = make_engine(tmp_path, reports)
    assert engine.recover() == default_bundle_path()
    rec = store.load()
    assert rec.committed is None and rec.reason == "live-bundle-damaged"


def test_trial_interrupted_by_restart_is_rolled_back_and_reported(
        tmp_path: Path, v2_bundle: bytes) -> None:
    store = OtaStore(tmp_path / "state", "logs")
    v2 = install(store, v2_bundle, 2)
    store.save(OtaRecord(slot="logs", state="trial", candidate=v2, from_version=1,
                         target=UpdateTarget(model="nano-logs", version=2, revision=4)))
    reports: list[dict[str, Any]] = []
    engine = make_engine(tmp_path, reports)
    path = engine.recover()
    assert path == default_bundle_path()  # the committed (configured) model, not v2
    assert not store.path_of(v2).exists() and store.load().state == "rolled_back"
    assert reports == []  # reported once the daemon is up
    model = LoadedModel.load(path)
    engine.attach(ModelSlot("logs", model))
    engine.start()
    try:
        assert [(r["state"], r["reason"], r["to_version"]) for r in reports] == [
            ("rolled_back", "interrupted-trial", 2)]
        doc = engine.describe()
        assert doc["state"] == "rolled_back" and doc["live"]["version"] == 1
    finally:
        engine.stop()
        release_model(model)



def test_one_passing_load_failure_at_boot_does_not_demote_the_committed_bundle(
        tmp_path: Path, v2_bundle: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before (review, December 2026) one MemoryError while test-loading the intact
    committed bundle at start-up rewrote the record for good: the older model ran from then
    on, with no previous bundle kept. The load is tried again first."""
    store = OtaStore(tmp_path / "state", "logs")
    v2 = install(store, v2_bundle, 2)
    store.save(OtaRecord(slot="logs", state="committed", committed=v2))
    real = LoadedModel.load
    failures = iter([MemoryError("std::bad_alloc")])

    def flaky(*args: Any, **kwargs: Any) -> LoadedModel:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real(*args, **kwargs)

    monkeypatch.setattr(LoadedModel, "load", staticmethod(flaky))
    assert make_engine(tmp_path, []).recover() == store.path_of(v2)
    rec = store.load()
    assert rec.committed == v2 and rec.reason is None


def test_after_a_fall_back_at_boot_older_signed_versions_are_refused(
        tmp_path: Path, v2_bundle: bytes) -> None:
    """Review, December 2026: after the committed v4 failed to load at boot and v2 ran
    again, downgrade protection followed v2, so v3 (signed, superseded) would have been
    installed. The version that fell over is the floor until the next commit."""
    store = OtaStore(tmp_path / "state", "logs")
    v2 = install(store, v2_bundle, 2)
    v4 = install(store, finetuned(4, seed=11), 4)
    store.save(OtaRecord(slot="logs", state="committed", committed=v4, previous=v2))
    store.path_of(v4).write_bytes(b"\0" * 64)  # bit rot on the device
    reports: list[dict[str, Any]] = []
    engine = make_engine(tmp_path, reports)
    assert engine.recover() == store.path_of(v2)
    model = LoadedModel.load(store.path_of(v2))
    engine.attach(ModelSlot("logs", model))
    engine.start()
    try:
        def asked(version: int, revision: int) -> dict[str, Any]:
            engine.submit_desired(DesiredState(revision=revision, slots={
                "logs": DesiredModel(model="nano-logs", version=version)}
            ).model_dump_json().encode())
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                done = [r for r in reports if r["to_version"] == version
                        and r["state"] in ("failed", "committed")]
                if done:
                    return done[-1]
                time.sleep(0.05)
            raise AssertionError(f"no outcome for v{version}: {reports}")

        refused = asked(3, 7)
        assert refused["reason"] == "downgrade" and "version 4" in refused["detail"]
        assert not any(r["state"] == "downloading" and r["to_version"] == 3 for r in reports)
        # v4 itself may come back: it is fetched (from nowhere here, so it fails later).
        again = asked(4, 8)
        assert again["reason"] != "downgrade"
        assert any(r["state"] == "downloading" and r["to_version"] == 4 for r in reports)
    finally:
        engine.stop()
        release_model(model)
