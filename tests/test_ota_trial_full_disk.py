"""A trial whose end a full disk refuses to save: the real engine, the real default
model and a real signed-able bundle that gives NaN on live lines (hil.models)."""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from agent.model import LoadedModel
from agent.model_slot import ModelSlot
from agent.ota.config import TrialConfig
from agent.ota.record import OtaRecord, UpdateTarget
from agent.ota.state import SmokePassed
from agent.ota.store import OtaStore
from agent.ota.trial import release_model
from hil.models import nan_on_traffic, traffic
from nanomodel import default_bundle_path
from tests.test_ota_engine import install, make_engine


def test_a_verdict_a_full_disk_refuses_still_takes_the_candidate_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The trial's end cannot be saved (the disk filled up during the trial): before
    (review, December 2026) the rollback never ran and the candidate, NaN on live lines,
    served every batch until a restart. Now it is taken out at once; the record on disk
    still says trial, which a restart rolls back too."""
    store = OtaStore(tmp_path / "state", "logs")
    v2 = install(store, nan_on_traffic(2), 2)
    engine = make_engine(tmp_path, [], TrialConfig(duration_s=1.0, min_inferences=10,
                                                   timeout_s=5.0))
    engine.recover()
    engine.record = OtaRecord(slot="logs", state="smoke_testing", candidate=v2, from_version=1,
                              target=UpdateTarget(model="nano-logs", version=2, revision=1))
    store.save(engine.record)
    old = LoadedModel.load(default_bundle_path())
    slot = ModelSlot("logs", old)
    engine.attach(slot)
    engine._started = True  # what start() sets, without its worker thread
    engine._candidate = LoadedModel.load(store.path_of(v2))  # smoke-tested, as the engine would

    saved = engine.store.save

    def full_disk(record: OtaRecord) -> None:
        if record.state != "trial":
            raise OSError(errno.ENOSPC, "No space left on device")
        saved(record)

    monkeypatch.setattr(engine.store, "save", full_disk)
    lines = traffic(64)
    stop = threading.Event()

    def pipeline() -> None:  # live traffic for the trial to judge
        while not stop.is_set():
            slot.current().classify(lines[:16])
            time.sleep(0.02)

    feeder = threading.Thread(target=pipeline, daemon=True)
    feeder.start()
    try:
        engine._drive(SmokePassed())  # trial -> health-non-finite -> its save fails
    finally:
        stop.set()
        feeder.join()
    assert slot.current() is old
    probs, _ = slot.current().classify(lines[:4])
    assert np.isfinite(probs).all()
    assert OtaStore(tmp_path / "state", "logs").load().state == "trial"
    monkeypatch.setattr(engine.store, "save", saved)
    assert make_engine(tmp_path, []).recover() == default_bundle_path()  # the restart
    assert store.load().state == "rolled_back"
    release_model(old)


def test_a_full_disk_at_start_runs_the_committed_model_and_the_update_waits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent was killed during a trial and restarts on a full disk: the rollback's
    record cannot be saved. Before, the OSError left ``recover()`` and the agent could
    not start at all. Now the committed model runs, nothing of the update is done
    unsaved (a resumed update that kills the agent must count towards max_resumes), and
    the rollback happens on the worker once the disk has room."""
    store = OtaStore(tmp_path / "state", "logs")
    v2 = install(store, nan_on_traffic(2), 2)
    target = UpdateTarget(model="nano-logs", version=2, revision=1)
    store.save(OtaRecord(slot="logs", state="trial", candidate=v2, from_version=1,
                         target=target))
    reports: list[dict[str, object]] = []
    engine = make_engine(tmp_path, reports)  # type: ignore[arg-type]
    saved = engine.store.save
    room = threading.Event()

    def full_disk(record: OtaRecord) -> None:
        if not room.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        saved(record)

    monkeypatch.setattr(engine.store, "save", full_disk)
    monkeypatch.setattr("agent.ota.engine.RESUME_RETRY_MAX_S", 0.2)
    assert engine.recover() == default_bundle_path()
    assert engine.counters.get("ota_errors") == 1
    assert store.load().state == "trial" and engine.record.state == "trial"
    assert engine._pending_action is None and store.path_of(v2).exists()  # nothing done
    live = LoadedModel.load(default_bundle_path())
    engine.attach(ModelSlot("logs", live))
    engine.start()
    try:
        time.sleep(1.5)  # retrying while the disk is full
        assert store.load().state == "trial" and store.path_of(v2).exists()
        room.set()
        deadline = time.monotonic() + 10

        def reported() -> bool:  # the record is saved first, then discarded, then reported
            return any(r.get("state") == "rolled_back" for r in list(reports))

        while not reported() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reported()
        assert store.load().state == "rolled_back"
        assert store.load().reason == "interrupted-trial"
        assert not store.path_of(v2).exists()
    finally:
        engine.stop()
        release_model(live)
