"""Start a real Mosquitto on free loopback ports with its own config (tests, demo, HIL rigs)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Self

from hil.pki import RigPKI
from hil.process import stop_process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0,
              proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until something listens on ``port``; with ``proc``, give up as soon as that
    process has exited (a broker that refused its config never will listen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TimeoutError(f"the process exited ({proc.returncode}) before anything "
                               f"listened on 127.0.0.1:{port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (its sockets' inodes in its own network
    namespace's /proc/<pid>/net/tcp and tcp6)."""
    inodes = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return set()
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_listening(proc: subprocess.Popen[bytes], ports: list[int],
                   timeout: float = 10.0) -> None:
    """Until ``proc`` itself listens on every one of ``ports``; TimeoutError when it exits
    first or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TimeoutError(f"the process exited ({proc.returncode}) before it listened "
                               f"on {ports}")
        if set(ports) <= listening_ports(proc.pid):
            return
        time.sleep(0.02)
    raise TimeoutError(f"the process does not listen on {ports}")


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
        self._fixed_port = port
        self.port = port or free_port()
        self.tls_port = free_port() if tls else None
        self._started = False
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

    def ports(self) -> list[int]:
        return [self.port] + ([self.tls_port] if self.tls_port else [])

    def _choose_ports(self) -> None:
        """New free ports for every listener the caller did not fix."""
        self.port = self._fixed_port or free_port()
        if self.tls_port is not None:
            self.tls_port = free_port()

    def start(self) -> Self:
        """Start the broker. free_port() cannot hold a port until mosquitto binds it, and a
        parallel test worker may take it first (CI, December 2026: "Address already in
        use"): the first start then tries new ports, twice at most. A restart keeps its
        ports, which clients reconnect to."""
        for attempt in range(3):
            told = self.log.stat().st_size if self.log.exists() else 0
            try:
                self._launch()
            except RuntimeError:
                said = self.log.read_bytes()[told:] if self.log.exists() else b""
                if self._started or attempt == 2 or b"Address already in use" not in said:
                    raise
                self._choose_ports()
                self._write_config()
                continue
            self._started = True
            return self
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        # Mosquitto's own messages go to its log file; what it prints to stderr before it
        # opens that file (a bad config line) is appended to the same file, so the error
        # below names it. (A pipe nobody reads leaked a descriptor per broker and could
        # block mosquitto once full.)
        with open(self.log, "ab") as early:
            self.proc = subprocess.Popen([binary, "-c", str(self.config)],
                                         stdout=subprocess.DEVNULL, stderr=early)
        try:
            # Its own listening sockets, not merely something answering on the ports: a
            # process that took a port first would answer too, and this broker then exits.
            wait_listening(self.proc, self.ports())
        except TimeoutError:
            self.stop()
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"mosquitto did not start: {log}") from None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class ProductionBroker(Mosquitto):
    """Mosquitto running the configuration operators deploy: the text of
    :func:`fleet_server.broker_config.render_mosquitto_conf` (what ``nanofleet
    broker-config`` writes) with the ACL of :func:`render_acl`, for test PKIs.

    - ``tls_port``: the device listener: client certificates from the device CA, client
      id = CN (``use_username_as_clientid``), CRL, per-device ACL, ``max_packet_size``;
    - ``server_port``: the fleet server's listener (service CA, CN ``fleet-server``);
    - ``port``: the loopback read-only plain listener, for watching in tests.

    Only logging is added. :meth:`device_tls` and :meth:`server_tls` give paho
    ``tls_set`` arguments for an identity."""

    def __init__(self, workdir: Path, *, bind: str | None = "127.0.0.1",
                 server_ips: tuple[str, ...] = (), persistence: bool = False,
                 memory_limit: int | None = None) -> None:
        """``bind=None``: the device listener on every address (with ``server_ips``, the
        addresses the broker's certificate names besides 127.0.0.1). ``persistence``:
        what Debian's main mosquitto.conf adds to the generated file in conf.d.
        ``memory_limit``: as ``broker-config --memory-limit`` (none by default here)."""
        self.server_port = free_port()
        self.memory_limit = memory_limit
        self.bind = bind
        # The device CA also signs the broker's certificate.
        self.device_pki = RigPKI(workdir / "device-ca", server_ips=server_ips)
        self.service_pki = RigPKI(workdir / "service-ca")
        super().__init__(workdir, tls=True, persistence=persistence)
        self.pki = self.device_pki

    def ports(self) -> list[int]:
        return [*super().ports(), self.server_port]

    def _choose_ports(self) -> None:
        super()._choose_ports()
        self.server_port = free_port()

    def _write_config(self) -> None:
        from fleet_server.broker_config import (
            PLAIN_ACL,
            SERVICE_ACL,
            BrokerFiles,
            render_acl,
            render_mosquitto_conf,
        )

        files = {"acl": render_acl([]), "service.acl": SERVICE_ACL, "plain.acl": PLAIN_ACL}
        for name, text in files.items():
            (self.dir / name).write_text(text)
            os.chmod(self.dir / name, 0o644)
        assert self.tls_port is not None
        conf = render_mosquitto_conf(BrokerFiles(
            port=self.tls_port, bind=self.bind, ca_file=self.device_pki.ca_file,
            cert_file=self.device_pki.server.cert, key_file=self.device_pki.server.key,
            crl_file=self.device_pki.write_crl(self.dir / "crl.pem"),
            acl_file=self.dir / "acl", server_port=self.server_port, server_bind="127.0.0.1",
            service_ca_file=self.service_pki.ca_file, service_acl_file=self.dir / "service.acl",
            plain_port=self.port, plain_acl_file=self.dir / "plain.acl", user="root",
            memory_limit=self.memory_limit))
        self.config = self.dir / "mosquitto.conf"
        persistence = ["persistence true", f"persistence_location {self.dir}/"] \
            if self.persistence else []
        self.config.write_text(conf + "\n".join([
            "", "# the host's main configuration (Debian: /etc/mosquitto/mosquitto.conf)",
            *persistence, "# test rig only: where the broker logs",
            f"log_dest file {self.log}", "log_type error", "log_type warning",
            "log_type notice", ""]))

    def device_tls(self, device_id: str) -> dict[str, str]:
        """paho ``tls_set`` keywords for a device identity (certificate CN = device id)."""
        pair = self.device_pki.issue(device_id)
        return {"ca_certs": str(self.device_pki.ca_file), "certfile": str(pair.cert),
                "keyfile": str(pair.key)}

    def server_tls(self) -> dict[str, str]:
        """paho ``tls_set`` keywords for the fleet server's identity (CN fleet-server)."""
        pair = self.service_pki.issue("fleet-server")
        return {"ca_certs": str(self.device_pki.ca_file), "certfile": str(pair.cert),
                "keyfile": str(pair.key)}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
