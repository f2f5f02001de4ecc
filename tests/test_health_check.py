"""The health check that feeds the systemd watchdog, on the agent's real pipeline.

Review, December 2026: the check read ``Pipeline.busy`` after a change had removed it,
so the first time the loop's heartbeat was 30 s old the agent's main loop died with
AttributeError; and a loop waiting for a batch to fill (``batch_max_wait_ms`` may be
60 s) counted as stuck, so the watchdog starved on a valid config.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

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
