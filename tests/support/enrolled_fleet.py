"""A fleet with real identities: fleet server process, Mosquitto from `nanofleet broker-config`,
devices enrolled through `nanofleet-agent enroll`, MQTT clients holding those certificates.

The broker runs exactly the generated configuration; the test only chooses options of
`broker-config` (free loopback ports, ``--user root`` so that Mosquitto, started as
root here, does not drop to the ``mosquitto`` user, which cannot enter pytest's
0700 temporary directories). The fleet server reloads it on every CRL change through
``enrollment.broker_reload_command`` (here: SIGHUP to the pid the test wrote down,
where an operator would write ``systemctl reload mosquitto``).

The fleet server speaks plain http on loopback, so devices enroll with
``--insecure-lab``; they pin the TUF root with ``--root-sha256`` of the key ceremony's
root.json (:meth:`EnrolledFleet.enroll_args`).
"""

from __future__ import annotations

import base64
import hashlib
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from contract.enrollment import renewal_message
from fleet_server.cli.identity import default_memory_limit
from fleet_server.config import MqttTls, config_toml
from fleet_server.identity.settings import EnrollmentSettings
from hil.broker import free_port, wait_listening
from hil.fleet import FleetServer, FleetSetup, setup_fleet
from tests.support.fleet_cli import nf

MOSQUITTO = "/usr/sbin/mosquitto"


class BrokerPortTaken(RuntimeError):
    """The generated broker could not bind a port chosen free a moment before."""


class GeneratedBroker:
    """`mosquitto -c <generated config>`; SIGHUP reloads it."""

    def __init__(self, config: Path, ports: list[int], log: Path) -> None:
        self.config, self.ports, self.log = config, ports, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GeneratedBroker:
        self._out = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=self._out,
                                     stderr=subprocess.STDOUT)
        try:
            wait_listening(self.proc, self.ports)  # its own sockets, not anyone answering
        except TimeoutError:
            self.stop()
            said = self.output()
            taken = "Address already in use" in said
            raise (BrokerPortTaken if taken else RuntimeError)(
                f"mosquitto did not start:\n{said}") from None
        return self

    def reload(self) -> None:
        assert self.proc is not None
        mark = len(self.output())
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while "Reloading config" not in self.output()[mark:]:
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.02)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def reloads(self) -> int:
        return self.output().count("Reloading config")

    def wait_reloads(self, count: int, timeout: float = 10.0) -> None:
        """Until the broker has reloaded ``count`` times since it started."""
        deadline = time.monotonic() + timeout
        while self.reloads() < count:
            assert time.monotonic() < deadline, self.output()[-2000:]
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
        self.proc = None
        if getattr(self, "_out", None) is not None:
            self._out.close()


class Client:
    """A real MQTT v5 client with a certificate: collects messages and PUBACK reason codes."""

    def __init__(self, port: int, tls: dict[str, str] | None, topics: Sequence[str] = (),
                 client_id: str | None = None) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.acks: dict[int, ReasonCode] = {}
        self.cond = threading.Condition()
        self.connect_error: str | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        if tls is not None:
            self.client.tls_set(ca_certs=tls["ca"], certfile=tls["cert"], keyfile=tls["key"],
                                cert_reqs=ssl.CERT_REQUIRED)
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect = self._on_connect
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        # With TLS 1.3 the broker checks the client certificate after the client thinks
        # the handshake is done: a refusal shows up as a disconnect, not in connect().
        with self.cond:
            self.cond.wait_for(lambda: self.client.is_connected() or
                               self.connect_error is not None, 10)
        if not self.client.is_connected():
            self.close()
            raise ConnectionRefusedError(self.connect_error or "no CONNACK in 10 s")
        for topic in topics:
            self.subscribe(topic)

    def subscribe(self, topic: str) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos=1)
        assert done.wait(10), f"no SUBACK for {topic}"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        with self.cond:
            if rc.is_failure:
                self.connect_error = f"CONNACK {rc}"
            self.cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        with self.cond:
            self.connect_error = f"disconnected: {rc}"
            self.cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self.cond:
            self.acks[mid] = rc
            self.cond.notify_all()

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> ReasonCode:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self.cond:
            assert self.cond.wait_for(lambda: info.mid in self.acks, 10), "no PUBACK"
            return self.acks[info.mid]

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self.cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_topic(self, topic: str, timeout: float = 10.0) -> mqtt.MQTTMessage:
        with self.cond:
            assert self.cond.wait_for(lambda: any(m.topic == topic for m in self.messages),
                                      timeout), f"nothing on {topic}"
            return next(m for m in self.messages if m.topic == topic)

    def wait_until(self, pred: Callable[[list[mqtt.MQTTMessage]], bool],
                   timeout: float = 10.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: pred(self.messages), timeout), \
                [m.topic for m in self.messages]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def renewal_proof(key: ec.EllipticCurvePrivateKey, device_id: str, serial: str,
                  csr: str) -> str:
    """A renewal's proof as agent/enroll.py makes it: the current key's signature over
    contract.enrollment.renewal_message."""
    return base64.b64encode(key.sign(renewal_message(device_id, serial, csr),
                                     ec.ECDSA(hashes.SHA256()))).decode()


def try_connect(port: int, tls: dict[str, str]) -> str | None:
    """None if a client with ``tls`` gets a CONNACK, else what went wrong."""
    try:
        Client(port, tls).close()
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass
class EnrolledFleet:
    workdir: Path
    setup: FleetSetup
    server: FleetServer
    broker: GeneratedBroker
    broker_dir: Path
    tls_port: int  # devices
    server_port: int  # the fleet server's identity
    plain_port: int
    broker_config_output: str
    identities: dict[str, Path] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.setup.url

    def nanofleet(self, *argv: str) -> tuple[int, str, str]:
        client = ("--server", self.url, "--token", self.setup.token)
        return nf(*argv, *client)

    @property
    def root_sha256(self) -> str:
        """The pin an operator takes from the key ceremony (sha256sum root.json)."""
        return hashlib.sha256(self.setup.root_file.read_bytes()).hexdigest()

    def enroll_args(self) -> list[str]:
        """--server, --insecure-lab (http on loopback) and the root pin."""
        return ["--server", self.url, "--insecure-lab", "--root-sha256", self.root_sha256]

    def create_token(self, *options: str) -> str:
        code, out, err = self.nanofleet("enroll-token", "create", *options)
        assert code == 0, err
        return next(w for w in out.split() if w.startswith("nfe_"))

    def agent_enroll(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """`nanofleet-agent enroll ARGV` in its own process, as on a device."""
        return subprocess.run([sys.executable, "-m", "agent.cli", "enroll", *argv],
                              capture_output=True, text=True, timeout=60)

    def enroll(self, device_id: str, token: str | None = None) -> Path:
        directory = self.workdir / "devices" / device_id
        proc = self.agent_enroll(*self.enroll_args(), "--token",
                                 token or self.create_token("--device", device_id),
                                 "--device-id", device_id, "--dir", str(directory))
        assert proc.returncode == 0, proc.stderr
        self.identities[device_id] = directory
        return directory

    def device_tls(self, device_id: str) -> dict[str, str]:
        d = self.identities[device_id]
        return {"ca": str(d / "ca.crt"), "cert": str(d / "device.crt"),
                "key": str(d / "device.key")}

    def server_tls(self) -> dict[str, str]:
        d = self.broker_dir
        return {"ca": str(d / "ca.crt"), "cert": str(d / "fleet-server.crt"),
                "key": str(d / "fleet-server.key")}

    def stop(self) -> None:
        self.server.stop()
        self.broker.stop()


def start_enrolled_fleet(workdir: Path, mqtt: dict[str, Any] | None = None) -> EnrolledFleet:
    """A fleet server and the broker its `broker-config` generates, on free ports. A port
    another process takes between choosing and binding ("Address already in use") starts
    the whole fleet again in a fresh directory (its ports are in the generated config and
    the server's, so the broker alone cannot move), as ``hil.broker.Mosquitto`` does."""
    for attempt in range(3):
        root = workdir if attempt == 0 else workdir / f"retry-{attempt}"
        try:
            return _start_enrolled_fleet(root, mqtt or {})
        except BrokerPortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _start_enrolled_fleet(workdir: Path, mqtt: dict[str, Any]) -> EnrolledFleet:
    tls_port, server_port, plain_port = free_port(), free_port(), free_port()
    pid_file = workdir / "mosquitto.pid"
    reload = ["/bin/sh", "-c", f'kill -HUP "$(cat {pid_file})"']
    setup = setup_fleet(workdir / "fleet", mqtt_port=server_port,
                        enrollment=EnrollmentSettings(broker_host="127.0.0.1",
                                                      broker_port=tls_port,
                                                      broker_reload_command=reload))
    broker_dir = workdir / "broker"
    code, out, err = nf("broker-config", "--config", str(setup.config_path), "--out",
                        str(broker_dir), "--port", str(tls_port), "--bind", "127.0.0.1",
                        "--server-port", str(server_port), "--plain-port", str(plain_port),
                        "--user", "root")
    assert code == 0, err
    # The whole broker is bounded by default: half of this machine's memory.
    assert f"memory_limit {default_memory_limit()}\n" in (broker_dir / "mosquitto.conf").read_text()
    # The server's MQTT identity from broker-config, as its output tells operators to set.
    tls = MqttTls(ca_file=broker_dir / "ca.crt", cert_file=broker_dir / "fleet-server.crt",
                  key_file=broker_dir / "fleet-server.key")
    config = setup.config.model_copy(update={"mqtt": setup.config.mqtt.model_copy(
        update={"tls": tls, **mqtt})})  # and the test's own [mqtt] settings
    setup.config_path.write_text(config_toml(config), encoding="utf-8")
    setup = replace(setup, config=config)
    broker = GeneratedBroker(broker_dir / "mosquitto.conf", [tls_port, server_port, plain_port],
                             workdir / "mosquitto.log").start()
    assert broker.proc is not None
    pid_file.write_text(str(broker.proc.pid))
    server = FleetServer(setup)
    try:
        server.start()
        server.wait_mqtt()
    except BaseException:
        server.stop()
        broker.stop()
        raise
    return EnrolledFleet(workdir, setup, server, broker, broker_dir, tls_port, server_port,
                         plain_port, out)

