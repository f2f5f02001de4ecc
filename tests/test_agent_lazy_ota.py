"""A real agent with ``[ota]`` configured but no update started has not loaded the TUF
client's stack (python-tuf, securesystemslib, cryptography) nor zstandard: they cost
~13 MB of RSS and are imported when an update starts (agent/ota/fetch.py). Checked in
the running process's memory map, where their native libraries would show."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks.device_env import device_environment, unit_environment
from tests.support.agent_proc import AgentProcess, write_quiet_config

# Native libraries the OTA stack loads: cryptography's Rust core (securesystemslib's
# signature checks), zstandard's C backend (deltas).
OTA_LIBRARIES = ("cryptography/hazmat/bindings/_rust", "zstandard/backend_c")


def _mapped(pid: int) -> set[str]:
    return {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if len(line.split()) >= 6}


def _inferences(agent: AgentProcess) -> int:
    return int(agent.query("metrics")["result"]["counters"].get("inferences", 0))


def test_the_check_names_what_the_update_stack_loads() -> None:
    """Importing the TUF client and the delta code maps exactly those libraries."""
    code = ("import agent.ota.tuf_client, contract.delta, pathlib, sys\n"
            "maps = pathlib.Path('/proc/self/maps').read_text()\n"
            f"print(all(lib in maps for lib in {OTA_LIBRARIES!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=device_environment(), check=True)
    assert out.stdout.strip() == "True"


def test_agent_with_ota_configured_has_not_loaded_the_update_stack(tmp_path: Path) -> None:
    log = tmp_path / "lines.log"
    log.write_text("")
    cfg = write_quiet_config(
        tmp_path / "agent.toml", "lazy-01", tmp_path / "state", log,
        extra='[model]\nruntime = "onnxruntime"\n'
              '[ota]\nmetadata_url = "http://127.0.0.1:9/metadata"\n'
              'target_base_url = "http://127.0.0.1:9/targets"\n'
              f'root_file = "{tmp_path / "root.json"}"\n')
    # the environment the unit gives the agent (arena cap, byte-code level, ...)
    agent = AgentProcess(cfg, tmp_path / "state", env=unit_environment()).start()
    try:
        deadline = time.monotonic() + 60
        with log.open("a") as f:  # steady state: lines classified, a query answered
            f.writelines(f"sshd[{i}]: Accepted publickey for admin\n" for i in range(50))
        while _inferences(agent) < 50:
            assert agent.proc is not None and agent.proc.poll() is None, agent.output()
            assert time.monotonic() < deadline + 30, agent.query("metrics")
            time.sleep(0.2)
        assert agent.query("classify", text="kernel: EXT4-fs error")["ok"]
        assert agent.proc is not None
        mapped = _mapped(agent.proc.pid)
        # The check sees native libraries the agent did load: its model runtime.
        assert any("onnxruntime_pybind11_state" in p for p in mapped), sorted(mapped)
        assert [p for p in mapped if any(lib in p for lib in OTA_LIBRARIES)] == []
    finally:
        agent.stop(20)
