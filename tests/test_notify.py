"""sd_notify against a real AF_UNIX datagram socket bound by the test (path and abstract),
through both backends (libsystemd via systemd-python, and the plain socket module)."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.notify import (
    MAX_PENDING,
    SEND_TIMEOUT_S,
    Notifier,
    format_message,
    notify_address,
    watchdog_interval_from_env,
)

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Datagram:
    fields: dict[str, str]
    raw: str
    sender_pid: int | None


class NotifySocket:
    """What systemd does: a bound datagram socket that receives KEY=value messages,
    with SO_PASSCRED so we see the sender's pid (NotifyAccess=main checks it)."""

    def __init__(self, env_value: str, address: str) -> None:
        self.env_value = env_value
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.sock.settimeout(5)

    def receive(self) -> Datagram:
        data, ancdata, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        pid = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("3i", payload[:12])
        raw = data.decode()
        fields = dict(line.split("=", 1) for line in raw.split("\n") if line)
        return Datagram(fields, raw, pid)

    def assert_empty(self) -> None:
        self.sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            self.sock.recv(4096)
        self.sock.settimeout(5)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request: pytest.FixtureRequest) -> Iterator[NotifySocket]:
    if request.param == "path":
        # A short directory: sun_path is limited to 108 bytes.
        tmp = tempfile.mkdtemp(prefix="nf-notify-")
        path = os.path.join(tmp, "notify.sock")
        ns = NotifySocket(path, path)
    else:
        name = f"nanofleet-test-{uuid.uuid4().hex}"
        ns = NotifySocket("@" + name, "\0" + name)
        tmp = None
    try:
        yield ns
    finally:
        ns.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(params=["libsystemd", "socket"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "libsystemd":
        pytest.importorskip("systemd.daemon")
    return str(request.param)


def test_disabled_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    n = Notifier()
    assert not n.enabled
    assert n.backend == "none"
    assert n.ready("up") is False
    assert n.watchdog() is False
    assert n.watchdog_interval() is None


def test_life_cycle_messages(
    notify_socket: NotifySocket, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", notify_socket.env_value)
    n = Notifier(backend=backend)
    assert n.enabled and n.backend == backend

    assert n.status("starting: 2 sources")
    msg = notify_socket.receive()
    assert msg.fields == {"STATUS": "starting: 2 sources"}
    assert msg.sender_pid == os.getpid()

    assert n.ready("running: model sentiment v3")
    assert notify_socket.receive().raw == "READY=1\nSTATUS=running: model sentiment v3"

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    msg = notify_socket.receive()
    assert msg.fields["RELOADING"] == "1"
    assert before <= int(msg.fields["MONOTONIC_USEC"]) <= after
    assert n.ready()
    assert notify_socket.receive().raw == "READY=1"

    assert n.watchdog()
    assert notify_socket.receive().raw == "WATCHDOG=1"

    assert n.extend_timeout(2.5)
    assert notify_socket.receive().raw == "EXTEND_TIMEOUT_USEC=2500000"

    assert n.stopping("flushing spool")
    assert notify_socket.receive().fields == {"STOPPING": "1", "STATUS": "flushing spool"}
    notify_socket.assert_empty()


def test_status_newlines_cannot_inject_fields(notify_socket: NotifySocket) -> None:
    n = Notifier({"NOTIFY_SOCKET": notify_socket.env_value})
    assert n.backend == "socket"
    n.status("bad line\nREADY=1")
    msg = notify_socket.receive()
    assert msg.fields == {"STATUS": "bad line READY=1"}


def test_send_failure_is_reported_not_raised(tmp_path: Path) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert n.enabled
    assert n.ready() is False


def test_child_process_notifies_with_its_own_pid(notify_socket: NotifySocket) -> None:
    """The daemon's own process (as under systemd) with WATCHDOG_PID set to it by a
    shell `exec`, reading its watchdog interval and sending READY/WATCHDOG."""
    code = (
        "from agent.notify import Notifier\n"
        "n = Notifier()\n"
        "print(n.backend, n.watchdog_interval())\n"
        "n.ready('child up'); n.watchdog()\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID", "WATCHDOG_USEC")}
    env.update(NOTIFY_SOCKET=notify_socket.env_value, WATCHDOG_USEC="3000000",
               PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        ["sh", "-c", 'WATCHDOG_PID=$$ exec "$0" -c "$1"', sys.executable, code],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )
    backend_name, interval = proc.stdout.split()
    assert backend_name in ("libsystemd", "socket")
    assert float(interval) == 3.0
    first, second = notify_socket.receive(), notify_socket.receive()
    assert first.fields == {"READY": "1", "STATUS": "child up"}
    assert second.fields == {"WATCHDOG": "1"}
    assert first.sender_pid == second.sender_pid != os.getpid()


def test_watchdog_interval_rules() -> None:
    pid = 4242
    assert watchdog_interval_from_env({}, pid) is None
    assert watchdog_interval_from_env({"WATCHDOG_USEC": "30000000"}, pid) == 30.0
    assert watchdog_interval_from_env({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "4242"},
                                      pid) == 0.5
    # The watchdog is meant for another process (e.g. inherited by a child).
    assert watchdog_interval_from_env({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": "1"},
                                      pid) is None
    for bad in ("0", "-5", "soon", ""):
        assert watchdog_interval_from_env({"WATCHDOG_USEC": bad}, pid) is None
    assert watchdog_interval_from_env({"WATCHDOG_USEC": "1", "WATCHDOG_PID": "x"}, pid) is None


def test_notify_address_forms() -> None:
    assert notify_address(None) is None
    assert notify_address("") is None
    assert notify_address("/run/systemd/notify") == "/run/systemd/notify"
    assert notify_address("@abc") == "\0abc"
    assert notify_address("@") is None
    assert notify_address("vsock:2:1234") is None


def test_unusable_socket_value_disables_socket_backend() -> None:
    n = Notifier({"NOTIFY_SOCKET": "relative/path"})
    assert not n.enabled
    assert n.ready() is False


def test_format_message_rejects_bad_field_names() -> None:
    assert format_message({"READY": 1, "STATUS": "a\r\nb"}) == "READY=1\nSTATUS=a  b"
    for bad in ("ready", "", "A-B", "A=B"):
        with pytest.raises(ValueError, match="invalid sd_notify field name"):
            format_message({bad: 1})


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown sd_notify backend 'dbus'"):
        Notifier({}, backend="dbus")


def test_a_receiver_that_stopped_reading_cannot_freeze_the_daemon(tmp_path: Path) -> None:
    """AF_UNIX datagram queues are short (net.unix.max_dgram_qlen, often 10); a full one
    makes sendto block. Each notification gives up after SEND_TIMEOUT_S instead."""
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(path)  # bound, never read
        n = Notifier(environ={"NOTIFY_SOCKET": path})
        t0 = time.monotonic()
        results = [n.status(f"tick {i}") for i in range(40)]
        elapsed = time.monotonic() - t0
    assert results[0] is True
    assert results[-1] is False  # queue full: dropped, not blocked
    assert elapsed < 40 * (SEND_TIMEOUT_S + 0.1)


def test_a_dropped_reload_or_ready_is_sent_again_in_order(tmp_path: Path) -> None:
    """Under Type=notify-reload a lost RELOADING=1 or READY=1 leaves systemd waiting for the
    reload to end: those are kept when a full queue drops them and go first, in order, as
    soon as the receiver reads again. A dropped WATCHDOG or STATUS is not kept."""
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(path)
        n = Notifier(environ={"NOTIFY_SOCKET": path})
        while n.status("filling"):  # the receiver is busy: its queue fills up
            pass
        assert n.watchdog() is False
        assert n.reloading("reloading configuration") is False
        assert n.ready("reloaded") is False
        sink.settimeout(0.2)
        backlog = []
        try:
            while True:
                backlog.append(sink.recv(4096).decode())
        except TimeoutError:
            pass
        assert backlog and all(m == "STATUS=filling" for m in backlog)
        assert n.watchdog() is True  # the next tick: what was dropped goes first
        got = [sink.recv(4096).decode() for _ in range(3)]
        assert got[0].startswith("RELOADING=1\nMONOTONIC_USEC=")
        assert got[1] == "READY=1\nSTATUS=reloaded" and got[2] == "WATCHDOG=1"
        with pytest.raises(TimeoutError):
            sink.recv(4096)  # the dropped WATCHDOG and STATUS were not kept
        # A receiver that never reads again cannot make the daemon keep more than a few.
        while n.status("filling"):
            pass
        for i in range(MAX_PENDING + 2):
            n.ready(f"r{i}")
        assert len(n._pending) == MAX_PENDING
        assert n._pending[-1] == f"READY=1\nSTATUS=r{MAX_PENDING + 1}"
