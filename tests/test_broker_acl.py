"""The broker ACL and revocation, end to end with real identities.

A real fleet server process; Mosquitto running the configuration `nanofleet
broker-config` wrote; devices enrolled through `nanofleet-agent enroll` (key made
by the agent, certificate from the server's device CA); real MQTT v5 clients with
those certificates. What is tested is delivery, never SUBACK: Mosquitto grants a
subscription the ACL forbids and then delivers nothing.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from annotated_types import Le
from cryptography import x509
from paho.mqtt.client import MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.sources.mqtt_topic_config import MqttTopicSourceConfig
from contract.limits import BROKER_MAX_PACKET_BYTES
from contract.messages import DesiredModel, DesiredState
from contract.topics import (
    PREFIX,
    alerts,
    artifact_chunk_filter,
    artifact_chunks,
    desired,
    device_root,
    results,
    status,
)
from fleet_server import report_lanes
from fleet_server.broker_config import (
    MAX_INFLIGHT_BYTES,
    MAX_QUEUED_BYTES,
    MAX_QUEUED_MESSAGES,
    SESSION_EXPIRATION,
)
from hil.broker import ProductionBroker
from tests.support.agent_proc import AgentProcess, write_config
from tests.support.enrolled_fleet import Client, EnrolledFleet, start_enrolled_fleet, try_connect
from tests.support.proc_memory import rss_kib

NOT_AUTHORIZED = 135  # MQTT v5 PUBACK reason code


def accepted(rc: ReasonCode) -> bool:
    """Success or "no matching subscribers" (16): both mean the broker took it."""
    return not rc.is_failure


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnrolledFleet]:
    f = start_enrolled_fleet(tmp_path_factory.mktemp("acl"))
    try:
        f.enroll("dev-a")
        f.enroll("dev-b")
        yield f
    finally:
        f.stop()


def _desired(revision: int) -> bytes:
    return DesiredState(revision=revision, slots={
        "logs": DesiredModel(model="nano-logs", version=revision)}).model_dump_json().encode()


def _has_revision(topic: str, revision: int, messages: list[MQTTMessage]) -> bool:
    return any(m.topic == topic and json.loads(m.payload)["revision"] == revision
               for m in messages)


def test_generated_broker_files(fleet: EnrolledFleet) -> None:
    conf = (fleet.broker_dir / "mosquitto.conf").read_text()
    devices, server = conf.split("\n\n")[1:3]  # the two TLS listeners
    for listener, port in ((devices, fleet.tls_port), (server, fleet.server_port)):
        for line in ("require_certificate true", "use_identity_as_username true",
                     "allow_anonymous false", f"listener {port} 127.0.0.1"):
            assert line in listener.splitlines(), line
    ca_dir = fleet.setup.config.data_dir / "device-ca"
    assert "use_username_as_clientid true" in devices.splitlines()
    assert f"crlfile {ca_dir / 'crl.pem'}" in devices
    assert f"acl_file {ca_dir / 'acl'}" in devices
    assert f"cafile {fleet.broker_dir / 'service-ca.crt'}" in server
    assert f"listener {fleet.plain_port} 127.0.0.1" in conf
    acl = (ca_dir / "acl").read_text()
    assert f"pattern read {PREFIX}/dev/%u/#" in acl and "fleet-server" not in acl
    assert "readwrite" not in acl and f"pattern write {PREFIX}/dev/%u/desired" not in acl
    assert f"pattern write {PREFIX}/dev/%u/status" in acl
    assert f"max_packet_size {BROKER_MAX_PACKET_BYTES}" in conf.splitlines()
    # What the broker holds per client: global options (Mosquitto applies them to every
    # listener), so they sit before the first listener. This broker runs on them.
    general = conf.split("\n\n")[0].splitlines()
    for line in (f"max_inflight_bytes {MAX_INFLIGHT_BYTES}", f"max_queued_bytes {MAX_QUEUED_BYTES}",
                 f"max_queued_messages {MAX_QUEUED_MESSAGES}",
                 f"persistent_client_expiration {SESSION_EXPIRATION}"):
        assert line in general, line
    assert f"user fleet-server\ntopic readwrite {PREFIX}/#" in \
        (fleet.broker_dir / "service.acl").read_text()
    assert stat.S_IMODE((ca_dir / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((fleet.broker_dir / "fleet-server.key").stat().st_mode) == 0o600
    # Debian's mosquitto drops to user mosquitto: its key is group-readable for it.
    key = (fleet.broker_dir / "broker.key").stat()
    assert stat.S_IMODE(key.st_mode) == 0o640
    assert key.st_gid == grp.getgrnam("mosquitto").gr_gid
    assert "server.toml" in fleet.broker_config_output
    assert fleet.server.health()["mqtt"]["connected"]  # the server's own mTLS identity


def test_device_cannot_read_another_devices_desired_state(fleet: EnrolledFleet) -> None:
    server = Client(fleet.server_port, fleet.server_tls())
    for device in ("dev-a", "dev-b"):
        assert accepted(server.publish(desired(device), _desired(1), retain=True))
    a = Client(fleet.tls_port, fleet.device_tls("dev-a"),
               [desired("dev-b"), f"{PREFIX}/dev/+/desired", f"{PREFIX}/#", "#"])
    b = Client(fleet.tls_port, fleet.device_tls("dev-b"), [desired("dev-b")])
    try:
        b.wait_topic(desired("dev-b"))  # B's retained state exists and is deliverable
        a.wait_topic(desired("dev-a"))  # A's wildcard subscriptions do deliver its own
        # A live change of B's state reaches B, and still not A.
        assert accepted(server.publish(desired("dev-b"), _desired(2), retain=True))
        b.wait_until(lambda ms: len(ms) >= 2)
        time.sleep(0.5)
        leaked = [m.topic for m in a.messages if m.topic.startswith(device_root("dev-b"))]
        assert leaked == []
        assert {m.topic for m in a.messages} == {desired("dev-a")}
    finally:
        for c in (a, b, server):
            c.close()


def test_device_cannot_publish_as_another(fleet: EnrolledFleet) -> None:
    watcher = Client(fleet.plain_port, None, [f"{PREFIX}/#"])  # loopback, read-only
    server = Client(fleet.server_port, fleet.server_tls())
    a = Client(fleet.tls_port, fleet.device_tls("dev-a"))
    try:
        assert accepted(server.publish(desired("dev-b"), _desired(7), retain=True))
        assert a.publish(alerts("dev-b"), b'{"forged": true}').value == NOT_AUTHORIZED
        assert a.publish(status("dev-b"), b'{"forged": true}', retain=True).value == \
            NOT_AUTHORIZED
        assert a.publish(desired("dev-b"), _desired(99), retain=True).value == NOT_AUTHORIZED
        assert accepted(a.publish(alerts("dev-a"), b'{"own": true}'))
        watcher.wait_topic(alerts("dev-a"))
        time.sleep(0.3)
        assert watcher.on(alerts("dev-b")) == [] and watcher.on(status("dev-b")) == []
        # B's retained desired state is still the server's.
        b = Client(fleet.tls_port, fleet.device_tls("dev-b"), [desired("dev-b")])
        assert json.loads(b.wait_topic(desired("dev-b")).payload)["revision"] == 7
        b.close()
        # The plain listener is for watching only.
        assert watcher.publish(alerts("dev-a"), b"anonymous").value == NOT_AUTHORIZED
    finally:
        for c in (a, server, watcher):
            c.close()


def test_fleet_server_identity_reaches_every_device(fleet: EnrolledFleet) -> None:
    server = Client(fleet.server_port, fleet.server_tls(), [f"{PREFIX}/dev/+/alerts"])
    devices = {d: Client(fleet.tls_port, fleet.device_tls(d), [desired(d)])
               for d in ("dev-a", "dev-b")}
    try:
        for d, client in devices.items():
            assert accepted(client.publish(alerts(d), d))
            server.wait_topic(alerts(d))
            assert accepted(server.publish(desired(d), _desired(3), retain=True))
            client.wait_until(partial(_has_revision, desired(d), 3))
    finally:
        for c in (server, *devices.values()):
            c.close()


def test_enrolled_agent_runs_over_mtls(fleet: EnrolledFleet, tmp_path: Path) -> None:
    log = tmp_path / "pump.log"
    log.write_text("")
    state = tmp_path / "state"
    config = write_config(tmp_path / "agent.toml", "pump-07", state, 1,
                          f'[[sources]]\nkind = "file"\npath = "{log}"\n'
                          'start_at = "beginning"\n')
    mosquitto_gid = grp.getgrnam("mosquitto").gr_gid  # stands in for Debian's nanofleet
    os.chown(config, 0, mosquitto_gid)
    config.chmod(0o640)
    token = fleet.create_token("--device", "pump-07", "--group", "line-1")
    proc = fleet.agent_enroll(*fleet.enroll_args(), "--token", token, "--config", str(config),
                              "--owner", "mosquitto")
    assert proc.returncode == 0, proc.stderr
    assert f"127.0.0.1:{fleet.tls_port} over TLS" in proc.stdout
    # The rewritten config keeps owner, group and mode; the identity belongs to the agent.
    assert (config.stat().st_gid, stat.S_IMODE(config.stat().st_mode)) == (mosquitto_gid, 0o640)
    assert config.with_name("agent.toml.bak").exists()
    key = (state / "identity" / "device.key").stat()
    assert stat.S_IMODE(key.st_mode) == 0o600 and key.st_uid == pwd.getpwnam("mosquitto").pw_uid
    watcher = Client(fleet.plain_port, None, [f"{device_root('pump-07')}/#"])
    agent = AgentProcess(config, state).start()
    try:
        log.write_text("kernel: usb 1-1: new high-speed USB device number 2\n")
        watcher.wait_topic(results("pump-07", "logs"), timeout=30)
        headers = {"Authorization": f"Bearer {fleet.setup.token}"}
        deadline = time.monotonic() + 15
        while True:  # the fleet server ingests its status over its own mTLS session
            view = httpx.get(f"{fleet.url}/api/v1/devices/pump-07", headers=headers,
                             timeout=5).json()
            if view.get("state") == "online":
                break
            assert time.monotonic() < deadline, view
            time.sleep(0.2)
        assert view["group"] == "line-1"  # from the token
    finally:
        agent.stop()
        watcher.close()


def test_revoked_device_is_refused(fleet: EnrolledFleet) -> None:
    revoked_dir = fleet.enroll("dev-r")
    fleet.enroll("dev-s")
    held = Client(fleet.tls_port, fleet.device_tls("dev-r"), [desired("dev-r")])
    server = Client(fleet.server_port, fleet.server_tls())
    try:
        # (held is dev-r's only session: a second one would take over its client id)
        assert held.client.is_connected()
        reloads = fleet.broker.reloads()
        code, out, err = fleet.nanofleet("devices", "revoke", "dev-r", "--reason", "stolen")
        assert code == 0, err
        # The server reloaded the broker itself (enrollment.broker_reload_command).
        assert "the broker was reloaded" in out
        fleet.broker.wait_reloads(reloads + 1)
        refused = try_connect(fleet.tls_port, fleet.device_tls("dev-r"))
        assert refused is not None and "certificate" in fleet.broker.output().split(
            "Reloading config")[-1]
        assert try_connect(fleet.tls_port, fleet.device_tls("dev-s")) is None
        assert try_connect(fleet.tls_port, fleet.device_tls("dev-a")) is None
        # Its session that was already open: the re-read ACL denies it everything.
        assert held.publish(alerts("dev-r"), b"still here?").value == NOT_AUTHORIZED
        assert accepted(server.publish(desired("dev-r"), _desired(5), retain=True))
        time.sleep(0.5)
        assert held.on(desired("dev-r")) == []
        # No renewal for a revoked certificate; a general token cannot bring the id back.
        renew = fleet.agent_enroll("--renew", "--force", "--dir", str(revoked_dir))
        assert renew.returncode == 1 and "revoked" in renew.stderr, renew.stderr
        again = fleet.agent_enroll(*fleet.enroll_args(), "--token", fleet.create_token(),
                                   "--device-id", "dev-r", "--dir", str(revoked_dir))
        assert again.returncode == 1 and "device-revoked" in again.stderr, again.stderr
        # The CRL a broker elsewhere would fetch lists its certificate.
        crl = x509.load_pem_x509_crl(httpx.get(f"{fleet.url}/api/v1/device-ca/crl.pem",
                                               timeout=5).content)
        cert = x509.load_pem_x509_certificate((revoked_dir / "device.crt").read_bytes())
        assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    finally:
        held.close()
        server.close()


def test_listeners_keep_identities_apart(fleet: EnrolledFleet) -> None:
    # A device certificate gets no session on the fleet server's listener...
    assert try_connect(fleet.server_port, fleet.device_tls("dev-a")) is not None
    # ...and on the device listener a device's client id is its id, whatever it asks for:
    # it can take over neither another device's session nor the fleet server's.
    b = Client(fleet.tls_port, fleet.device_tls("dev-b"), [desired("dev-b")],
               client_id="nanofleet-dev-b")
    connects = fleet.server.health()["mqtt"]["connects"]
    impostors = [Client(fleet.tls_port, fleet.device_tls("dev-a"), client_id=cid)
                 for cid in ("nanofleet-dev-b", fleet.setup.config.mqtt.client_id)]
    try:
        time.sleep(0.5)
        assert b.client.is_connected() and b.connect_error is None
        assert fleet.server.health()["mqtt"] == {**fleet.server.health()["mqtt"],
                                                "connected": True, "connects": connects}
        assert "as dev-a (p5" in fleet.broker.output()  # the broker renamed the client
    finally:
        for c in (b, *impostors):
            c.close()


# --- what the broker holds for one client ------------------------------------------------------
def test_session_expiration_shortens_none_of_nanofleets_sessions() -> None:
    """``persistent_client_expiration`` caps every session: it must not cut the fleet
    server's (reports wait in its session while it restarts) or an agent MQTT source's."""
    cap_s = {"h": 3600, "d": 86400, "w": 7 * 86400}[SESSION_EXPIRATION[-1]] * \
        int(SESSION_EXPIRATION[:-1])
    source_max = next(m.le for m in
                      MqttTopicSourceConfig.model_fields["session_expiry_s"].metadata
                      if isinstance(m, Le))
    assert cap_s >= report_lanes.SESSION_EXPIRY_S
    assert isinstance(source_max, int) and cap_s >= source_max


def _at_least(n: int, messages: list[MQTTMessage]) -> bool:
    return len(messages) >= n


class SilentDevice:
    """A device session (its own certificate) that takes QoS 1 messages on its artifact
    chunk topics and acknowledges none of them until :meth:`ack_all`; Session Expiry a
    day, as an attacker would ask for."""

    def __init__(self, b: ProductionBroker, device_id: str, receive_maximum: int) -> None:
        self.numbers: list[int] = []  # of the messages received (the payload's first bytes)
        self.cond = threading.Condition()
        self._acking = False
        self._unacked: list[int] = []
        tls = b.device_tls(device_id)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id,
                        protocol=mqtt.MQTTv5, manual_ack=True)
        c.tls_set(ca_certs=tls["ca_certs"], certfile=tls["certfile"], keyfile=tls["keyfile"],
                  cert_reqs=ssl.CERT_REQUIRED)
        subscribed = threading.Event()
        c.on_message = self._on_message
        c.on_subscribe = lambda *_a: subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.ReceiveMaximum = receive_maximum
        props.SessionExpiryInterval = 86400
        assert b.tls_port is not None
        c.connect("127.0.0.1", b.tls_port, clean_start=True, properties=props)
        c.loop_start()
        c.subscribe(artifact_chunk_filter(device_id), qos=1)
        assert subscribed.wait(10), "no SUBACK"
        self.client = c

    def _on_message(self, client: mqtt.Client, _u: Any, msg: MQTTMessage) -> None:
        with self.cond:
            self.numbers.append(int.from_bytes(msg.payload[:4], "big"))
            if self._acking:
                client.ack(msg.mid, msg.qos)
            else:
                self._unacked.append(msg.mid)
            self.cond.notify_all()

    def ack_all(self) -> None:
        """From now on acknowledge: what the broker still holds for us comes."""
        with self.cond:
            self._acking = True
            for mid in self._unacked:
                self.client.ack(mid, 1)
            self._unacked.clear()

    def wait_quiet(self, quiet_s: float = 1.5, timeout: float = 20.0) -> list[int]:
        """The numbers received, once nothing more came for ``quiet_s``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while time.monotonic() < deadline:
                seen = len(self.numbers)
                quiet_until = time.monotonic() + quiet_s
                while len(self.numbers) == seen and time.monotonic() < quiet_until:
                    self.cond.wait(quiet_until - time.monotonic())
                if len(self.numbers) == seen:
                    return list(self.numbers)
        raise AssertionError(f"still receiving after {timeout} s: {len(self.numbers)}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("receive_maximum", [1, 65535])
def test_a_device_that_never_acknowledges_holds_at_most_the_bound(
        prod_broker: ProductionBroker, receive_maximum: int) -> None:
    """One device identity subscribes to its own artifact chunks, acknowledges nothing
    (Receive Maximum 1: all but one queued; 65535: all "in flight"), while the fleet
    server's identity publishes 50 MiB of 256 KiB QoS 1 messages to it. The broker keeps
    at most max_inflight_bytes + max_queued_bytes for it and drops the rest for it alone:
    the server's every publish is accepted, and an honest device served at the same time
    (a window of 16 chunks, as the agent asks) gets every chunk. Before: all 200 kept
    (Mosquitto's defaults: 1,000 messages, no byte limit), RSS +50 MiB."""
    b = prod_broker
    assert b.proc is not None and b.tls_port is not None
    size, count, window = 256 * 1024, 200, 16
    bound = (MAX_INFLIGHT_BYTES + MAX_QUEUED_BYTES) // size  # messages of this size
    silent = SilentDevice(b, "pump-66", receive_maximum)
    tls = b.device_tls("pump-07")
    honest = Client(b.tls_port, {"ca": tls["ca_certs"], "cert": tls["certfile"],
                                 "key": tls["keyfile"]}, [artifact_chunk_filter("pump-07")])
    server_tls = b.server_tls()
    server = Client(b.server_port, {"ca": server_tls["ca_certs"], "cert": server_tls["certfile"],
                                    "key": server_tls["keyfile"]})
    try:
        rss_before = rss_kib(b.proc.pid)
        for i in range(count):
            payload = i.to_bytes(4, "big") + os.urandom(size - 4)
            for device_id in ("pump-66", "pump-07"):
                rc = server.publish(artifact_chunks(device_id, "t1"), payload)
                assert not rc.is_failure, (device_id, i, rc)
            if (i + 1) % window == 0:  # the honest device asks for the next window
                honest.wait_until(partial(_at_least, i + 1))
        held_kib = rss_kib(b.proc.pid) - rss_before
        honest.wait_until(lambda ms: len(ms) >= count)
        assert [int.from_bytes(m.payload[:4], "big") for m in honest.messages] == \
            list(range(count))
        silent.ack_all()
        numbers = silent.wait_quiet()
        # What the broker had kept for it: the first messages, up to the bound, no more.
        assert numbers == list(range(len(numbers)))
        assert bound - 2 <= len(numbers) <= bound + 2, (len(numbers), bound)
        assert held_kib < 24 * 1024, f"broker RSS grew by {held_kib} KiB"
        assert "Outgoing messages are being dropped for client pump-66" in b.log_text()
    finally:
        for c in (silent, honest, server):
            c.close()
