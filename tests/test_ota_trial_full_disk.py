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
from agent.ota.config import TrialConfig
from agent.ota.state import OtaRecord, SmokePassed, UpdateTarget
from agent.ota.store import OtaStore
from agent.ota.trial import release_model
from agent.pipeline import ModelSlot
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
