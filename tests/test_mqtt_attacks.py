"""Attacks on the MQTT side, through the broker configuration operators deploy.

Mosquitto runs the text `nanofleet broker-config` writes (:class:`hil.broker.ProductionBroker`:
client id = certificate CN, per-device ACL, ``max_packet_size``). The attacker holds one
real device identity (certificate from the device CA); the agent's side is its real
:class:`agent.mqtt_link.MqttLink`, the server's its real :class:`MqttBridge`. One test
case per attack: a failing one does not hide the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from agent.config import MqttConfig, TlsConfig
from agent.mqtt_link import MqttLink
from contract import topics
from contract.artifacts import ArtifactRequest
from contract.limits import AGENT_RECEIVE_MAX_BYTES, BROKER_MAX_PACKET_BYTES
from contract.messages import Status
from fleet_server.artifact_stream import ArtifactStreamer
from fleet_server.config import ArtifactSettings, MqttSettings, MqttTls
from fleet_server.device_reports import Report
from fleet_server.mqtt_bridge import MqttBridge
from hil.broker import ProductionBroker
from tests.support.enrolled_fleet import Client
from tests.support.proc_memory import rss_kib

NOT_AUTHORIZED = 135
DEV, ATTACKER = "pump-07", "pump-66"


def _tls(paho_kwargs: dict[str, str]) -> dict[str, str]:
    return {"ca": paho_kwargs["ca_certs"], "cert": paho_kwargs["certfile"],
            "key": paho_kwargs["keyfile"]}


def device(b: ProductionBroker, device_id: str, subscribe: tuple[str, ...] = ()) -> Client:
    assert b.tls_port is not None
    return Client(b.tls_port, _tls(b.device_tls(device_id)), subscribe)


def fleet_server(b: ProductionBroker, subscribe: tuple[str, ...] = ()) -> Client:
    return Client(b.server_port, _tls(b.server_tls()), subscribe)


def agent_link(b: ProductionBroker, device_id: str = DEV) -> MqttLink:
    tls = b.device_tls(device_id)
    assert b.tls_port is not None
    link = MqttLink(MqttConfig(host="127.0.0.1", port=b.tls_port, reconnect_max_s=1,
                               tls=TlsConfig(ca_file=Path(tls["ca_certs"]),
                                             cert_file=Path(tls["certfile"]),
                                             key_file=Path(tls["keyfile"]))),
                    f"nanofleet-{device_id}", will=None)
    link.start()
    assert link.connected.wait(10)
    return link


def _status(device_id: str, pad: int = 0) -> bytes:
    """A status report, ``pad`` characters of agent version long (a padded one is only
    about its size: the contract refuses versions over 64 characters)."""
    doc = json.loads(Status(seq=1, device_id=device_id, state="online").model_dump_json())
    doc["agent_version"] = "x" * pad
    return json.dumps(doc).encode()


# --- the attacks -------------------------------------------------------------------------------
def huge_publish_is_refused_by_the_broker(b: ProductionBroker) -> None:
    """A device publishes 2 MiB (before: 256 MB were accepted and delivered): the broker
    disconnects it and delivers nothing."""
    watcher = Client(b.port, None, [f"{topics.PREFIX}/#"])
    attacker = device(b, ATTACKER)
    try:
        attacker.client.publish(topics.alerts(ATTACKER), b"x" * (2 * BROKER_MAX_PACKET_BYTES),
                                qos=1)
        with attacker.cond:
            assert attacker.cond.wait_for(lambda: attacker.connect_error is not None, 10)
        time.sleep(0.3)
        assert watcher.on(topics.alerts(ATTACKER)) == []
    finally:
        attacker.close()
        watcher.close()


def device_cannot_plant_its_desired_state(b: ProductionBroker) -> None:
    """A device writes a retained document on its own desired topic (before: accepted,
    and every reconnect of the agent re-read it): refused, nothing retained."""
    attacker = device(b, DEV)
    try:
        forged = json.dumps({"revision": 999, "slots": {}}).encode()
        assert attacker.publish(topics.desired(DEV), forged, retain=True).value == NOT_AUTHORIZED
        for own in (topics.query(DEV), topics.artifact_chunks(DEV, "t1")):  # server's answers
            assert attacker.publish(own, b"{}").value == NOT_AUTHORIZED
        assert not attacker.publish(topics.status(DEV), _status(DEV)).is_failure
    finally:
        attacker.close()
    reader = fleet_server(b, (topics.desired(DEV),))
    try:
        time.sleep(0.5)
        assert reader.on(topics.desired(DEV)) == []
    finally:
        reader.close()


def oversized_message_never_reaches_the_agent(b: ProductionBroker) -> None:
    """A message bigger than the agent accepts, on its query topic (before: handed to the
    handler, in memory whole): the broker withholds it; the next one arrives."""
    link = agent_link(b)
    got: list[int] = []
    link.handle(topics.query(DEV), lambda msg: got.append(len(msg.payload)))
    server = fleet_server(b)
    try:
        time.sleep(0.3)
        server.publish(topics.query(DEV), b"q" * (AGENT_RECEIVE_MAX_BYTES + 1))
        server.publish(topics.query(DEV), b"small")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert got == [5]
        assert link.connect_count == 1
    finally:
        server.close()
        link.stop()


def oversized_report_never_reaches_the_server(b: ProductionBroker) -> None:
    """A device's 900 KB status (under the broker's limit, over the server's): before,
    the server received and held it before its size check; now the broker withholds it."""
    tls = b.server_tls()
    received: list[Report] = []
    bridge = MqttBridge(MqttSettings(host="127.0.0.1", port=b.server_port, client_id="fs-1",
                                     tls=MqttTls(ca_file=Path(tls["ca_certs"]),
                                                 cert_file=Path(tls["certfile"]),
                                                 key_file=Path(tls["keyfile"]))),
                        received.extend)
    bridge.start()
    attacker = device(b, ATTACKER)
    try:
        assert bridge.wait_connected(10)
        time.sleep(0.3)
        assert not attacker.publish(topics.status(ATTACKER), _status(ATTACKER, 900_000)).is_failure
        assert not attacker.publish(topics.status(ATTACKER), _status(ATTACKER)).is_failure
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        counters = bridge.counters.as_dict()
        assert counters["received"] == 1 and counters["rejected"] == 0, counters
        assert [r.device_id for r in received] == [ATTACKER]
    finally:
        attacker.close()
        bridge.stop()


def agent_never_sends_what_the_broker_would_refuse(b: ProductionBroker) -> None:
    """The agent itself with a packet over the broker's limit (a huge result batch): before,
    it was sent, the broker disconnected the agent, and the outbox sent it again after
    every reconnect. Now publish refuses it and the link stays up."""
    link = agent_link(b)
    try:
        info = link.publish(topics.alerts(DEV), b"r" * BROKER_MAX_PACKET_BYTES)
        assert info.rc == mqtt.MQTT_ERR_PAYLOAD_SIZE
        ok = link.publish(topics.alerts(DEV), b"fine")
        ok.wait_for_publish(5)
        assert ok.is_published() and link.connect_count == 1 and link.connected.is_set()
    finally:
        link.stop()


def _bridge(b: ProductionBroker, received: list[Report]) -> MqttBridge:
    tls = b.server_tls()
    bridge = MqttBridge(MqttSettings(host="127.0.0.1", port=b.server_port, client_id="fs-2",
                                     tls=MqttTls(ca_file=Path(tls["ca_certs"]),
                                                 cert_file=Path(tls["certfile"]),
                                                 key_file=Path(tls["keyfile"]))),
                        received.extend)
    bridge.start()
    assert bridge.wait_connected(10)
    return bridge


POISON = b"[" * 5000 + b"]" * 5000  # valid JSON, deeper than json.loads can go


def poison_report_does_not_stop_report_ingest(b: ProductionBroker) -> None:
    """A report nested deeper than json.loads recurses (before: RecursionError escaped
    parse_report and ended the server's ingest thread: no device's report was stored
    again). Refused and counted; the next report is ingested."""
    received: list[Report] = []
    bridge = _bridge(b, received)
    attacker = device(b, ATTACKER)
    try:
        time.sleep(0.3)
        for payload in (POISON, b'{"seq": ' + b"9" * 5000 + b"}", _status(ATTACKER)):
            assert not attacker.publish(topics.status(ATTACKER), payload).is_failure
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r.device_id for r in received] == [ATTACKER]
        assert bridge.counters.as_dict()["rejected"] == 2
    finally:
        attacker.close()
        bridge.stop()


def _alert(device_id: str, **change: object) -> bytes:
    doc = {"msg_id": "a" * 32, "seq": 1, "device_id": device_id, "ts": 1.0, "kind": "alert",
           "slot": "logs", "model_version": 1, "reason": "label security >= 0.80",
           "item": {"source": "sshd", "ts": 1.0, "text": "Failed password for root",
                    "label": "security", "score": 0.9, "anomaly": 0.95}}
    for key, value in change.items():
        (doc["item"] if key in ("score", "anomaly") else doc)[key] = value  # type: ignore[index]
    return json.dumps(doc).encode()  # NaN goes out as NaN, which json.loads reads back


def unstorable_values_are_refused_at_the_door(b: ProductionBroker) -> None:
    """Values a report may carry but a database column cannot hold (before: parsed, then the
    INSERT failed and took the ingest batch, other devices' reports in it, down with it:
    SQLite refuses 2^63 and NaN, PostgreSQL 2^31 and strings past the column's width; an
    alert's, a status's and an OTA event's).
    Refused and counted where they arrive; the next report is ingested."""
    received: list[Report] = []
    bridge = _bridge(b, received)
    attacker = device(b, ATTACKER)
    poisoned = [(topics.alerts(ATTACKER), p) for p in (
        _alert(ATTACKER, repeats=2**31), _alert(ATTACKER, model_version=2**63),
        _alert(ATTACKER, score=float("nan")), _alert(ATTACKER, anomaly=float("inf")),
        _alert(ATTACKER, msg_id="m" * 65), _alert(ATTACKER, slot="s" * 33))]
    # and the status and OTA report strings stored in columns of 32 and 64 characters
    status = json.loads(_status(ATTACKER))
    ota = {"msg_id": "o" * 32, "seq": 1, "device_id": ATTACKER, "ts": 1.0, "kind": "ota",
           "slot": "logs", "state": "failed"}
    poisoned += [(topics.status(ATTACKER), json.dumps(status | {"agent_version": "v" * 65}))]
    # and a status listing more model slots than an agent runs, or one the console would
    # draw as a link elsewhere (review, December 2026: 1,201 slots, a 488 KB console page)
    model = {"slot": "logs", "name": "nano-logs", "version": 1, "label": "v1",
             "runtime": "onnxruntime", "sha256": "a" * 64}
    poisoned += [(topics.status(ATTACKER), json.dumps(status | {"models": models}))
                 for models in ([model | {"slot": f"s{i}"} for i in range(17)],
                                [model | {"slot": "../rollouts"}], [model | {"name": "n" * 65}])]
    # and a status claiming more bundle features than any agent reads, or a long one
    poisoned += [(topics.status(ATTACKER), json.dumps(status | {"reads": reads}))
                 for reads in ([f"f{i}" for i in range(33)], ["r" * 65], "level_offsets")]
    poisoned += [(topics.ota(ATTACKER), json.dumps(ota | change)) for change in (
        {"rollout_id": "r" * 65}, {"reason": "x" * 65}, {"slot": "s" * 33})]
    try:
        time.sleep(0.3)
        for topic, payload in poisoned:
            assert not attacker.publish(topic, payload).is_failure
        assert not attacker.publish(topics.status(ATTACKER), _status(ATTACKER)).is_failure
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r.device_id for r in received] == [ATTACKER]
        assert bridge.counters.as_dict()["rejected"] == len(poisoned)
    finally:
        attacker.close()
        bridge.stop()


def poison_artifact_request_does_not_end_the_stream(b: ProductionBroker, tmp: Path) -> None:
    """An artifact request nested too deep (before: RecursionError in the server's
    on_message ended paho's network thread: no device got an artifact again)."""
    repo = tmp / "repo"
    (repo / "metadata").mkdir(parents=True)
    (repo / "metadata" / "timestamp.json").write_bytes(b'{"signed": {"version": 7}}')
    tls = b.server_tls()
    streamer = ArtifactStreamer(MqttSettings(
        host="127.0.0.1", port=b.server_port, client_id="fs-3", tls=MqttTls(
            ca_file=Path(tls["ca_certs"]), cert_file=Path(tls["certfile"]),
            key_file=Path(tls["keyfile"]))), ArtifactSettings(), repo)
    streamer.start()
    attacker = device(b, ATTACKER, (topics.artifact_chunk_filter(ATTACKER),))
    try:
        assert streamer.connected.wait(10)
        assert not attacker.publish(topics.artifact_requests(ATTACKER), POISON).is_failure
        ok = ArtifactRequest(transfer="t2", path="metadata/timestamp.json", offset=0, chunks=1,
                             chunk_size=1024)
        assert not attacker.publish(topics.artifact_requests(ATTACKER),
                                    ok.model_dump_json()).is_failure
        attacker.wait_topic(topics.artifact_chunks(ATTACKER, "t2"))
        assert streamer.connected.is_set() and streamer.health()["invalid"] == 1
    finally:
        attacker.close()
        streamer.stop()


ATTACKS: dict[str, Callable[[ProductionBroker], None]] = {
    f.__name__: f for f in (huge_publish_is_refused_by_the_broker,
                            device_cannot_plant_its_desired_state,
                            oversized_message_never_reaches_the_agent,
                            oversized_report_never_reaches_the_server,
                            agent_never_sends_what_the_broker_would_refuse,
                            poison_report_does_not_stop_report_ingest,
                            unstorable_values_are_refused_at_the_door)}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionBroker]:
    b = ProductionBroker(tmp_path_factory.mktemp("attacks")).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_mqtt_attack(attack: str, broker: ProductionBroker) -> None:
    ATTACKS[attack](broker)


def test_mqtt_attack_poison_artifact_request(broker: ProductionBroker, tmp_path: Path) -> None:
    poison_artifact_request_does_not_end_the_stream(broker, tmp_path)


def _rss_mb(pid: int) -> float:
    return rss_kib(pid) / 1024


def test_a_retained_flood_stops_at_the_brokers_memory_limit(tmp_path: Path) -> None:
    """Review, December 2026: a device may write ``results/+`` and ``reply/+``, any number
    of topics, and Mosquitto has no per-client quota of retained messages: 150 retained
    messages of 1000 KiB took the broker from 10 to 157 MB, held after the device left.
    With the memory_limit that broker-config writes, the publisher is disconnected at the
    limit and the broker stays up for everyone else."""
    b = ProductionBroker(tmp_path / "broker", memory_limit=48 << 20).start()
    assert b.proc is not None
    attacker = device(b, ATTACKER)
    try:
        for i in range(120):  # 120 MB if the broker kept it all
            attacker.client.publish(f"{topics.device_root(ATTACKER)}/results/s{i}",
                                    b"x" * 1_000_000, qos=1, retain=True)
            time.sleep(0.01)
        time.sleep(1)
        assert b.proc.poll() is None and _rss_mb(b.proc.pid) < 90, _rss_mb(b.proc.pid)
        other = device(b, DEV, subscribe=(f"{topics.device_root(DEV)}/#",))
        other.client.publish(topics.status(DEV), _status(DEV), qos=1).wait_for_publish(10)
        other.close()
    finally:
        attacker.close()
        b.stop()
