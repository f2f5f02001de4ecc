"""Helpers the capture scenarios share: run things inside the two network namespaces,
log a marker line, stop what was started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SRV, CLI = "nfcap-srv", "nfcap-cli"
SERVER = "10.77.0.1"
# Extra client-side addresses: the many hosts a busy gateway sees (scanners, admins, sensors)
CLIENT_HOSTS = tuple(f"10.77.0.{i}" for i in range(10, 60))
# The server and twenty client hosts also speak IPv6 (real logs show both families)
SERVER6 = "fd77::1"
CLIENT_HOSTS6 = tuple(f"fd77::{i:x}" for i in range(0x2A0, 0x2B4))

Proc = subprocess.Popen[bytes]


def marker(how: str) -> None:
    subprocess.run(["busybox", "logger", "-t", "nfcapture", f"BEGIN {how}"], check=False)
    time.sleep(0.2)


def private_mounts(mounts: str, command: str) -> tuple[str, ...]:
    """``command`` in a private mount namespace after the shell ``mounts`` (bind mounts
    of scratch files over /etc, /home, ...): the daemon sees its packaged paths, and
    nothing of this machine is touched."""
    return ("unshare", "-m", "--propagation", "private", "sh", "-c", f"{mounts} && {command}")


def in_mount_ns(binds: Mapping[Path, str], command: str) -> tuple[str, ...]:
    """``command`` in a private mount namespace where each scratch path is bound where the
    packaged daemon keeps it (``/etc/bind``, ``/var/www``, ...), so the paths in its log are
    the ones a real server prints, and nothing of this machine's is touched. A directory's
    missing target is made (``/run/named``: empty, as packaged)."""
    for src, target in binds.items():
        if src.is_dir():
            Path(target).mkdir(parents=True, exist_ok=True)
    return private_mounts(" && ".join(f"mount --bind {s} {t}" for s, t in binds.items()),
                          command)


def run_in(ns: str, *cmd: str, timeout: float = 30, env: dict[str, str] | None = None) -> int:
    try:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *cmd],
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        ).returncode
    except subprocess.TimeoutExpired:
        return -1


def run_many(
    jobs: Sequence[tuple[str, ...]],
    workers: int = 6,
    timeout: float = 40,
    env: dict[str, str] | None = None,
) -> None:
    """Run client commands (each ``(ns, *cmd)``) a few at a time, as busy hosts overlap."""
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda job: run_in(job[0], *job[1:], timeout=timeout, env=env), jobs))


def start_in(ns: str, *cmd: str) -> Proc:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def py_in(ns: str, code: str, timeout: float = 30) -> int:
    return run_in(ns, "python3", "-c", code, timeout=timeout)


def stop(proc: Proc, sig: int = signal.SIGTERM, timeout: float = 8) -> None:
    """Signal ``proc`` and wait up to ``timeout`` s for it, then kill it."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_pidfiles(work: Path) -> None:
    """Stop daemons that forked (sshd, chronyd, dhclient) by the pid files we gave them."""
    for pidfile in sorted(work.glob("*.pid")):
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            pass
        pidfile.unlink(missing_ok=True)


def _stop_pidfile(path: Path, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        os.kill(int(path.read_text().split()[0]), sig)
