"""A device target booted with systemd as PID 1: the cached Debian root file system
(:mod:`hil.rootfs`) in a container (``systemd-nspawn --boot``), so the device package
runs as on a board: its maintainer scripts talk to a running systemd, the agent runs
under the real unit (``Type=notify``, the watchdog, the sandbox: seccomp, capabilities,
read-only file system) and reads the real journald.

The container shares the host's network namespace (its loopback reaches a broker the
test starts on 127.0.0.1), or joins a network namespace the rig made (``netns``: a
device behind a :class:`~hil.links.NamespaceLink`), and nothing else: its own PID,
mount, IPC and UTS namespaces and its own copy of the root file system. A few units a
headless test device does not need are masked (``MASKED``: sshd, the console login, the
periodic apt jobs), and the file system's ``policy-rc.d`` is removed
(maintainer scripts start and stop services, as on a board). Commands run inside through
``nsenter`` into the container's init. The host need not run systemd: without it the
container is started with ``--register=no --keep-unit`` in a cgroup of its own; a host
run by systemd registers it (not run here).

Differences from a board: the host's kernel (so the kernel boot id, the clock and
cgroups are the host's), no hardware watchdog, and ``IPAddressDeny=`` applies only where
the host's cgroups let systemd attach its BPF filter.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from hil.rootfs import build_rootfs, clone

# Not started in the container: sshd (its host keys are made per clone by hil.ssh_target,
# and it would listen on the host's ports), the console's login prompt and the session
# gate (nothing here logs in), and the periodic jobs of a general-purpose Debian (apt,
# dpkg backups, e2scrub): less to boot, nothing the package depends on.
MASKED = ("ssh.service", "console-getty.service", "systemd-user-sessions.service",
          "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
          "e2scrub_all.timer")


CGROUP_FS = Path("/sys/fs/cgroup")


def cgroup_hierarchies(fs: Path = CGROUP_FS) -> list[Path]:
    """Where a container's own cgroup goes: the unified hierarchy alone (cgroup v2), or
    systemd's named v1 hierarchy and the unified one beside it (hybrid)."""
    if (fs / "cgroup.controllers").exists():
        return [fs]
    return [h for h in (fs / "systemd", fs / "unified") if (h / "cgroup.procs").exists()]


class SystemdTargetError(RuntimeError):
    """The container did not boot, or a command in it failed."""


def machine_name(name: str) -> str:
    """A valid, unique nspawn machine name for ``name`` (a device id may hold ``_`` and be
    64 characters long; nspawn takes letters, digits and ``-``, and two runs of one
    scenario must not collide): pure but for the random tag."""
    base = re.sub(r"[^A-Za-z0-9-]+", "-", name).strip("-")[:40] or "target"
    return f"{base}-{uuid.uuid4().hex[:8]}"


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class SystemdTarget:
    """One booted container. ``start`` boots it, ``run`` runs a shell script in it as
    root, ``stop`` powers it off (the copy of the file system stays for the report)."""

    def __init__(self, workdir: Path, *, name: str = "nanofleet-target",
                 arch: str | None = None, netns: str | None = None) -> None:
        self.dir = workdir
        self.netns = netns  # an `ip netns` name to join instead of the host's network
        self.root = workdir / "rootfs"
        self.name = machine_name(name)
        self.arch = arch
        self.console = workdir / "console.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self.leader = 0  # the container's init, as the host sees it
        self._cgroups: list[Path] = []

    def start(self, timeout: float = 120.0) -> None:
        if shutil.which("systemd-nspawn") is None:
            raise SystemdTargetError("systemd-nspawn not found: apt-get install "
                                     "systemd-container (scripts/bootstrap.sh does)")
        self.dir.mkdir(parents=True, exist_ok=True)
        clone(build_rootfs(self.arch, quiet=True), self.root)
        for unit in MASKED:
            (self.root / "etc/systemd/system" / unit).symlink_to("/dev/null")
        # The cached file system forbids starting services (policy-rc.d exits 101: the
        # other targets have no init). Here systemd runs, and deb-systemd-invoke in the
        # maintainer scripts must act as on a board.
        (self.root / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
        nspawn = ["systemd-nspawn", "--quiet", "--directory", str(self.root), "--boot",
                  f"--machine={self.name}",
                  *([f"--network-namespace-path=/run/netns/{self.netns}"] if self.netns
                    else [])]
        if Path("/run/systemd/system").exists():
            # A host run by systemd: nspawn registers the container, which gets a scope
            # (a cgroup) of its own from the host's systemd. (Not the machine measured
            # here; its PID 1 is not systemd.)
            argv = nspawn
        else:
            # No systemd on the host: nspawn keeps the cgroup it is started in for the
            # container (--keep-unit), so each container is started in one of its own.
            # Sharing one, the containers' systemds created and removed each other's
            # unit cgroups: "Failed to attach to cgroup /system.slice/...", a unit failed
            # at boot in 3 of about 45 boots of the device tests (up to four at once).
            hierarchies = cgroup_hierarchies()
            if not hierarchies:
                raise SystemdTargetError(f"no cgroup hierarchy for a container under "
                                         f"{CGROUP_FS} (neither cgroup v2 nor systemd's v1)")
            self._cgroups = [h / "nanofleet-hil" / self.name for h in hierarchies]
            for group in self._cgroups:
                group.mkdir(parents=True)
            # set -e: a container that could not join its cgroup must not boot in the
            # shared one.
            join = "; ".join(f"echo $$ > {shlex.quote(str(g / 'cgroup.procs'))}"
                             for g in self._cgroups)
            argv = ["sh", "-c", f'set -e; {join}; exec "$@"', "sh", *nspawn[:1],
                    "--register=no", "--keep-unit", *nspawn[1:]]
        with self.console.open("wb") as out:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.leader:
            if self._proc.poll() is not None:
                raise SystemdTargetError(f"systemd-nspawn exited ({self._proc.returncode}) "
                                         f"before booting: {self._console_tail()}")
            inits = [p for p in _children(self._proc.pid)
                     if Path(f"/proc/{p}/comm").read_text().strip() == "systemd"]
            if inits:
                self.leader = inits[0]
            elif time.monotonic() > deadline:
                raise SystemdTargetError(f"no systemd in the container: {self._console_tail()}")
            else:
                time.sleep(0.1)
        # Until boot is over ("starting" meanwhile; nothing at all until systemd's own
        # socket is up, which --wait does not wait for).
        state = ""
        while state not in ("running", "degraded", "maintenance", "stopping"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
            state = self.run("systemctl is-system-running", check=False).stdout.strip()
        if state != "running":
            failed = self.run("systemctl --failed --no-legend --plain; journalctl -b "
                              "--no-pager -p warning -n 30", check=False).stdout
            raise SystemdTargetError(f"the container's systemd is {state!r}; failed units "
                                     f"and the boot's warnings:\n{failed}")

    def run(self, script: str, *, check: bool = True, timeout: float = 60.0,
            user: str | None = None) -> subprocess.CompletedProcess[str]:
        """``sh -c script`` inside the container (as root, or ``user`` via setpriv)."""
        if not self.leader:
            raise SystemdTargetError("the container is not running")
        argv = ["sh", "-c", script]
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
        proc = subprocess.run(["nsenter", "--target", str(self.leader), "--all", "--", *argv],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise SystemdTargetError(f"in the container, {shlex.join(argv)} exited "
                                     f"{proc.returncode}:\n{proc.stdout[-2000:]}"
                                     f"{proc.stderr[-2000:]}")
        return proc

    def path(self, inside: str) -> Path:
        """Where a path of the container lives on the host (its files are plain files)."""
        return self.root / inside.lstrip("/")

    def unit(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show`` properties of a unit."""
        out = self.run(f"systemctl show {shlex.quote(unit)} "
                       + " ".join(f"-p {p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def stop(self, timeout: float = 30.0) -> int | None:
        """Power off (SIGTERM to systemd-nspawn asks the container's init to), then kill."""
        proc, self._proc = self._proc, None
        self.leader = 0
        try:
            if proc is None:
                return None
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            return proc.returncode
        finally:
            self._remove_cgroups()  # made before a failed start too

    @property
    def alive(self) -> bool:
        """The container (its systemd-nspawn) is still running."""
        return self._proc is not None and self._proc.poll() is None

    def _remove_cgroups(self) -> None:
        """The container's cgroups, deepest first (a cgroup goes only when empty: what a
        killed container left running is killed first and given a moment to go)."""
        def members() -> list[int]:
            pids = []
            for group in self._cgroups:
                for procs in group.rglob("cgroup.procs"):
                    with contextlib.suppress(OSError):
                        pids += [int(p) for p in procs.read_text().split()]
            return pids

        deadline = time.monotonic() + 5
        while (left := members()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        for group in self._cgroups:
            for path in sorted((p for p in group.rglob("*") if p.is_dir()),
                               key=lambda p: len(p.parts), reverse=True) + [group]:
                # Still populated (a process that would not die) or already gone: left.
                with contextlib.suppress(OSError):
                    path.rmdir()
        self._cgroups = []

    def _console_tail(self) -> str:
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no console output)"

    def __enter__(self) -> SystemdTarget:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
