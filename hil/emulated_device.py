"""A device of another architecture (arm64) on this machine: the device package's
arm64 build installed with ``dpkg -i`` in an arm64 Debian root file system, its agent
run in a ``chroot`` under ``qemu-user-static`` (binfmt_misc). Nothing of the host's
Python is used: the arm64 ``python3.11`` from Debian runs the package's venv.

The device shares this machine's network (a direct link: the broker and the fleet
server on 127.0.0.1), so it takes updates over HTTP from the amd64 fleet server.
Its config, state directory, followed log file and output live inside the root file
system (``/var/lib/nanofleet-hil/<id>``); the rig reaches the control socket through
the same files from outside. Power cut = kill -9 of the emulated agent.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hil.devices import FleetEndpoints, LocalProcessDevice, agent_config_toml
from hil.links import Link
from hil.rootfs import build_rootfs, clone
from hil.scenario import AgentSpec
from hil.ssh_device import PYTHON as PACKAGED_PYTHON
from hil.ssh_device import device_deb, with_runtime

INNER = Path("/var/lib/nanofleet-hil")
OTA_CRASH = Path(__file__).with_name("ota_crash.py")  # a power cut at an OTA state
OTA_CRASH_INNER = INNER / "ota_crash.py"
_ENTER = """set -eu
R="$1"; shift
mount -t proc proc "$R/proc"
mount --rbind /dev "$R/dev"
exec chroot "$R" "$@"
"""
EMULATION_SLOWDOWN = 5


class EmulatedDevice(LocalProcessDevice):
    """The packaged agent in a foreign-architecture root file system (see module doc)."""

    def __init__(self, device_id: str, link: Link, workdir: Path, *, agent: AgentSpec,
                 fleet: FleetEndpoints, ota_transport: str = "http", arch: str = "arm64",
                 flavour: str = "litert") -> None:
        self.arch = arch
        self.rootfs = clone(build_rootfs(arch), workdir / "rootfs")
        try:
            self._setup(device_id, link, agent, fleet, ota_transport, flavour)
        except BaseException:
            shutil.rmtree(self.rootfs, ignore_errors=True)
            raise

    def _setup(self, device_id: str, link: Link, agent: AgentSpec, fleet: FleetEndpoints,
               ota_transport: str, flavour: str) -> None:
        self.deb_version = self._install(device_deb(flavour, self.arch))
        inner = INNER / device_id
        host_dir = self.rootfs / inner.relative_to("/")
        shutil.copyfile(fleet.root_file, self.rootfs / "etc/nanofleet/root.json")
        super().__init__(device_id, link, host_dir, agent=agent, fleet=fleet,
                         ota_transport=ota_transport)
        # The same config with the paths the agent sees inside the root file system.
        self.config.write_text(with_runtime(agent_config_toml(
            device_id, state_dir=inner / "state", log_file=inner / "device.log", link=link,
            agent=agent, fleet=FleetEndpoints(fleet.http_base, Path("/etc/nanofleet/root.json")),
            ota_transport=ota_transport, boot_id_file=inner / "boot_id"), flavour),
            encoding="utf-8")
        self._chroot("chown", "-R", "nanofleet:nanofleet", str(inner))
        check = self._chroot("setpriv", "--reuid=nanofleet", "--regid=nanofleet",
                             "--init-groups", "/usr/bin/nanofleet-agent", "check-config",
                             str(inner / "agent.toml"))
        if check.returncode != 0:
            raise RuntimeError(f"{device_id}: check-config failed in the {self.arch} root file "
                               f"system: {check.stdout}{check.stderr}")

    def chroot_command(self, *argv: str) -> list[str]:
        """``argv`` inside the root file system, with /proc and /dev mounted in a private
        mount namespace (systemd-tmpfiles and the runtimes read /proc). Every step execs
        the next: the agent keeps the pid the rig started."""
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _ENTER, "enter",
                str(self.rootfs), *argv]

    def _chroot(self, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.chroot_command(*argv), capture_output=True, text=True,
                              timeout=timeout)

    def _install(self, deb: Path) -> str:
        shutil.copyfile(deb, self.rootfs / "tmp/nanofleet-agent.deb")
        proc = self._chroot("dpkg", "--force-unsafe-io", "-i", "/tmp/nanofleet-agent.deb")
        if proc.returncode != 0:
            raise RuntimeError(f"dpkg -i in the {self.arch} root file system failed:\n"
                               f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        return self._chroot("dpkg-query", "-W", "-f", "${Version} ${Architecture}",
                            "nanofleet-agent").stdout

    def wait_ready(self, timeout: float) -> None:
        # Python under qemu-user starts several times slower (imports of numpy, pydantic,
        # LiteRT: about a minute here); the rig's timeouts are for native agents.
        super().wait_ready(timeout * EMULATION_SLOWDOWN)

    def agent_command(self, crash_at: str | None = None) -> list[str]:
        inner_config = "/" + str(self.config.relative_to(self.rootfs))
        runner = ["/usr/bin/nanofleet-agent"]
        if crash_at:  # the packaged interpreter runs the rig's wrapper (hil/ota_crash.py)
            shutil.copyfile(OTA_CRASH, self.rootfs / OTA_CRASH_INNER.relative_to("/"))
            runner = [PACKAGED_PYTHON, str(OTA_CRASH_INNER), crash_at]
        return self.chroot_command("setpriv", "--reuid=nanofleet", "--regid=nanofleet",
                                   "--init-groups", *runner, "run", "--config", inner_config)

    def describe(self) -> str:
        return (f"EmulatedDevice (nanofleet-agent {self.deb_version} in a Debian {self.arch} "
                f"root file system under qemu-user-static) over {self.link.describe()}")

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.rootfs, ignore_errors=True)
