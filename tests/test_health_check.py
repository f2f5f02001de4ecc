"""The health check that feeds the systemd watchdog, on the agent's real pipeline.

Review, December 2026: the check read ``Pipeline.busy`` after a change had removed it,
so the first time the loop's heartbeat was 30 s old the agent's main loop died with
AttributeError; and a loop waiting for a batch to fill (``batch_max_wait_ms`` may be
60 s) counted as stuck, so the watchdog starved on a valid config.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from agent import health
from agent.health import STALL_S, HealthCheck
from agent.pipeline import Pipeline
from agent.sources.base import Line
from tests.support.pipeline_rig import real_pipeline


def check_with(pipeline: Pipeline, heartbeat_age: float, busy: bool,
               waiting_since: float = 0.0) -> list[str]:
    """The check's problems for a pipeline whose loop last beat ``heartbeat_age`` ago,
    with one line queued and none processed for ``waiting_since`` seconds."""
    pipeline.alive = lambda: True  # type: ignore[method-assign]  # not started: no beats
    pipeline.heartbeat = time.monotonic() - heartbeat_age
    pipeline.busy = busy
    pipeline.batch_started = pipeline.heartbeat  # a batch begins as the loop beats
    agent = SimpleNamespace(pipeline=pipeline, counters=pipeline.counters,
                            queue=pipeline.queue, sender=SimpleNamespace(alive=lambda: True),
                            sources=[])
    check = HealthCheck(agent)
    if waiting_since:
        pipeline.queue.put(Line("file:log", "pump cycle 1 complete", time.time()))
        check._last_progress = time.monotonic() - waiting_since
    healthy, problems = check.check()
    assert healthy == (not problems)
    return problems


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    return real_pipeline(tmp_path)[0]


def test_a_loop_that_stopped_beating_is_stuck_unless_a_batch_runs(pipeline: Pipeline) -> None:
    allowance = STALL_S + pipeline.longest_wait_s()
    assert check_with(pipeline, allowance - 1, busy=False) == []
    assert check_with(pipeline, allowance + 1, busy=False) == ["pipeline loop is stuck"]
    assert check_with(pipeline, allowance + 60, busy=True) == []  # a long batch


def test_waiting_for_a_batch_to_fill_is_not_stuck(tmp_path: Path) -> None:
    pipeline = real_pipeline(tmp_path)[0]
    pipeline.max_wait = 40.0  # batch_max_wait_ms = 40000, a valid setting
    assert check_with(pipeline, STALL_S + 35, busy=False) == []
    assert check_with(pipeline, STALL_S + 45, busy=False) == ["pipeline loop is stuck"]
    # A line waiting that long for its batch is not "no progress" either.
    assert check_with(pipeline, 1, busy=False, waiting_since=39) == []
    [stalled] = check_with(pipeline, 1, busy=False, waiting_since=STALL_S + 45)
    assert stalled.startswith("no line processed for")


class HangingModel:
    """The shipped model, whose inference blocks until released (a runtime deadlock)."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.release = threading.Event()
        self.entered = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)

    def classify(self, texts: list[str]) -> object:
        self.entered.set()
        self.release.wait(120)  # released by the test (at the latest in its finally)
        return self.model.classify(texts)  # type: ignore[attr-defined]


def test_a_batch_that_hangs_with_the_queue_empty_is_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review, December 2026: a running batch exempted the loop from every check, so a
    hung inference holding the only queued lines (queue empty, heartbeat old, busy) fed
    the watchdog for ever. The real pipeline thread, hung inside the model."""
    pipeline, queue, _, counters = real_pipeline(tmp_path)
    hanging = HangingModel(pipeline.slot.current())
    pipeline.slot.current = lambda: hanging  # type: ignore[method-assign]
    agent = SimpleNamespace(pipeline=pipeline, counters=counters, queue=queue,
                            sender=SimpleNamespace(alive=lambda: True), sources=[])
    check = HealthCheck(agent)
    pipeline.start()
    try:
        queue.put(Line("file:log", "pump cycle 1 complete", time.time()))
        assert hanging.entered.wait(30)  # the pipeline thread took the line
        assert len(queue) == 0 and pipeline.busy
        assert check.check() == (True, [])  # a batch in hand is not hung at once
        monkeypatch.setattr(health, "BATCH_HUNG_S", 0.2)
        time.sleep(0.3)
        healthy, problems = check.check()
        assert not healthy and problems[0].startswith("pipeline batch has run for")
        pipeline.holding = "the spool cannot be written: a batch waits"
        assert check.check() == (True, [])  # held for a full disk: degraded, not hung
        pipeline.holding = None
        hanging.release.set()
        deadline = time.monotonic() + 30  # the batch's classify and commit
        while pipeline.busy:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert check.check() == (True, [])
        assert counters.get("inferences") == 1
    finally:
        hanging.release.set()
        pipeline.stop()
