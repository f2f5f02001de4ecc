"""Start a real Mosquitto on free loopback ports with its own config (tests, demo, HIL rigs)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from hil.pki import RigPKI
from hil.process import stop_process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class Mosquitto:
    """A broker process. ``tls=True`` adds a second listener that requires client
    certificates (CN = username) with an ACL confining each device to its own tree."""

    def __init__(self, workdir: Path, tls: bool = False, port: int | None = None,
                 persistence: bool = False) -> None:
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            raise RuntimeError("mosquitto is not installed (scripts/bootstrap.sh installs it)")
        self.dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o755)
        self.port = port or free_port()
        self.tls_port = free_port() if tls else None
        self.pki = RigPKI(workdir / "pki") if tls else None
        self.persistence = persistence
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "mosquitto.log"
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            "per_listener_settings true",
            # With persistence, sessions and queued QoS 1 messages survive a restart.
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.dir}/",
            # Mosquitto keeps only 1000 QoS 1 messages for a client that is away (e.g. a
            # subscriber reconnecting after a broker restart); rigs replay more than that.
            "max_queued_messages 1000000",
            f"log_dest file {self.log}",
            "log_type error", "log_type warning", "log_type notice",
            "user root",
            # Without it Mosquitto's own sockets delay small packets (Nagle): MQTT artifact
            # streams run ~7x slower and request/response round trips take ~40 ms.
            "set_tcp_nodelay true",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
        ]
        if self.pki is not None:
            acl = self.dir / "acl"
            acl.write_text(
                "# the fleet server reaches every device\n"
                "user fleet-server\ntopic readwrite nanofleet/v1/#\n\n"
                "# every device only its own tree\n"
                "pattern readwrite nanofleet/v1/dev/%u/#\n"
            )
            os.chmod(acl, 0o644)
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                "allow_anonymous false",
                f"cafile {self.pki.ca_file}",
                f"certfile {self.pki.server.cert}",
                f"keyfile {self.pki.server.key}",
                "require_certificate true",
                "use_identity_as_username true",
                f"acl_file {acl}",
            ]
        self.config = self.dir / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> Mosquitto:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_port(self.port)
            if self.tls_port:
                wait_port(self.tls_port)
        except TimeoutError:
            self.stop()
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"mosquitto did not start: {log}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
