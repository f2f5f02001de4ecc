"""An agent started on a full disk waits for space instead of exiting: the real daemon,
its state directory on a real tmpfs filled to the last block (in a mount namespace of its
own), and a real sd_notify socket. Before (review, December 2026): the spool could not
be opened ("disk I/O error"), the daemon exited, and after five failed starts in ten
minutes systemd gave up on the unit, so freeing space later brought no agent back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_NAMESPACE_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, socket, subprocess, sys, time
    from pathlib import Path

    tmp, root, free_space = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "free"
    state = tmp / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(state)], check=True)
    with open(state / "fill", "wb") as f:  # the disk is full: not one block left
        try:
            while True:
                f.write(b"\\0" * 65536)
        except OSError:
            pass
    (tmp / "pump.log").write_text("")
    config = tmp / "agent.toml"
    config.write_text(f'device_id = "pump-07"\\nstate_dir = "{state}"\\nlog_level = "info"\\n'
                      '[mqtt]\\nhost = "127.0.0.1"\\nport = 9\\n'
                      f'[[sources]]\\nkind = "file"\\npath = "{tmp / "pump.log"}"\\n')
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp / "notify.sock"))
    notify.settimeout(0.5)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp / "notify.sock"), "PYTHONPATH": root}
    log = open(tmp / "agent.log", "wb")
    agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config",
                              str(config)], stdout=log, stderr=subprocess.STDOUT, env=env,
                             cwd=root)
    got = []

    def collect(until, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and agent.poll() is None:
            try:
                got.append(notify.recv(4096).decode())
            except socket.timeout:
                pass
            if until():
                return True
        return until()

    waiting = collect(lambda: sum("waiting for the spool" in m for m in got) >= 2, 60)
    alive_while_full = agent.poll() is None
    ready = False
    if free_space:
        os.unlink(state / "fill")
        ready = collect(lambda: any("READY=1" in m for m in got), 60)
    agent.send_signal(signal.SIGTERM)
    rc = agent.wait(30)
    print(json.dumps({"waiting": waiting, "alive_while_full": alive_while_full,
                      "ready": ready, "rc": rc, "messages": got,
                      "spool": (state / "spool.sqlite").exists(),
                      "log": (tmp / "agent.log").read_text(errors="replace")[-3000:]}))
    """
)


def _run(tmp_path: Path, free: bool) -> dict[str, object]:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private tmpfs")
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace: {probe.stderr.decode().strip()}")
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", _NAMESPACE_SCRIPT,
         str(tmp_path), str(ROOT), "free" if free else "full"],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_an_agent_started_on_a_full_disk_waits_and_starts_once_space_is_free(
        tmp_path: Path) -> None:
    r = _run(tmp_path, free=True)
    assert r["waiting"] and r["alive_while_full"], r
    messages = r["messages"]
    assert isinstance(messages, list)
    waits = [m for m in messages if "waiting for the spool" in m]
    assert any(m.startswith("EXTEND_TIMEOUT_USEC=") for m in messages), messages
    assert "disk full?" in waits[0], waits
    assert r["ready"] and r["spool"], r
    assert r["rc"] == 0, r
    assert "cannot open the spool" in str(r["log"]), r["log"]


def test_an_agent_stopped_while_it_waits_for_space_exits_cleanly(tmp_path: Path) -> None:
    r = _run(tmp_path, free=False)
    assert r["waiting"] and r["alive_while_full"], r
    assert not any("READY=1" in m for m in r["messages"]), r  # type: ignore[union-attr]
    assert r["rc"] == 0, r
