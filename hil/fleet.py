"""A real fleet server for tests, the demo and rigs: keys, repository, config, process.

:func:`setup_fleet` does what an operator does once (``keys init``, ``server init``,
``repo init``) with the library calls behind those commands; :class:`FleetServer`
runs ``nanofleet server run`` as a child process on a free loopback port.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from fleet_server.config import (
    MqttSettings,
    OperatorToken,
    ServerConfig,
    config_toml,
    hash_token,
    new_operator_token,
)
from fleet_server.repository.expiry import ExpiryPolicy
from fleet_server.repository.keys import generate_role_keys, load_signer
from fleet_server.repository.metadata_store import OnlineSigners
from fleet_server.repository.repo import Repository
from hil.broker import free_port
from hil.process import stop_process


@dataclass
class FleetSetup:
    """Where everything of one fleet server lives, and the operator's secrets."""

    workdir: Path
    config_path: Path
    config: ServerConfig
    keys_dir: Path  # the ceremony's directory: root-*.pem, targets.pem, root.json
    token: str

    @property
    def url(self) -> str:
        return f"http://{self.config.bind_host}:{self.config.bind_port}"

    @property
    def targets_key(self) -> Path:
        return self.keys_dir / "targets.pem"

    @property
    def root_file(self) -> Path:
        return self.keys_dir / "root.json"

    def cli_env(self) -> dict[str, str]:
        """Environment for ``nanofleet`` client commands against this server."""
        return {**os.environ, "NANOFLEET_SERVER": self.url, "NANOFLEET_TOKEN": self.token}


def setup_fleet(workdir: Path, *, mqtt_port: int, root_keys: int = 3, root_threshold: int = 2,
                expiry: ExpiryPolicy | None = None, **overrides: Any) -> FleetSetup:
    """Generate keys, write a config (free HTTP port) and create the repository."""
    workdir.mkdir(parents=True, exist_ok=True)
    keys = generate_role_keys(workdir / "keys", root_keys=root_keys)
    token = new_operator_token()  # as `server init` makes it: never starts with '-'
    port = overrides.pop("bind_port", None) or free_port()
    config = ServerConfig(
        data_dir=workdir / "data", bind_host="127.0.0.1", bind_port=port,
        public_url=f"http://127.0.0.1:{port}",
        mqtt=MqttSettings(host="127.0.0.1", port=mqtt_port, client_id=f"fleet-{port}"),
        expiry=expiry or ExpiryPolicy(), online_keys_dir=workdir / "keys",
        operator_tokens=[OperatorToken(name="operator", sha256=hash_token(token))],
        **overrides)
    config_path = workdir / "server.toml"
    config_path.write_text(config_toml(config), encoding="utf-8")
    repo = Repository.create(
        config.repo_path, root_signers=[load_signer(p) for p in keys["root"]],
        root_threshold=root_threshold, targets_signers=[load_signer(keys["targets"][0])],
        online=OnlineSigners.from_key_dir(workdir / "keys"), expiry=config.expiry)
    (workdir / "keys" / "root.json").write_bytes(repo.root_bytes())
    return FleetSetup(workdir, config_path, config, workdir / "keys", token)


class FleetServer:
    """``nanofleet server run`` in a child process; ``start()`` returns once it answers."""

    def __init__(self, setup: FleetSetup) -> None:
        self.setup = setup
        self.log_path = setup.workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.setup.url

    def start(self, timeout: float = 30.0) -> FleetServer:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it; closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleet_server.cli", "server", "run", "--config",
             str(self.setup.config_path)], stdout=log, stderr=subprocess.STDOUT)
        self._log = log
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fleet server exited ({self.proc.returncode}):\n"
                                   f"{self.log()}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"fleet server did not answer in {timeout} s:\n{self.log()}")

    def health(self) -> dict[str, Any]:
        # The details are behind a token; the public /api/v1/health only says ok.
        result: dict[str, Any] = httpx.get(
            f"{self.url}/api/v1/health/detail", timeout=5,
            headers={"Authorization": f"Bearer {self.setup.token}"}).json()
        return result

    def wait_mqtt(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mqtt = self.health().get("mqtt") or {}
            if mqtt.get("connected"):
                return
            time.sleep(0.1)
        raise TimeoutError(f"fleet server not connected to MQTT:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 15)
        self.proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()

    def __enter__(self) -> FleetServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
