"""The systemd unit, sysusers/tmpfiles and the example config (the Debian package
itself: tests/test_device_package.py).

The unit is checked by systemd's own tools (verify, security --offline), and the
real agent runs inside the unit's seccomp sandbox (syscall allow-list, W^X memory,
address families) rebuilt by packaging/systemd/sandbox_exec.py, because systemd
is not PID 1 here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.control import ask
from tests.support.agent_proc import write_config
from tests.support.mqtt_client import Collector

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
UNIT = PACKAGING / "systemd" / "nanofleet-agent.service"
SANDBOX = PACKAGING / "systemd" / "sandbox_exec.py"
EXAMPLE = PACKAGING / "agent.toml.example"
VENV_AGENT = Path(sys.executable).parent / "nanofleet-agent"

# scripts/bootstrap.sh installs systemd (systemd-analyze, sysusers, tmpfiles) and dpkg-dev:
# a missing tool fails these tests instead of skipping them.
assert shutil.which("systemd-analyze"), "systemd-analyze missing: run scripts/bootstrap.sh"


def unit_settings(text: str) -> dict[str, list[str]]:
    """``Section.Key -> [values]`` in file order (keys may repeat in unit files)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        else:
            key, _, value = line.partition("=")
            out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's nanofleet-agent (verify checks
    that the binary exists; /usr/bin/nanofleet-agent only exists once the .deb is in)."""
    assert VENV_AGENT.exists(), f"{VENV_AGENT} missing: pip install -e . first"
    text = UNIT.read_text().replace("ExecStart=/usr/bin/nanofleet-agent",
                                    f"ExecStart={VENV_AGENT}")
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    unit = unit_for_this_machine(tmp_path)
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nanofleet-agent.service" not in proc.stderr, proc.stderr


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above is not vacuous: an unknown key and a missing binary fail."""
    unit = unit_for_this_machine(tmp_path)
    unit.write_text(unit.read_text().replace(str(VENV_AGENT), "/nonexistent/agent")
                    .replace("Type=notify", "Type=notify\nWatchdogSecs=5"))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode != 0
    assert "WatchdogSecs" in proc.stderr and "/nonexistent/agent" in proc.stderr


def exposure(unit: Path) -> float:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                          capture_output=True, text=True, timeout=60, cwd=unit.parent)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1))


def test_security_exposure_at_most_2(tmp_path: Path) -> None:
    score = exposure(unit_for_this_machine(tmp_path))
    assert score <= 2.0, score
    bare = tmp_path / "bare.service"
    bare.write_text(f"[Service]\nExecStart={VENV_AGENT} run\n")
    assert exposure(bare) > 9.0  # the parser reads what we think it reads


def test_unit_declares_the_service_contract() -> None:
    s = unit_settings(UNIT.read_text())
    one = {k: v[-1] for k, v in s.items()}
    assert one["Service.Type"] == "notify" and one["Service.NotifyAccess"] == "main"
    assert one["Service.WatchdogSec"] == "30s"
    assert one["Service.Restart"] == "on-failure"  # includes watchdog timeouts
    assert one["Service.TimeoutStopSec"] == "15s"
    assert one["Service.ExecStart"] == (
        "/usr/bin/nanofleet-agent run --config /etc/nanofleet/agent.toml")
    assert one["Service.ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["Service.User"] == one["Service.Group"] == "nanofleet"
    assert one["Service.StateDirectory"] == one["Service.RuntimeDirectory"] == "nanofleet"
    assert one["Service.RuntimeDirectoryMode"] == "0750"
    assert one["Service.UMask"] == "0077"
    families = one["Service.RestrictAddressFamilies"].split()
    assert "AF_UNIX" in families  # sd_notify, journald and the control socket
    assert one["Service.IPAddressDeny"] == "any"
    assert one["Service.MemoryDenyWriteExecute"] == "yes"
    assert one["Service.MemoryMax"].endswith("M")  # bounded
    assert s["Install.WantedBy"] == ["multi-user.target"]


def test_sysusers_and_tmpfiles_in_a_scratch_root(tmp_path: Path) -> None:
    assert shutil.which("systemd-sysusers") and shutil.which("systemd-tmpfiles")
    root = tmp_path / "root"
    (root / "etc" / "nanofleet").mkdir(parents=True)
    for name in ("passwd", "group"):
        shutil.copy(f"/etc/{name}", root / "etc" / name)
    for name in ("shadow", "gshadow"):
        (root / "etc" / name).touch(mode=0o600)
    conf = PACKAGING / "sysusers.d" / "nanofleet.conf"
    proc = subprocess.run(["systemd-sysusers", f"--root={root}", "-"], input=conf.read_bytes(),
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    passwd = (root / "etc" / "passwd").read_text()
    user = next(line.split(":") for line in passwd.splitlines()
                if line.startswith("nanofleet:"))
    uid, gid, home, shell = int(user[2]), int(user[3]), user[5], user[6]
    assert 0 < uid < 1000 and home == "/var/lib/nanofleet" and shell == "/usr/sbin/nologin"
    assert f"nanofleet:x:{gid}:" in (root / "etc" / "group").read_text()

    tmpfiles_dir = root / "usr" / "lib" / "tmpfiles.d"
    tmpfiles_dir.mkdir(parents=True)
    shutil.copy(PACKAGING / "tmpfiles.d" / "nanofleet.conf", tmpfiles_dir)
    config = root / "etc" / "nanofleet" / "agent.toml"
    shutil.copy(EXAMPLE, config)
    config.chmod(0o644)
    proc = subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", "nanofleet.conf"],
                          capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    state = (root / "var" / "lib" / "nanofleet").stat()
    assert (state.st_uid, state.st_gid, state.st_mode & 0o777) == (uid, gid, 0o700)
    etc = (root / "etc" / "nanofleet").stat()
    assert (etc.st_uid, etc.st_gid, etc.st_mode & 0o777) == (0, gid, 0o750)
    cfg = config.stat()
    assert (cfg.st_uid, cfg.st_gid, cfg.st_mode & 0o777) == (0, gid, 0o640)


def test_example_config_validates() -> None:
    proc = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", str(EXAMPLE)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = EXAMPLE.read_text()
    assert 'socket = "/run/nanofleet/agent.sock"' in text  # the unit's RuntimeDirectory


# --- the real agent inside the unit's seccomp sandbox ------------------------------


def sandboxed(*command: str, strict: bool = True) -> list[str]:
    return [sys.executable, str(SANDBOX), *(["--strict"] if strict else []), str(UNIT), "--",
            *command]


def test_sandbox_refuses_what_the_unit_forbids() -> None:
    """W+X memory, a netlink socket and an @resources call fail inside; so the agent
    test below would notice if it needed them."""
    code = (
        "import mmap, os, socket\n"
        "def refused(f):\n"
        "    try: f()\n"
        "    except OSError as e: return e.errno\n"
        "print(refused(lambda: mmap.mmap(-1, 4096, prot=7)),\n"
        "      refused(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)),\n"
        "      refused(lambda: os.sched_setaffinity(0, {0})))\n"
    )
    proc = subprocess.run(sandboxed(sys.executable, "-c", code, strict=False),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    import errno

    assert proc.stdout.split() == [str(errno.EPERM), str(errno.EAFNOSUPPORT), str(errno.EPERM)]
    # --strict kills on a W+X mapping instead of refusing it quietly.
    strict = subprocess.run(sandboxed(sys.executable, "-c", "import mmap; mmap.mmap(-1, 4096, "
                                      "prot=7)"), capture_output=True, timeout=60)
    assert strict.returncode == -signal.SIGSYS


@pytest.fixture
def notify_sock() -> Iterator[tuple[str, socket.socket]]:
    tmp = tempfile.mkdtemp(prefix="nf-pkg-")
    path = os.path.join(tmp, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield path, sock
    finally:
        sock.close()
        shutil.rmtree(tmp, ignore_errors=True)


def wait_notification(sock: socket.socket, field: str, timeout: float,
                      proc: subprocess.Popen[bytes], log: Path) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(0.2)
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            if proc.poll() is not None:
                break
            continue
        if field in seen[-1].split("\n"):
            return seen
    raise AssertionError(f"no {field} (exit {proc.poll()}); got {seen}\n{log.read_text()}")


def test_agent_runs_inside_the_unit_sandbox(tmp_path: Path, broker, notify_sock) -> None:
    """The real daemon under the unit's syscall filter, MemoryDenyWriteExecute and
    RestrictAddressFamilies (strict: any syscall outside @system-service or any W+X
    mapping kills it): READY, results over MQTT, classify, reload, clean stop."""
    notify_path, sock = notify_sock
    pump_log = tmp_path / "pump.log"
    pump_log.write_text("")
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "agent.toml", "pump-07", state, broker.port,
                       f'[[sources]]\nkind = "file"\npath = "{pump_log}"\n'
                       'start_at = "beginning"\n')
    spy = Collector(broker.port, "nanofleet/v1/dev/pump-07/#")
    env = {k: v for k, v in os.environ.items()
           if k not in ("WATCHDOG_PID", "INVOCATION_ID", "JOURNAL_STREAM")}
    env.update(NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="2000000", PYTHONPATH=str(ROOT))
    out = tmp_path / "agent.out"
    with open(out, "wb") as logf:
        proc = subprocess.Popen(
            sandboxed(sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)),
            stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        try:
            wait_notification(sock, "READY=1", 90, proc, out)
            with open(pump_log, "a") as f:
                f.write("pump-07 pressure 3.2 bar nominal\n")
                f.write("pump-07 ERROR seal leak detected, pressure dropping\n")
            try:
                spy.wait_for(lambda ms: any("/results/" in m.topic for m in ms), timeout=30)
            except TimeoutError as exc:
                raise AssertionError(out.read_text()) from exc
            resp = ask(state / "agent.sock", "classify", {"text": ["bearing overheating"]})
            assert resp["ok"], resp
            wait_notification(sock, "WATCHDOG=1", 10, proc, out)
            proc.send_signal(signal.SIGHUP)
            seen = wait_notification(sock, "READY=1", 30, proc, out)
            assert any("RELOADING=1" in m for m in seen)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, out.read_text()
            assert time.monotonic() - t0 < 10
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            spy.close()
    assert proc.returncode != -signal.SIGSYS


# The Debian package (build, payload, install/remove/purge): tests/test_device_package.py
