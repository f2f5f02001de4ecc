"""The agent answers queries only once its sources have started: tests and the HIL rig
take a first answer for "started" and write lines right after it, and a file source
that starts at the end of its file (``start_at = "end"``, the default) fixes that end
when it starts — a line written in between was taken for old content and never read
(CI, December 2026: 49 of 50 results, `test_agent_cadence.py`). systemd's READY=1 already
came after the sources; the control socket came before them."""

from __future__ import annotations

import time
from pathlib import Path

from agent.control import DaemonNotRunning, ask
from hil.broker import Mosquitto
from tests.support.agent_proc import AgentProcess, write_config

SOURCES = 40  # each start opens, stats and watches its file: a window to hit


def test_the_first_answer_comes_after_every_source_started(tmp_path: Path,
                                                            broker: Mosquitto) -> None:
    logs = [tmp_path / f"app{i}.log" for i in range(SOURCES)]
    for log in logs:
        log.write_text("")
    sources = "".join(f'[[sources]]\nkind = "file"\npath = "{log}"\n' for log in logs)
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "agent.toml", "startup-01", state, broker.port, sources)
    agent = AgentProcess(cfg, state).start(wait=False)
    try:
        deadline = time.monotonic() + 60
        first = None
        while first is None:
            assert time.monotonic() < deadline, agent.output()[-3000:]
            try:
                first = ask(agent.socket, "sources", {}, timeout=5)
            except (DaemonNotRunning, OSError, ValueError):
                time.sleep(0.002)
        assert first["ok"], first
        assert len(first["result"]) == SOURCES, (
            f"the first answer listed {len(first['result'])} of {SOURCES} sources")
    finally:
        agent.stop()
