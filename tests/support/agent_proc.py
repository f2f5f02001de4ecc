"""Run the real agent daemon (`nanofleet-agent run`) as a child process for tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent.control import ask
from hil.devices import wait_answering
from hil.process import stop_process


def write_config(path: Path, device_id: str, state_dir: Path, port: int,
                 sources: str, extra: str = "", mqtt_extra: str = "") -> Path:
    path.write_text(f"""
device_id = "{device_id}"
state_dir = "{state_dir}"
metrics_interval_s = 1
log_level = "debug"
{extra}
[mqtt]
host = "127.0.0.1"
port = {port}
reconnect_max_s = 1
{mqtt_extra}
{sources}
""")
    return path


def write_quiet_config(path: Path, device_id: str, state_dir: Path, log: Path,
                       extra: str = "") -> Path:
    """An agent that follows one file, logs warnings only and whose broker never answers
    (port 9, discard): for tests that measure the agent's own work (memory, loaded
    libraries, environment) without an MQTT link, debug logging or a metrics timer
    adding to it. ``extra``: more TOML tables after ``[mqtt]``."""
    path.write_text(f'device_id = "{device_id}"\nstate_dir = "{state_dir}"\n'
                    'log_level = "warning"\n[mqtt]\nhost = "127.0.0.1"\nport = 9\n'
                    f'{extra}[[sources]]\nkind = "file"\npath = "{log}"\n')
    return path


class AgentProcess:
    def __init__(self, config: Path, state_dir: Path, env: dict[str, str] | None = None,
                 crash_at: str | None = None) -> None:
        """``crash_at``: run through :mod:`hil.ota_crash`, which ends the process with
        ``os._exit(137)`` right after the OTA record entering that state is persisted."""
        self.config = config
        self.runner = ["-m", "hil.ota_crash", crash_at] if crash_at else ["-m", "agent.cli"]
        self.socket = state_dir / "agent.sock"
        self.log = state_dir.parent / f"{state_dir.name}-agent.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> AgentProcess:
        self._logf = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, *self.runner, "run", "--config", str(self.config)],
            stdout=self._logf, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.proc is not None, "start() the agent first"
        if wait_answering(self.socket, self.proc, timeout):
            return
        if self.proc.poll() is not None:
            raise RuntimeError(f"agent exited with {self.proc.returncode}:\n{self.output()}")
        raise TimeoutError(f"agent not ready:\n{self.output()}")

    def query(self, cmd: str, **args: Any) -> dict[str, Any]:
        return ask(self.socket, cmd, args)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        rc = stop_process(self.proc, timeout)
        self.proc = None
        self._logf.close()
        return rc

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self._logf.close()


def payloads(messages: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages]


def result_batches(sub: Any, lines: int, timeout: float = 30) -> list[dict[str, Any]]:
    """The result batches an agent published to ``sub`` (a Collector), once they hold
    ``lines`` lines."""
    msgs = sub.wait_for(lambda ms: sum(len(json.loads(m.payload)["items"])
                                       for m in ms if "/results/" in m.topic) >= lines,
                        timeout=timeout)
    return payloads([m for m in msgs if "/results/" in m.topic])
