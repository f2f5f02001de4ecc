"""The systemd device driver: the device package installed in a container whose PID 1 is
systemd (:class:`hil.systemd_target.SystemdTarget`), the agent run by its real unit.

What differs from the SSH driver, which starts the agent with a small supervisor:

- power on is ``systemctl start`` of ``nanofleet-agent.service`` as shipped: the agent
  runs sandboxed (seccomp, no capabilities, a read-only system), reports READY and its
  status through sd_notify and is watched by systemd's watchdog;
- the rig is the power switch: a drop-in sets ``Restart=no`` (the shipped unit restarts a
  failed agent after 5 s by itself, which would race the rig's own power on after a cut)
  and ``IPAddressAllow=`` the broker's address, as an operator's drop-in does for a
  broker that is not on the device (the unit allows only loopback);
- a power cut is ``systemctl kill --signal=KILL``; a power cut at an OTA state runs the
  agent through ``hil/ota_crash.py`` by a second drop-in that replaces ``ExecStart=``;
- the agent's output is the unit's journal (``journalctl -u``), collected as
  ``agent.log``.

The container joins the link's network namespace, so network faults cut the broker link
as for SSH devices; the rig reaches the device through ``nsenter``, not a network.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from hil.devices import DeviceDriver, FleetEndpoints
from hil.links import NamespaceLink
from hil.scenario import AgentSpec
from hil.ssh_device import (
    BOOT_ID_FILE,
    CONFIG,
    HIL_DIR,
    LOG_DIR,
    OTA_CRASH,
    PYTHON,
    ROOT_FILE,
    STATE_DIR,
    device_deb,
    package_config,
    query_command,
)
from hil.systemd_target import SystemdTarget, SystemdTargetError

UNIT = "nanofleet-agent.service"
DROP_IN = f"/etc/systemd/system/{UNIT}.d"
RIG_CONF = f"{DROP_IN}/hil-rig.conf"
CRASH_CONF = f"{DROP_IN}/hil-ota-crash.conf"
_SHOW = ("ActiveState", "SubState", "InvocationID", "ExecMainCode", "ExecMainStatus")
_CLD_EXITED = "1"  # ExecMainCode: the main process exited (else killed or dumped)


def exit_code_of(props: dict[str, str]) -> int | None:
    """The shell-style exit code of a unit's ended main process (128 + signal when it was
    killed), or None while it is not ended (pure)."""
    if props.get("ActiveState") not in ("inactive", "failed"):
        return None
    status = int(props.get("ExecMainStatus") or 0)
    return status if props.get("ExecMainCode") in (_CLD_EXITED, "0", "") else 128 + status


class SystemdDevice(DeviceDriver):
    """A device whose agent runs under systemd as shipped. Its link must be a
    :class:`NamespaceLink` (the container joins the link's namespace)."""

    def __init__(self, device_id: str, link: NamespaceLink, workdir: Path, *,
                 agent: AgentSpec, fleet: FleetEndpoints, deb: Path | None = None) -> None:
        super().__init__(device_id, link)
        self.dir = workdir
        self.target = SystemdTarget(workdir, name=device_id, netns=link.ns.name)
        self._lock = threading.Lock()
        self._invocation = ""  # the unit's invocation the rig started last
        self._crash_armed = False
        try:
            self.target.start()
            version = self.install(deb or device_deb())
            self.runtime = "litert" if version.endswith("+litert") else "onnxruntime"
            self.configure(agent, fleet)
        except BaseException:
            self.target.stop()
            raise

    # --- provisioning --------------------------------------------------------------------
    def install(self, deb: Path) -> str:
        self.target.path("/root/nanofleet-agent.deb").write_bytes(deb.read_bytes())
        self.target.run("DEBIAN_FRONTEND=noninteractive dpkg --force-unsafe-io -i "
                        "/root/nanofleet-agent.deb", timeout=300)
        return self.target.run("dpkg-query -W -f '${Version}' nanofleet-agent").stdout

    def configure(self, agent: AgentSpec, fleet: FleetEndpoints) -> None:
        t = self.target
        link = self.link
        assert isinstance(link, NamespaceLink)
        t.path(ROOT_FILE).write_bytes(fleet.root_file.read_bytes())
        t.path(HIL_DIR).mkdir(parents=True, exist_ok=True)
        t.path(LOG_DIR).mkdir(parents=True, exist_ok=True)
        t.path(f"{LOG_DIR}/device.log").touch()
        t.path(f"{HIL_DIR}/ota_crash.py").write_bytes(OTA_CRASH.read_bytes())
        self.new_boot()
        t.path(CONFIG).write_text(package_config(self.device_id, link, agent, fleet,
                                                 self.runtime))
        t.path(DROP_IN).mkdir(parents=True, exist_ok=True)
        t.path(RIG_CONF).write_text(
            "# The HIL rig is this device's power switch, and its broker is not on loopback.\n"
            f"[Service]\nRestart=no\nIPAddressAllow={link.broker_host}\n")
        t.run(f"chgrp nanofleet {CONFIG} && chmod 0640 {CONFIG} && chmod -R a+rX {HIL_DIR} "
              f"{LOG_DIR} && systemctl daemon-reload && setpriv --reuid=nanofleet "
              f"--regid=nanofleet --init-groups nanofleet-agent check-config {CONFIG}")

    # --- power ---------------------------------------------------------------------------
    def _show(self) -> dict[str, str]:
        return self.target.unit(UNIT, *_SHOW)

    def power_on(self, crash_at_ota_state: str | None = None) -> None:
        if self.running:
            raise RuntimeError(f"{self.device_id}: the agent is already running")
        # No exit code until the new invocation is known: the last one's would otherwise
        # be read as this power on's by the rig's watcher.
        self._invocation = ""
        self.power_ons += 1
        crash = self.target.path(CRASH_CONF)
        if crash_at_ota_state:
            crash.write_text(f"[Service]\nExecStart=\nExecStart={PYTHON} {HIL_DIR}/ota_crash.py "
                             f"{shlex.quote(crash_at_ota_state)} run --config {CONFIG}\n")
        else:
            crash.unlink(missing_ok=True)
        if bool(crash_at_ota_state) or self._crash_armed:
            self.target.run("systemctl daemon-reload")
        self._crash_armed = bool(crash_at_ota_state)
        before = self._show()["InvocationID"]
        self.target.run(f"systemctl reset-failed {UNIT}; systemctl start --no-block {UNIT}")
        deadline = time.monotonic() + 30
        while (now := self._show()["InvocationID"]) in ("", before):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.device_id}: systemd did not start {UNIT}:\n"
                                   f"{self.output_tail()}")
            time.sleep(0.05)
        self._invocation = now

    def wait_ready(self, timeout: float) -> None:
        self._wait_answering(timeout, (SystemdTargetError, ValueError,
                                       subprocess.TimeoutExpired))

    def power_cut(self) -> None:
        if self.running:
            self.target.run(f"systemctl kill --signal=KILL {UNIT}", check=False)
            self._wait_exit(10)

    def new_boot(self) -> None:
        # The rig cuts the agent, not the container's kernel (the host's): simulated.
        self.target.path(BOOT_ID_FILE).write_text(f"{uuid.uuid4()}\n")

    def shutdown(self, timeout: float = 15.0) -> int | None:
        if not self._invocation:
            return None
        if self.exit_code() is None:
            self.target.run(f"systemctl stop {UNIT}", check=False, timeout=timeout + 20)
        return self._wait_exit(10)

    def exit_code(self) -> int | None:
        if not self._invocation:
            return None
        if not self.target.alive:
            return 128 + 9  # the whole container went away: the power, as far as it knows
        try:
            props = self._show()
        except (SystemdTargetError, subprocess.TimeoutExpired):
            return None  # systemd did not answer this time; the rig's watcher asks again
        if props["InvocationID"] != self._invocation:
            return None  # another start is under way
        return exit_code_of(props)

    @property
    def running(self) -> bool:
        return bool(self._invocation) and self.exit_code() is None

    # --- traffic, queries, logs ----------------------------------------------------------
    def append_lines(self, lines: list[str]) -> None:
        with self._lock, self.target.path(f"{LOG_DIR}/device.log").open("a") as f:
            f.write("".join(line + "\n" for line in lines))

    def query(self, cmd: str, **args: Any) -> dict[str, Any]:
        proc = self.target.run(query_command(cmd, args), check=False, timeout=20)
        if proc.returncode != 0:
            raise SystemdTargetError(f"query {cmd} failed: {proc.stderr[-500:]}")
        answer: dict[str, Any] = json.loads(proc.stdout)
        return answer

    def output_tail(self, lines: int = 40) -> str:
        return self.target.run(f"journalctl -u {UNIT} --no-pager -o short-precise -n {lines}",
                               check=False).stdout

    def collect(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "agent.log").write_text(self.target.run(
            f"journalctl -u {UNIT} --no-pager -o short-precise", check=False,
            timeout=60).stdout)
        out = [dest / "agent.log"]
        for inside, name in ((CONFIG, "agent.toml"), (f"{LOG_DIR}/device.log", "device.log"),
                             (f"{STATE_DIR}/ota/logs.json", "ota-record.json"),
                             ("/var/lib/dpkg/status", "dpkg-status")):
            src = self.target.path(inside)
            if src.is_file():
                (dest / name).write_bytes(src.read_bytes())
                out.append(dest / name)
        return out

    def describe(self) -> str:
        return (f"SystemdDevice (systemd in a container, {self.target.root}) over "
                f"{self.link.describe()}")

    def close(self) -> None:
        try:
            with contextlib.suppress(SystemdTargetError, OSError, subprocess.TimeoutExpired):
                self.shutdown()
        finally:
            self.target.stop()
