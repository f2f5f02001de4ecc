"""A real agent with ``[ota]`` configured but no update started has not loaded the TUF
client's stack (python-tuf, securesystemslib, cryptography) nor zstandard: they cost
~13 MB of RSS and are imported when an update starts (agent/ota/fetch.py). Checked in
the running process's memory map, where their native libraries would show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.agent_throughput import start_agent
from benchmarks.device_env import device_environment

# Native libraries the OTA stack loads: cryptography's Rust core (securesystemslib's
# signature checks), zstandard's C backend (deltas).
OTA_LIBRARIES = ("cryptography/hazmat/bindings/_rust", "zstandard/backend_c")


def _mapped(pid: int) -> set[str]:
    return {line.split()[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if len(line.split()) >= 6}


def _query(tmp_path: Path, *words: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-m", "agent.cli", "query", *words, "--json",
                          "--socket", str(tmp_path / "state" / "agent.sock")],
                         capture_output=True, text=True, timeout=60, env=device_environment())
    assert out.returncode == 0, out.stdout + out.stderr
    answer: dict[str, object] = json.loads(out.stdout)
    return answer


def _inferences(tmp_path: Path) -> int:
    result = _query(tmp_path, "metrics")["result"]
    assert isinstance(result, dict)
    return int(result["counters"].get("inferences", 0))


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
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'device_id = "lazy-01"\nstate_dir = "{tmp_path / "state"}"\n'
                   'log_level = "warning"\n[mqtt]\nhost = "127.0.0.1"\nport = 9\n'
                   '[model]\nruntime = "onnxruntime"\n'
                   f'[[sources]]\nkind = "file"\npath = "{log}"\n'
                   '[ota]\nmetadata_url = "http://127.0.0.1:9/metadata"\n'
                   'target_base_url = "http://127.0.0.1:9/targets"\n'
                   f'root_file = "{tmp_path / "root.json"}"\n')
    agent = start_agent(cfg, sorted(os.sched_getaffinity(0))[0], tmp_path / "agent.err")
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "state" / "agent.sock").exists():
            assert agent.poll() is None, (tmp_path / "agent.err").read_text()
            assert time.monotonic() < deadline, "agent did not start"
            time.sleep(0.1)
        with log.open("a") as f:  # steady state: lines classified, a query answered
            f.writelines(f"sshd[{i}]: Accepted publickey for admin\n" for i in range(50))
        while _inferences(tmp_path) < 50:
            assert agent.poll() is None, (tmp_path / "agent.err").read_text()
            assert time.monotonic() < deadline + 30, _query(tmp_path, "metrics")
            time.sleep(0.2)
        assert _query(tmp_path, "classify", "kernel: EXT4-fs error")["ok"]
        mapped = _mapped(agent.pid)
        # The check sees native libraries the agent did load: its model runtime.
        assert any("onnxruntime_pybind11_state" in p for p in mapped), sorted(mapped)
        assert [p for p in mapped if any(lib in p for lib in OTA_LIBRARIES)] == []
    finally:
        agent.terminate()
        agent.wait(20)
