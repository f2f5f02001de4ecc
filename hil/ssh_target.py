"""A device target the rig reaches over SSH: a Debian root file system with its own
``sshd``, in its own network namespace.

What it is made of:

- a private copy of the cached Debian root file system (:mod:`hil.rootfs`: Debian 12,
  python3, systemd's tools, python3-systemd, openssh-server);
- the network namespace of the device's :class:`~hil.links.NamespaceLink` (the *data*
  link to the broker, which a network fault cuts) plus a second veth pair, the
  *management* link, on which ``sshd`` listens: a cut of the data link leaves SSH up,
  as a lab's management port would;
- ``sshd`` as PID 1 of its own PID and mount namespaces, chrooted into the copy
  (``/proc``, ``/dev``, a tmpfs ``/run`` mounted for it): what it starts cannot see
  or signal the host's processes, and everything dies with it;
- a fresh Ed25519 key pair for the rig (root's ``authorized_keys``) and fresh host
  keys; the real ``ssh``/``scp`` clients with a multiplexed connection
  (``ControlMaster``), so that each command costs a round trip, not a handshake.

Differences from a board: no systemd as PID 1 (the agent is started by
:class:`~hil.ssh_device.SshDevice`'s small supervisor, not by the unit, so the
unit's sandbox is not applied: ``tests/test_packaging.py`` checks that separately),
the host's kernel, clock and CPU, and a power cut is kill -9 of the agent rather
than of the whole board.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

from hil.links import VethNamespace
from hil.rootfs import build_rootfs, clone

SSHD_CONFIG = """\
ListenAddress {address}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile /run/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
Subsystem sftp /usr/lib/openssh/sftp-server
"""

# Run inside the target's fresh mount and PID namespaces (argv: ROOT CONFIG).
_BOOT = r"""
set -eu
R="$1"
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"
mkdir -p "$R/run/sshd"
exec chroot "$R" /usr/sbin/sshd -D -e -f "$2"
"""


class TargetError(RuntimeError):
    """The target could not be made or reached; the message says which step."""


class SshTarget:
    """One target machine; ``start()`` boots it, ``close()`` removes it."""

    def __init__(self, workdir: Path, ns: VethNamespace, *, arch: str | None = None) -> None:
        for tool in ("ssh", "scp", "ssh-keygen", "unshare", "chroot"):
            if shutil.which(tool) is None:
                raise TargetError(f"{tool} missing: apt-get install openssh-client "
                                  "util-linux coreutils")
        self.dir = workdir
        self.ns = ns
        self.arch = arch
        self.root = workdir / "rootfs"
        self.key = workdir / "rig_ed25519"
        self.address = ""
        self._sshd: subprocess.Popen[bytes] | None = None
        self._log = workdir / "sshd.log"

    # --- boot ----------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        clone(build_rootfs(self.arch), self.root)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hil-rig",
                        "-f", str(self.key)], check=True)
        ssh_dir = self.root / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(Path(f"{self.key}.pub").read_text())
        subprocess.run(["chroot", str(self.root), "ssh-keygen", "-A"], check=True,
                       capture_output=True)
        _host_ip, self.address = self.ns.add_pair("m")
        (self.root / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
        (self.root / "etc/ssh/sshd_hil.conf").write_text(
            SSHD_CONFIG.format(address=self.address))
        with self._log.open("ab") as log:
            self._sshd = subprocess.Popen(
                [*self.ns.prefix(), "unshare", "--mount", "--pid", "--fork",
                 "--propagation", "private", "--kill-child", "sh", "-c", _BOOT, "boot",
                 str(self.root), "/etc/ssh/sshd_hil.conf"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._sshd.poll() is not None:
                raise TargetError(f"sshd exited ({self._sshd.returncode}):\n"
                                  f"{self._log.read_text(errors='replace')[-2000:]}")
            if self.ssh("true", timeout=5, check=False).returncode == 0:
                return
            time.sleep(0.3)
        raise TargetError(f"no SSH answer from {self.address} within {timeout} s")

    # --- the rig's commands --------------------------------------------------------------
    def _options(self) -> list[str]:
        return ["-F", "/dev/null", "-i", str(self.key), "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
                "-o", f"UserKnownHostsFile={self.dir / 'known_hosts'}",
                "-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=5",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self.dir / 'cm-%C'}",
                "-o", "ControlPersist=300", "-o", "LogLevel=ERROR"]

    def ssh_command(self, command: str) -> list[str]:
        """The argv that runs ``command`` (a shell line) on the target."""
        return ["ssh", *self._options(), f"root@{self.address}", command]

    def ssh(self, command: str, *, input: bytes | None = None, timeout: float = 30.0,
            check: bool = True) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(self.ssh_command(command), input=input, capture_output=True,
                              timeout=timeout)
        if check and proc.returncode != 0:
            raise TargetError(f"ssh {command!r} on {self.address} failed "
                              f"({proc.returncode}): {proc.stderr.decode(errors='replace')}")
        return proc

    def put(self, local: Path, remote: str) -> None:
        proc = subprocess.run(["scp", "-q", *self._options(), str(local),
                               f"root@{self.address}:{remote}"], capture_output=True, timeout=120)
        if proc.returncode != 0:
            raise TargetError(f"scp {local} -> {remote} failed: {proc.stderr.decode()}")

    def get(self, remote: str, local: Path) -> bool:
        """Copy ``remote`` back; False when it does not exist."""
        proc = self.ssh(f"test -f {shlex.quote(remote)} && cat {shlex.quote(remote)}",
                        check=False, timeout=60)
        if proc.returncode != 0:
            return False
        local.write_bytes(proc.stdout)
        return True

    def write(self, remote: str, data: bytes, mode: str = "0644") -> None:
        q = shlex.quote(remote)
        self.ssh(f"mkdir -p $(dirname {q}) && cat > {q} && chmod {mode} {q}", input=data)

    def describe(self) -> str:
        return f"Debian root file system over SSH at {self.address} (netns {self.ns.name})"

    def close(self) -> None:
        subprocess.run(["ssh", *self._options(), "-O", "exit", f"root@{self.address}"],
                       capture_output=True, timeout=10)
        if self._sshd is not None and self._sshd.poll() is None:
            self._sshd.send_signal(signal.SIGKILL)  # PID 1 of its namespace: all go with it
            self._sshd.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)
