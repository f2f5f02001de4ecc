"""The MQTT topic source against a real Mosquitto."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from pydantic import ValidationError

from agent.config import AgentConfig, MqttConfig, TlsConfig
from agent.metrics import Counters
from agent.mqtt_link import MqttLink
from agent.sources.mqtt_topic import AgentBroker, MqttTopicSource
from agent.sources.mqtt_topic_config import MqttTopicSourceConfig
from agent.sources.registry import build_source, default_source_name
from hil.broker import ProductionBroker
from tests.support.line_sink import ListSink, wait_until
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector


class Harness:
    def __init__(self) -> None:
        self.counters = Counters()
        self.sources: list[MqttTopicSource] = []
        self.clients: list[Collector] = []

    def start(self, defaults: AgentBroker, sink: ListSink | None = None,
              **cfg: Any) -> tuple[MqttTopicSource, ListSink]:
        config = MqttTopicSourceConfig.model_validate({"kind": "mqtt", **cfg})
        sink = sink or ListSink()
        src = build_source(config, sink, self.counters, 256, defaults)
        assert isinstance(src, MqttTopicSource)
        src.start(None)
        self.sources.append(src)
        wait_until(lambda: src.subscribed, what="source subscribed")
        return src, sink

    def publisher(self, port: int, tls: dict[str, Any] | None = None) -> Collector:
        c = Collector(port, "unused/never", tls=tls)
        self.clients.append(c)
        return c


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    for s in harness.sources:
        s.stop()
    for c in harness.clients:
        c.close()


def defaults_for(b: Mosquitto) -> AgentBroker:
    return AgentBroker(MqttConfig(host="127.0.0.1", port=b.port, reconnect_max_s=1), "test")


def test_lines_from_wildcard_topics(broker: Mosquitto, h: Harness) -> None:
    src, sink = h.start(defaults_for(broker), topics=["sensors/+/text", "plant/#"])
    pub = h.publisher(broker.port)
    pub.publish("sensors/pump1/text", b"pressure 3.1 bar\r\ntemp 41 C\n\n")
    pub.publish("plant/hall/a", "vibration high")
    pub.publish("other/x", b"not subscribed")
    lines = sink.wait_for(lambda ls: len(ls) >= 3)
    assert [ln.text for ln in lines] == ["sensors/pump1/text: pressure 3.1 bar",
                                         "sensors/pump1/text: temp 41 C",
                                         "plant/hall/a: vibration high"]
    assert all(ln.checkpoint is None and ln.source == src.name for ln in lines)
    assert src.name == "mqtt:sensors/+/text,plant/#"
    info = src.describe()
    assert info["connected"] and info["messages"] == 2 and info["lines_dropped"] == 0


def test_a_long_topic_is_cut_before_it_is_copied_onto_each_line(broker: Mosquitto,
                                                                 h: Harness) -> None:
    """Review, December 2026: a publisher-chosen topic of 64 KiB went in front of each of a
    message's 256 lines (16 MiB for one message), and each line, cut to max_line_bytes,
    was all topic: the sensor's text never reached the model."""
    _, sink = h.start(defaults_for(broker), topics=["sensors/#"])
    topic = "sensors/" + "x" * 60_000
    h.publisher(broker.port).publish(topic, b"temp 41 C\n" * 256)
    lines = sink.wait_for(lambda ls: len(ls) >= 256)
    assert {ln.text for ln in lines} == {f"{topic[:200]}…: temp 41 C"}


def test_without_topic_prefix_bounded_and_invalid_utf8(broker: Mosquitto, h: Harness) -> None:
    _, sink = h.start(defaults_for(broker), topics=["s/#"], include_topic=False)
    pub = h.publisher(broker.port)
    pub.publish("s/1", b"bad \xff byte\n" + b"z" * 1000)
    lines = sink.wait_for(lambda ls: len(ls) >= 2)
    assert lines[0].text == "bad \ufffd byte"
    assert lines[1].text == "z" * 256 and lines[1].truncated
    assert h.counters.get("lines_invalid_utf8") == 1 and h.counters.get("lines_truncated") == 1


def test_full_queue_drops_and_counts(broker: Mosquitto, h: Harness) -> None:
    """At QoS 0 (and on the agent's own connection) nothing waits: a full queue drops."""
    src, sink = h.start(defaults_for(broker), topics=["s/#"], sink=ListSink(capacity=2), qos=0)
    pub = h.publisher(broker.port)
    pub.publish("s/1", b"1\n2\n3\n4\n5")
    wait_until(lambda: src.lines_dropped == 3, what="3 drops")
    # The agent-wide counter moves after the source's own, on paho's thread: wait for it.
    wait_until(lambda: h.counters.get("lines_dropped") >= 3, what="3 drops counted")
    assert sink.texts() == ["s/1: 1", "s/1: 2"]
    assert h.counters.get("lines_dropped") == 3 and h.counters.get("lines_in") == 2
    assert src.describe()["lines_dropped"] == 3


def test_one_message_is_bounded_in_lines_and_a_full_queue_stops_its_split(
        broker: Mosquitto, h: Harness) -> None:
    """Review, December 2026: one 256 KiB message of short lines made and refused 131,000
    lines (0.7 s of CPU on the network thread every MQTT source and the agent's link
    share). Now at most max_lines_per_message are taken, and once the queue refuses one
    the rest of the message is counted without being made."""
    src, sink = h.start(defaults_for(broker), topics=["s/#"], max_lines_per_message=4)
    pub = h.publisher(broker.port)
    pub.publish("s/1", b"1\n2\n\n3\n4\n5\n6")
    wait_until(lambda: src.lines_dropped == 2, what="2 drops")
    # The lines over the bound are counted before the others are queued: wait for those.
    assert sink.wait_count(4) == ["s/1: 1", "s/1: 2", "s/1: 3", "s/1: 4"]
    src.stop()
    src, sink = h.start(defaults_for(broker), topics=["t/#"], sink=ListSink(capacity=2), qos=0)
    made: list[bytes] = []
    emit = src.emit

    def counting_emit(raw: bytes, *args: Any, **kwargs: Any) -> bool:
        made.append(raw)
        return emit(raw, *args, **kwargs)

    src.emit = counting_emit  # type: ignore[method-assign]
    pub.publish("t/1", b"a\n" * 100_000)  # 200 KB
    wait_until(lambda: src.lines_dropped == 99_998, what="the rest counted")
    wait_until(lambda: h.counters.get("lines_dropped") >= 2 + 99_998,
               what="the rest counted agent-wide")  # after the source's count, on paho's thread
    assert len(made) == 3  # two queued, one refused; the rest counted, never made
    assert h.counters.get("lines_dropped") == 2 + 99_998  # the first source's two too


def test_a_newline_in_a_topic_does_not_make_a_second_line(broker: Mosquitto,
                                                          h: Harness) -> None:
    """Mosquitto refuses control characters in topics; other brokers may pass them, and a
    level a wildcard matches goes into the line: the message as paho would hand it over."""
    src, sink = h.start(defaults_for(broker), topics=["sensors/+"])
    msg = mqtt.MQTTMessage(topic=b"sensors/a\nFORGED LINE: disk failure")
    msg.payload = b"ok"
    src._on_message(None, None, msg)  # type: ignore[arg-type]
    [line] = sink.wait_for(lambda ls: len(ls) >= 1)
    assert line.text == "sensors/a?FORGED LINE: disk failure: ok"


def test_reconnects_and_resubscribes_after_broker_restart(broker: Mosquitto,
                                                          h: Harness) -> None:
    src, sink = h.start(defaults_for(broker), topics=["s/#"])
    h.publisher(broker.port).publish("s/1", b"before")
    sink.wait_count(1)
    broker.restart()                    # no persistence: the broker forgot our session
    wait_until(lambda: src.subscribed and src.connects == 2, timeout=20,
               what="reconnected and subscribed")
    h.publisher(broker.port).publish("s/1", b"after")
    assert sink.wait_count(2) == ["s/1: before", "s/1: after"]
    assert src.last_disconnect is not None


def test_waits_for_a_broker_that_is_not_there_yet(tmp_path: Any, h: Harness) -> None:
    late = Mosquitto(tmp_path / "late")
    cfg = MqttTopicSourceConfig(kind="mqtt", topics=["s/#"])
    sink = ListSink()
    src = build_source(cfg, sink, h.counters, 256, defaults_for(late))
    assert isinstance(src, MqttTopicSource)
    src.start(None)
    h.sources.append(src)
    try:
        time.sleep(0.3)
        assert not src.connected and src.alive()
        late.start()
        wait_until(lambda: src.subscribed, timeout=20, what="subscribed once the broker is up")
        h.publisher(late.port).publish("s/x", b"hello")
        assert sink.wait_count(1) == ["s/x: hello"]
    finally:
        src.stop()
        late.stop()


def test_sources_on_the_agents_broker_share_its_session(prod_broker: ProductionBroker,
                                                        h: Harness) -> None:
    """On the production broker (client id = certificate CN) a source on the agent's own
    broker rides on the agent's link: a connection of its own with the device's
    certificate would take the agent's session over, and the two would fight on."""
    tls = prod_broker.device_tls("dev-a")
    assert prod_broker.tls_port is not None
    settings = MqttConfig(host="127.0.0.1", port=prod_broker.tls_port, reconnect_max_s=1,
                          tls=TlsConfig(ca_file=Path(tls["ca_certs"]),
                                        cert_file=Path(tls["certfile"]),
                                        key_file=Path(tls["keyfile"])))
    link = MqttLink(settings, "nanofleet-dev-a", will=None)
    link.start()
    try:
        assert link.connected.wait(10)
        src, sink = h.start(AgentBroker(settings, "nanofleet-dev-a", link),
                            topics=["nanofleet/v1/dev/dev-a/sensors/#"])
        assert src.describe()["tls"] is True
        server = h.publisher(prod_broker.server_port, prod_broker.server_tls())
        server.publish("nanofleet/v1/dev/dev-a/sensors/t", b"41 C")
        assert sink.wait_count(1) == ["nanofleet/v1/dev/dev-a/sensors/t: 41 C"]
        time.sleep(0.5)
        assert link.connect_count == 1 and link.connected.is_set()
        assert "dev-a already connected" not in prod_broker.log_text()
        # A broker named by host gets its own connection, without the agent's TLS.
        src2, sink2 = h.start(AgentBroker(settings, "nanofleet-dev-a", link), topics=["plain/#"],
                              host="127.0.0.1", port=prod_broker.port)
        assert src2.describe()["tls"] is False and src2.link is None
    finally:
        for s in h.sources:
            s.stop()
        h.sources.clear()
        link.stop()


def test_config_validation() -> None:
    for bad in (["a/#/b"], ["a/b+"], [""], []):
        with pytest.raises(ValidationError):
            MqttTopicSourceConfig.model_validate({"kind": "mqtt", "topics": bad})
    with pytest.raises(ValidationError, match="extra"):
        MqttTopicSourceConfig.model_validate({"kind": "mqtt", "topics": ["a"], "topic": "b"})
    cfg = MqttTopicSourceConfig.model_validate({"kind": "mqtt", "topics": ["a/+", "b/#"]})
    assert default_source_name(cfg) == "mqtt:a/+,b/#"


def test_a_source_never_reads_the_agents_own_output(broker: Mosquitto, h: Harness,
                                                    tmp_path: Path) -> None:
    """Review, December 2026: a source on ``nanofleet/#`` classified the agent's own
    results, published new ones and read those, for ever, from one log line."""
    base = {"device_id": "pump-07", "state_dir": str(tmp_path),
            "mqtt": {"host": "127.0.0.1", "port": broker.port}}
    for topic in ("#", "nanofleet/#", "nanofleet/v1/dev/+/results/+",
                  "nanofleet/v1/dev/pump-07/alerts", "+/+/+/pump-07/#"):
        with pytest.raises(ValidationError, match="the agent's own topics"):
            AgentConfig.model_validate(base | {"sources": [{"kind": "mqtt",
                                                            "topics": [topic]}]})
    # Nor what the agent itself reads: on its connection a filter has one handler, and a
    # source on the mute list's topic took it, so no mute was ever applied (review,
    # December 2026).
    for topic in ("nanofleet/v1/dev/pump-07/mutes", "nanofleet/v1/dev/pump-07/desired",
                  "nanofleet/v1/dev/pump-07/query", "nanofleet/v1/dev/pump-07/artifacts/chunk/+",
                  "nanofleet/v1/dev/+/mutes"):
        with pytest.raises(ValidationError, match="a topic the agent itself reads"):
            AgentConfig.model_validate(base | {"sources": [{"kind": "mqtt",
                                                            "topics": [topic]}]})
    for topic in ("sensors/#", "nanofleet/v1/dev/pump-08/alerts", "nanofleet/v1/dev/pump-07/x",
                  "nanofleet/v1/dev/pump-08/mutes"):
        AgentConfig.model_validate(base | {"sources": [{"kind": "mqtt", "topics": [topic]}]})
    # One handler per filter on the agent's connection: a second source with the same
    # filter took the first one's messages (review, December 2026).
    twice = [{"kind": "mqtt", "topics": ["sensors/#"], "name": "a"},
             {"kind": "mqtt", "topics": ["plant/#", "sensors/#"], "name": "b"}]
    with pytest.raises(ValidationError, match="also a filter of sources"):
        AgentConfig.model_validate(base | {"sources": twice})
    twice[1]["host"] = "192.0.2.1"  # another broker: a connection of its own
    AgentConfig.model_validate(base | {"sources": twice})
    # A bridge may still bring them from another broker: dropped and counted there.
    own = AgentBroker(MqttConfig(host="127.0.0.1", port=broker.port, reconnect_max_s=1),
                      "test", device_id="pump-07")
    src, sink = h.start(own, topics=["bridged/#", "nanofleet/v1/dev/pump-07/#"])
    pub = h.publisher(broker.port)
    pub.publish("nanofleet/v1/dev/pump-07/results/logs", b"a result, not a sensor line")
    pub.publish("bridged/door", b"door open")
    wait_until(lambda: len(sink.lines) >= 1, what="the sensor line")
    wait_until(lambda: h.counters.get("source_errors") == 1, what="the own topic counted")
    assert [line.text for line in sink.lines] == ["bridged/door: door open"]
    assert "agent's own topic" in str(src.last_error)


def test_a_retained_value_sent_on_subscribing_is_not_a_new_line(broker: Mosquitto,
                                                                 h: Harness) -> None:
    """Review, December 2026: the broker's kept last value came again at every reconnect
    and restart, and was classified (and alerted) each time."""
    pub = h.publisher(broker.port)
    pub.publish("sensors/door", b"door open since yesterday", retain=True)
    time.sleep(0.3)
    src, sink = h.start(defaults_for(broker), topics=["sensors/#"])
    wait_until(lambda: h.counters.get("lines_retained_skipped") == 1, what="skipped")
    pub.publish("sensors/door", b"door closed", retain=True)  # published while we listen
    lines = sink.wait_for(lambda ls: len(ls) >= 1)
    assert [ln.text for ln in lines] == ["sensors/door: door closed"]
