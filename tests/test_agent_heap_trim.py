"""A real agent hands its heap's freed pages back while it works (``[pipeline]
heap_trim_interval_s``), at most once per interval, and never while idle."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.device_env import unit_environment
from tests.support.agent_proc import AgentProcess, write_quiet_config


def _counters(agent: AgentProcess) -> dict[str, int]:
    counters: dict[str, int] = agent.query("metrics")["result"]["counters"]
    return counters


def test_agent_trims_while_working_and_not_when_idle(tmp_path: Path) -> None:
    log = tmp_path / "lines.log"
    log.write_text("")
    cfg = write_quiet_config(tmp_path / "agent.toml", "trim-01", tmp_path / "state", log,
                             extra="[pipeline]\nheap_trim_interval_s = 0.5\n")
    # the environment the unit gives the agent (arena cap, byte-code level, ...)
    agent = AgentProcess(cfg, tmp_path / "state", env=unit_environment()).start()
    try:
        time.sleep(1.0)
        assert _counters(agent).get("heap_trims", 0) == 0  # started, nothing classified yet
        t0 = time.monotonic()
        with log.open("a", buffering=1) as f:  # 3 s at ~100 lines/s: ~15 batches
            for i in range(300):
                f.write(f"pumpd[{i}]: cycle complete, flow=41.2 l/min\n")
                time.sleep(0.01)
        busy_s = time.monotonic() - t0
        while _counters(agent).get("inferences", 0) < 300:
            assert time.monotonic() < t0 + 60, _counters(agent)
            time.sleep(0.2)
        # The last batch's trim comes right after its lines are counted: let it land
        # before the snapshot (CI once read the counters in between: 5 == 4 below).
        time.sleep(0.6)
        worked = _counters(agent)
        # The first batch trims, then at most one per 0.5 s of work (+1: the last batches;
        # the once-per-interval rule itself: tests/test_agent_memory.py).
        assert 2 <= worked["heap_trims"] <= min(worked["batches"], busy_s / 0.5 + 2), \
            (worked, busy_s)
        time.sleep(1.5)  # idle for three intervals
        assert _counters(agent)["heap_trims"] == worked["heap_trims"]
    finally:
        agent.stop(20)
