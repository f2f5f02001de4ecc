"""The agent the RSS benchmark starts gets the systemd unit's ``Environment=``, read from
the unit file itself (benchmarks/device_env.py), so its figure is what a device gets."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from benchmarks.agent_throughput import start_agent
from benchmarks.device_env import (
    UNIT,
    UnitEnvironmentError,
    device_environment,
    unit_environment,
)
from tests.support.agent_proc import write_quiet_config


def test_reads_environment_as_systemd_does(tmp_path: Path) -> None:
    unit = tmp_path / "x.service"
    unit.write_text("[Unit]\nEnvironment=NOT_SERVICE=1\n"
                    "[Service]\n# Environment=COMMENTED=1\nEnvironment=A=1 B=2\n"
                    "Environment=\nEnvironment=C=3 \"D=two words\" A=4\n"
                    "Environment=C=5\nExecStart=/bin/true\n")
    assert unit_environment(unit) == {"C": "5", "D": "two words", "A": "4"}
    assert device_environment({"PATH": "/bin", "A": "0"}, unit) == {
        "PATH": "/bin", "A": "4", "C": "5", "D": "two words"}
    unit.write_text("[Service]\nEnvironment=JUSTAWORD\n")
    with pytest.raises(UnitEnvironmentError, match="JUSTAWORD"):
        unit_environment(unit)


def test_unit_sets_the_memory_settings() -> None:
    env = unit_environment(UNIT)
    assert env["MALLOC_ARENA_MAX"] == "2"
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["PYDANTIC_DISABLE_PLUGINS"] == "__all__"
    assert env["PYTHONOPTIMIZE"] == "2"  # byte-code without docstrings (packaged at that level)


def test_benchmark_agent_runs_with_the_units_environment(tmp_path: Path) -> None:
    """A real agent started by the benchmark's helper; its /proc environ is checked."""
    log = tmp_path / "lines.log"
    log.write_text("")
    cfg = write_quiet_config(tmp_path / "agent.toml", "env-01", tmp_path / "state", log)
    wanted = unit_environment(UNIT)
    os.environ["MALLOC_ARENA_MAX"] = "7"  # the unit's value must win over the caller's
    try:
        agent = start_agent(cfg, sorted(os.sched_getaffinity(0))[0], tmp_path / "agent.err")
    finally:
        del os.environ["MALLOC_ARENA_MAX"]
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "state" / "agent.sock").exists():
            assert agent.poll() is None, (tmp_path / "agent.err").read_text()
            assert time.monotonic() < deadline, "agent did not start"
            time.sleep(0.1)
        raw = Path(f"/proc/{agent.pid}/environ").read_bytes().split(b"\0")
        seen = dict(item.decode().partition("=")[::2] for item in raw if item)
        assert {k: seen.get(k) for k in wanted} == wanted
    finally:
        agent.terminate()
        agent.wait(20)
