"""Devices under test. :class:`DeviceDriver` is what the rig needs from a device;
:class:`LocalProcessDevice` runs the real agent (``nanofleet-agent run``) as a child
process with its own config, state directory, followed log file and output log.

:class:`hil.ssh_device.SshDevice` is the second driver: a Debian root file system with
the device package installed from its .deb, reached over SSH (see docs/hil.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from agent.control import DaemonNotRunning, ask
from hil.links import Link
from hil.process import stop_process
from hil.scenario import AgentSpec
from hil.traffic import TrafficWriter

REPO_ROOT = Path(__file__).resolve().parents[1]


def wait_answering(socket: Path, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """True once the agent behind ``socket`` answers a status query; False when ``proc``
    exited or ``timeout`` passed first (``proc.poll()`` tells which)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if ask(socket, "status", {}, timeout=2).get("ok"):
                return True
        except (DaemonNotRunning, OSError, ValueError):
            pass  # not listening yet
        time.sleep(0.1)
    return False


@dataclass(frozen=True)
class FleetEndpoints:
    """What a device is provisioned with to reach the fleet's repository."""

    http_base: str  # http://127.0.0.1:PORT (the fleet server)
    root_file: Path  # the trusted root.json from the key ceremony


class DeviceDriver(ABC):
    """One device under test, as the rig drives it."""

    def __init__(self, device_id: str, link: Link) -> None:
        self.device_id = device_id
        self.link = link
        self.power_ons = 0  # how many times the agent was started

    @abstractmethod
    def power_on(self, crash_at_ota_state: str | None = None) -> None:
        """Start the agent (``crash_at_ota_state``: arm the agent's crash hook)."""

    @abstractmethod
    def wait_ready(self, timeout: float) -> None:
        """Return once the agent answers queries; raise if it died or timed out."""

    @abstractmethod
    def power_cut(self) -> None:
        """Stop the agent abruptly (kill -9 / cut the power): no clean-up runs."""

    @abstractmethod
    def new_boot(self) -> None:
        """The device comes back in a new boot: a fresh kernel boot id for its agent (rig
        devices keep theirs in a file of their own, the agent's ``[ota] boot_id_file``:
        killing the agent does not reboot a kernel)."""

    @abstractmethod
    def shutdown(self, timeout: float = 15.0) -> int | None:
        """Stop the agent cleanly; the exit code (None if it was not running)."""

    @abstractmethod
    def exit_code(self) -> int | None:
        """The agent's exit code once it has exited by itself, else None."""

    @property
    @abstractmethod
    def running(self) -> bool:
        """The agent process is up."""

    @abstractmethod
    def append_lines(self, lines: list[str]) -> None:
        """Write lines to the log the agent follows (the device's traffic)."""

    @abstractmethod
    def query(self, cmd: str, **args: Any) -> dict[str, Any]:
        """A technician query (``nanofleet-agent query``); the response document."""

    @abstractmethod
    def collect(self, dest: Path) -> list[Path]:
        """Copy the device's logs into ``dest``; the files written."""

    def describe(self) -> str:
        return f"{type(self).__name__} over {self.link.describe()}"

    def output_tail(self, lines: int = 40) -> str:
        """The end of the agent's output, for error messages ("" when there is none)."""
        return ""

    def _wait_exit(self, timeout: float) -> int | None:
        """The exit code once the agent has exited, or None if it still runs after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                return code
            time.sleep(0.1)
        return None

    def _wait_answering(self, timeout: float,
                        transient: tuple[type[BaseException], ...]) -> None:
        """Until the agent answers a status query (``transient``: the errors of a device
        still starting); raise if it exits or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                raise RuntimeError(f"{self.device_id}: the agent exited ({code}) while "
                                   f"starting:\n{self.output_tail()}")
            try:
                if self.query("status").get("ok"):
                    return
            except transient:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{self.device_id}: the agent did not answer within {timeout} s:\n"
                           f"{self.output_tail()}")

    def close(self) -> None:  # noqa: B027 - a driver with nothing to release keeps this
        """Release what the driver holds (after shutdown and collect)."""


def agent_config_toml(device_id: str, *, state_dir: Path, log_file: Path, link: Link,
                      agent: AgentSpec, fleet: FleetEndpoints, ota_transport: str,
                      boot_id_file: Path) -> str:
    """The agent's config file for a rig device (pure)."""
    if ota_transport == "mqtt":
        ota_urls = 'transport = "mqtt"\n'
    else:
        ota_urls = (f'metadata_url = "{fleet.http_base}/repo/metadata/"\n'
                    f'target_base_url = "{fleet.http_base}/repo/targets/"\n')
    return f"""device_id = "{device_id}"
state_dir = "{state_dir}"
metrics_interval_s = {agent.metrics_interval_s}
log_level = "{agent.log_level}"

[mqtt]
host = "{link.broker_host}"
port = {link.device_port}
keepalive_s = {agent.mqtt_keepalive_s}
reconnect_max_s = {agent.reconnect_max_s}

[model]
slot = "logs"

[pipeline]
batch_size = {agent.batch_size}
batch_max_wait_ms = {agent.batch_max_wait_ms}

[[sources]]
kind = "file"
name = "device-log"
path = "{log_file}"
start_at = "beginning"
poll_interval_s = 0.05

[ota]
{ota_urls}root_file = "{fleet.root_file}"
boot_id_file = "{boot_id_file}"
check_interval_s = 5
retry_after_s = 3
http_timeout_s = 5
min_free_bytes = 0

[ota.trial]
duration_s = {agent.trial_duration_s}
min_inferences = {agent.trial_min_inferences}
timeout_s = {max(agent.trial_timeout_s, agent.trial_duration_s)}
""" + ("" if agent.alert_repeat_window_s is None else
       f"\n[alerts]\nrepeat_window_s = {agent.alert_repeat_window_s}\n")


class LocalProcessDevice(DeviceDriver):
    """The real agent as a child process (inside the link's network namespace, if any)."""

    def __init__(self, device_id: str, link: Link, workdir: Path, *, agent: AgentSpec,
                 fleet: FleetEndpoints, ota_transport: str) -> None:
        super().__init__(device_id, link)
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir = workdir / "state"
        self.log_file = workdir / "device.log"  # what the agent follows
        self.log_file.touch()
        self.output = workdir / "agent.log"  # the agent's own stdout/stderr
        self.config = workdir / "agent.toml"
        self.boot_id = workdir / "boot_id"
        self.new_boot()
        self.config.write_text(agent_config_toml(
            device_id, state_dir=self.state_dir, log_file=self.log_file, link=link, agent=agent,
            fleet=fleet, ota_transport=ota_transport, boot_id_file=self.boot_id),
            encoding="utf-8")
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._log: IO[str] | None = None

    @property
    def socket(self) -> Path:
        return self.state_dir / "agent.sock"

    def power_on(self, crash_at_ota_state: str | None = None) -> None:
        if self.running:
            raise RuntimeError(f"{self.device_id}: the agent is already running")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        self._close_output()
        self._out = open(self.output, "ab")  # noqa: SIM115 - closed when the agent is gone
        self._out.write(f"--- hil: power on at {time.strftime('%H:%M:%S')}"
                        f"{f' (crash at {crash_at_ota_state})' if crash_at_ota_state else ''}"
                        " ---\n".encode())
        self._out.flush()
        self.power_ons += 1
        self._proc = subprocess.Popen(
            [*self.link.command_prefix(), *self.agent_command(crash_at_ota_state)],
            stdout=self._out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)

    def agent_command(self, crash_at: str | None = None) -> list[str]:
        """The command line that runs this device's agent (after the link's prefix);
        ``crash_at``: through :mod:`hil.ota_crash`, dying once that state is persisted."""
        runner = ["-m", "hil.ota_crash", crash_at] if crash_at else ["-m", "agent.cli"]
        return [sys.executable, *runner, "run", "--config", str(self.config)]

    def wait_ready(self, timeout: float) -> None:
        if self._proc is not None and wait_answering(self.socket, self._proc, timeout):
            return
        if self._proc is None or self._proc.poll() is not None:
            code = None if self._proc is None else self._proc.returncode
            raise RuntimeError(f"{self.device_id}: the agent exited ({code}) while "
                               f"starting:\n{self.output_tail()}")
        raise TimeoutError(f"{self.device_id}: the agent did not answer within {timeout} s:\n"
                           f"{self.output_tail()}")

    def power_cut(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._close_output()

    def new_boot(self) -> None:
        self.boot_id.write_text(f"{uuid.uuid4()}\n", encoding="ascii")

    def shutdown(self, timeout: float = 15.0) -> int | None:
        if self._proc is None:
            return None
        code = stop_process(self._proc, timeout)
        self._close_output()
        return code

    def exit_code(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def append_lines(self, lines: list[str]) -> None:
        if self._log is None:
            self._log = open(self.log_file, "a", encoding="utf-8")  # noqa: SIM115
        self._log.write("".join(line + "\n" for line in lines))
        self._log.flush()

    def query(self, cmd: str, **args: Any) -> dict[str, Any]:
        return ask(self.socket, cmd, args, timeout=10)

    def output_tail(self, lines: int = 40) -> str:
        if not self.output.exists():
            return ""
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])

    def collect(self, dest: Path) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for src, name in ((self.output, "agent.log"), (self.config, "agent.toml"),
                          (self.log_file, "device.log"),
                          (self.state_dir / "ota" / "logs.json", "ota-record.json")):
            if src.exists():
                shutil.copyfile(src, dest / name)
                out.append(dest / name)
        return out

    def _close_output(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def close(self) -> None:
        self.shutdown()
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class DeviceUnit:
    """A device under test as the rig keeps it: its driver, its traffic, the crash hook
    its agent was started with, and exits nobody asked for."""

    driver: DeviceDriver
    writer: TrafficWriter
    armed: str | None = None  # the OTA state its agent was started to crash at, if any
    cutting: bool = False  # a power cut is being injected: an exit is expected
    unexpected_exits: list[str] = field(default_factory=list)

    @property
    def device_id(self) -> str:
        return self.driver.device_id
