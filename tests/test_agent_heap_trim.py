"""A real agent hands its heap's freed pages back while it works (``[pipeline]
heap_trim_interval_s``), at most once per interval, and never while idle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.agent_throughput import start_agent
from benchmarks.device_env import device_environment


def _counters(sock: Path) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-m", "agent.cli", "query", "metrics", "--json",
                          "--socket", str(sock)], capture_output=True, text=True, timeout=60,
                         env=device_environment())
    assert out.returncode == 0, out.stdout + out.stderr
    counters: dict[str, int] = json.loads(out.stdout)["result"]["counters"]
    return counters


def test_agent_trims_while_working_and_not_when_idle(tmp_path: Path) -> None:
    log = tmp_path / "lines.log"
    log.write_text("")
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'device_id = "trim-01"\nstate_dir = "{tmp_path / "state"}"\n'
                   'log_level = "warning"\n[mqtt]\nhost = "127.0.0.1"\nport = 9\n'
                   '[pipeline]\nheap_trim_interval_s = 0.5\n'
                   f'[[sources]]\nkind = "file"\npath = "{log}"\n')
    sock = tmp_path / "state" / "agent.sock"
    agent = start_agent(cfg, sorted(os.sched_getaffinity(0))[0], tmp_path / "agent.err")
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert agent.poll() is None, (tmp_path / "agent.err").read_text()
            assert time.monotonic() < deadline, "agent did not start"
            time.sleep(0.1)
        time.sleep(1.0)
        assert _counters(sock).get("heap_trims", 0) == 0  # started, nothing classified yet
        t0 = time.monotonic()
        with log.open("a", buffering=1) as f:  # 3 s at ~100 lines/s: ~15 batches
            for i in range(300):
                f.write(f"pumpd[{i}]: cycle complete, flow=41.2 l/min\n")
                time.sleep(0.01)
        busy_s = time.monotonic() - t0
        while _counters(sock).get("inferences", 0) < 300:
            assert time.monotonic() < t0 + 60, _counters(sock)
            time.sleep(0.2)
        worked = _counters(sock)
        # The first batch trims, then at most one per 0.5 s of work (+1: the last batches;
        # the once-per-interval rule itself: tests/test_agent_memory.py).
        assert 2 <= worked["heap_trims"] <= min(worked["batches"], busy_s / 0.5 + 2), \
            (worked, busy_s)
        time.sleep(1.5)  # idle for three intervals
        assert _counters(sock)["heap_trims"] == worked["heap_trims"]
    finally:
        agent.terminate()
        agent.wait(20)
