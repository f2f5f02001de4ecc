"""An MQTT source on a broker of its own acknowledges a QoS 1 message only once its
lines are committed (agent/sources/mqtt_topic.py), against a real Mosquitto.

Before, paho acknowledged on arrival: the lines queued at a crash or kill -9 were lost,
and a full line queue dropped them. Now the broker holds what is not acknowledged, sends
it again to the source's next connection (a persistent session, across restarts), and
sends no more than ``receive_maximum`` unacknowledged messages (the back-pressure).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.config import MqttConfig
from agent.line_queue import LineQueue
from agent.metrics import Counters
from agent.sources.base import Line
from agent.sources.mqtt_topic import AgentBroker, MqttTopicSource
from agent.sources.mqtt_topic_config import MqttTopicSourceConfig
from agent.sources.registry import build_source
from tests.support.agent_proc import AgentProcess, payloads, write_config
from tests.support.line_sink import ListSink, wait_until
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector

DEV = "pump-07"
ROOT = f"nanofleet/v1/dev/{DEV}"


class Rig:
    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.counters = Counters()
        self.sources: list[MqttTopicSource] = []
        self.pub = Collector(broker.port, "unused/never")

    def build(self, sink: ListSink, link: Any = None, **cfg: Any) -> MqttTopicSource:
        """A source (not started) on the test broker named by host, a connection of its
        own; with ``host=None`` and a ``link``, one on the agent's connection."""
        config = MqttTopicSourceConfig.model_validate(
            {"kind": "mqtt", "host": "127.0.0.1", "port": self.broker.port,
             "topics": ["s/#"], "name": "sensors", **cfg})
        agent = AgentBroker(MqttConfig(host="127.0.0.1", port=1, reconnect_max_s=1), "test",
                            link=link)
        src = build_source(config, sink, self.counters, 256, agent)
        assert isinstance(src, MqttTopicSource)
        return src

    def start(self, sink: ListSink, **cfg: Any) -> MqttTopicSource:
        """A source on the test broker named by host, started and subscribed."""
        src = self.build(sink, **cfg)
        src.start(None)
        self.sources.append(src)
        wait_until(lambda: src.subscribed, what="source subscribed")
        return src

    def publish(self, *payloads: str) -> None:
        for payload in payloads:
            self.pub.publish("s/pump", payload, qos=1)


@pytest.fixture
def rig(broker: Mosquitto) -> Iterator[Rig]:
    r = Rig(broker)
    yield r
    for s in r.sources:
        s.stop()
    r.pub.close()


def commit(lines: list[Line]) -> None:
    """What the pipeline does once a batch is in the spool."""
    for line in lines:
        if line.ack is not None:
            line.ack()


def test_what_was_not_committed_comes_again_after_a_restart(rig: Rig) -> None:
    sink = ListSink()
    src = rig.start(sink)
    assert src.describe()["acknowledged_when_committed"] is True
    rig.publish("reading 1 ok", "reading 2 ok\nreading 3 ok")
    got = sink.wait_for(lambda ls: len(ls) == 3)
    # One acknowledgement per message, on its last line.
    assert [line.ack is not None for line in got] == [True, False, True]
    commit(got[:1])  # the first message's line reached the spool; the second's did not
    src.stop()  # a crash before the commit

    again = ListSink()
    src = rig.start(again)
    lines = again.wait_for(lambda ls: len(ls) == 2)
    assert [line.text for line in lines] == ["s/pump: reading 2 ok", "s/pump: reading 3 ok"]
    commit(lines)
    rig.publish("reading 4 ok")
    commit(again.wait_for(lambda ls: len(ls) == 3)[2:])
    src.stop()

    # Everything committed was acknowledged: a third start gets nothing old.
    third = ListSink()
    src = rig.start(third)
    rig.publish("reading 5 ok")
    assert [line.text for line in third.wait_for(lambda ls: len(ls) >= 1)] \
        == ["s/pump: reading 5 ok"]
    assert rig.counters.get("lines_dropped") == 0


def test_a_clean_stop_acknowledges_what_the_drain_commits(rig: Rig) -> None:
    """The daemon stops a source with keep_open, drains the pipeline, then closes it: the
    queued lines' acknowledgements still reach the broker, which sends nothing again.
    (Disconnecting first dropped them: every queued message came again after each
    clean stop or reload; review, December 2026.)"""
    sink = ListSink()
    src = rig.start(sink)
    rig.publish("reading 1 ok", "reading 2 ok")
    queued = sink.wait_for(lambda ls: len(ls) == 2)
    src.stop(keep_open=True)
    rig.publish("reading 3 ok")  # arrives while stopping: not taken, kept by the broker
    time.sleep(0.3)
    commit(queued)  # the drain
    src.close()
    assert not src.alive()

    again = ListSink()
    rig.start(again)
    lines = again.wait_for(lambda ls: len(ls) >= 1)
    time.sleep(0.5)  # time for a repeat of reading 1 or 2, which must not come
    assert [line.text for line in again.lines] == ["s/pump: reading 3 ok"], lines


def test_a_full_queue_waits_and_the_broker_holds_the_rest(rig: Rig) -> None:
    sink = ListSink(capacity=3)
    src = rig.start(sink, receive_maximum=4)
    rig.publish(*[f"reading {i} ok" for i in range(40)])
    sink.wait_for(lambda ls: len(ls) == 3)
    # The fourth message waits on the source's network thread for room; nothing is
    # dropped, nothing acknowledged.
    wait_until(lambda: src.describe()["messages"] == 4, what="the fourth message taken")
    time.sleep(0.5)  # time for a fifth, which the broker must not send
    assert src.describe()["messages"] == 4

    taken: list[str] = []
    while len(taken) < 40:  # the pipeline: take a batch, commit it
        with sink.cond:
            batch, sink.lines[:] = list(sink.lines), []
        commit(batch)
        taken += [line.text for line in batch]
        if len(taken) < 40:
            sink.wait_for(lambda ls: len(ls) > 0)
    assert taken == [f"s/pump: reading {i} ok" for i in range(40)]  # all, in order
    assert rig.counters.get("lines_dropped") == 0 and src.describe()["lines_dropped"] == 0


def test_it_waits_like_a_file_and_leaves_the_reserve_to_lines_that_cannot(rig: Rig) -> None:
    """The line queue keeps an eighth of its room for lines nothing can send again (sensor
    lines on the agent's own connection). A source whose broker holds its messages waits
    like a file instead of taking that room (review, December 2026: with it, a backlog
    on such a broker starved on-link sensors, 62 % of their lines dropped)."""
    queue = LineQueue(16)  # reserve: 2
    rig.start(queue)  # type: ignore[arg-type]  # the agent's real queue as the sink
    for i in range(14):
        assert queue.put(Line("file:log", f"pump cycle {i}", time.time()), can_wait=True)
    rig.publish("reading 1 ok")
    time.sleep(0.5)
    assert len(queue) == 14  # waiting, not in the reserve
    assert queue.put(Line("mqtt:on-link", "sensor", time.time()))  # the reserve is there
    queue.get_batch(10, 0.0, timeout=1.0)  # the pipeline takes a batch: room again
    wait_until(lambda: any(line.text == "s/pump: reading 1 ok" for line, _ in queue._items),
               what="the sensor line queued once there is room")


def test_a_message_that_cannot_be_taken_is_counted_and_does_not_stall_the_rest(
        rig: Rig) -> None:
    """An exception on paho's thread is swallowed by paho: the message would stay
    unacknowledged, and receive_maximum of those stop the broker for good."""
    sink = ListSink()
    src = rig.start(sink, receive_maximum=1)
    lines_of, failures = src._lines_of, [1]

    def failing_once(msg: Any) -> list[bytes]:
        if failures:
            failures.pop()
            raise RuntimeError("a bug")
        return lines_of(msg)

    src._lines_of = failing_once  # type: ignore[method-assign]
    rig.publish("reading 1 ok", "reading 2 ok")
    lines = sink.wait_for(lambda ls: len(ls) == 1)
    assert [line.text for line in lines] == ["s/pump: reading 2 ok"]
    assert rig.counters.get("source_errors") == 1 and "a bug" in (src.last_error or "")


def message(topic: bytes) -> Any:
    """A QoS 1 message as paho hands it over (mid 7, one line)."""
    import paho.mqtt.client as mqtt

    msg = mqtt.MQTTMessage(mid=7, topic=topic)
    msg.qos, msg.payload = 1, b"reading 1 ok"
    return msg


class AckRecorder:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)


def test_a_topic_that_is_not_utf8_is_acknowledged_and_counted(rig: Rig) -> None:
    """Mosquitto refuses such topics; another broker or a bridge may not. paho decodes
    the topic when it is read, so it raised in the source and again in its guard: the
    message stayed unacknowledged (second review, December 2026)."""
    src = rig.build(ListSink())
    client = AckRecorder()
    src._client = client  # type: ignore[assignment]
    src._on_message(None, None, message(b"s/\xff\xfe"))  # type: ignore[arg-type]
    assert client.acked == [7]
    assert rig.counters.get("source_errors") == 1 and "s/" in (src.last_error or "")


def test_on_the_agents_connection_a_line_arriving_while_stopping_is_still_taken(
        rig: Rig) -> None:
    """There the link acknowledged it on arrival: nothing would send it again (second
    review, December 2026: it vanished uncounted between stop and unsubscribe)."""
    sink = ListSink()
    src = rig.build(sink, link=object(), host=None, port=None)  # never started here
    assert src.link is not None
    src._stop.set()  # stop(keep_open=True) on a source that was never started
    src._on_link_message(message(b"s/pump"))
    assert sink.texts() == ["s/pump: reading 1 ok"]


def test_changed_topics_are_a_new_session(rig: Rig) -> None:
    """The broker keeps a persistent session's subscriptions: a filter taken out of the
    config must not go on delivering to the source."""
    sink = ListSink()
    src = rig.start(sink, topics=["s/#", "old/#"])
    src.stop()
    again = ListSink()
    rig.start(again, topics=["s/#"])
    rig.pub.publish("old/x", "from the removed filter", qos=1)
    rig.publish("reading 1 ok")
    lines = again.wait_for(lambda ls: len(ls) >= 1)
    assert [line.text for line in lines] == ["s/pump: reading 1 ok"]


def test_qos_0_is_not_acknowledged_and_keeps_its_order(rig: Rig) -> None:
    sink = ListSink()
    rig.start(sink)
    rig.pub.publish("s/a", "first", qos=1)
    rig.pub.publish("s/b", "second", qos=0)
    lines = sink.wait_for(lambda ls: len(ls) == 2)
    assert [line.text for line in lines] == ["s/a: first", "s/b: second"]
    commit(lines)  # acknowledging the QoS 0 message sends nothing (no PUBACK for mid 0)


# -- the agent: kill -9 with sensor lines queued --------------------------------------------

def test_sensor_lines_queued_at_a_kill_come_again_after_the_restart(
        tmp_path: Path, broker: Mosquitto) -> None:
    """The real agent follows a file with a backlog of 150,000 lines (seconds of work)
    and a sensor broker named by host. Sensor messages arrive and are queued behind the
    backlog; the agent is killed (-9) before their lines are classified. Before, paho had
    acknowledged them on arrival and they were lost; now the broker sends them again to
    the restarted agent."""
    log = tmp_path / "app.log"
    log.write_text("")
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "agent.toml", DEV, state, broker.port,
                       f'[[sources]]\nkind = "file"\nname = "app"\npath = "{log}"\n'
                       f'start_at = "beginning"\n'
                       f'[[sources]]\nkind = "mqtt"\nname = "sensors"\nhost = "127.0.0.1"\n'
                       f'port = {broker.port}\ntopics = ["s/#"]\n',
                       extra="[pipeline]\nqueue_size = 200000\n")
    results = Collector(broker.port, f"{ROOT}/results/#", session=True)
    pub = Collector(broker.port, "unused/never")
    agent = AgentProcess(cfg, state)
    try:
        agent.start()
        wait_until(lambda: sensors(agent).get("subscribed"), 60, "sensor source subscribed")
        with log.open("w") as f:
            f.writelines(f"app[9]: request {i} served in 12ms\n" for i in range(150_000))
        wait_until(lambda: agent.query("metrics")["result"]["gauges"].get("queue_depth", 0)
                   > 50_000, 60, "a backlog queued")
        sent = [f"reading {i} pressure 2.1 bar ok" for i in range(30)]
        for text in sent:
            pub.publish("s/pump", text, qos=1)
        wait_until(lambda: sensors(agent).get("lines_read") == 30, 60, "sensor lines queued")
        agent.kill9()
        texts = sensor_texts(results.messages)
        assert len(texts) < 30, "the lines were classified before the kill: no test"

        agent.start()
        with contextlib.suppress(TimeoutError):  # what is missing is said below
            results.wait_for(all_seen(set(sent)), timeout=120)
        with results.lock:
            missing = sorted(set(sent) - set(sensor_texts(results.messages)))
        assert not missing, (f"{len(missing)} lost: {missing[:3]}; source {sensors(agent)}\n"
                             + agent.output()[-3000:])
        assert sensors(agent)["acknowledged_when_committed"] is True
    finally:
        agent.stop()
        results.close()
        pub.close()


def sensors(agent: AgentProcess) -> dict[str, Any]:
    """The sensor source's description; empty while the agent has not started its
    sources yet (it answers queries before)."""
    return next((s for s in agent.query("sources")["result"] if s["name"] == "sensors"), {})


def all_seen(sent: set[str]) -> Callable[[list[Any]], bool]:
    """A wait_for predicate: whether every sensor line of ``sent`` is among the results.
    It looks only at the messages that arrived since its last call: run under the
    collector's lock at each of ~2,400 results, a scan of them all each time was quadratic
    (a second of the collector's network thread on a quiet box, several on CI)."""
    seen: set[str] = set()
    looked = 0

    def pred(messages: list[Any]) -> bool:
        nonlocal looked
        seen.update(sensor_texts(messages[looked:]))
        looked = len(messages)
        return sent <= seen

    return pred


def sensor_texts(messages: list[Any]) -> list[str]:
    """The sensor lines among the results. Only messages that hold one are decoded: the
    collector evaluates this under its lock at every message, and decoding the ~2,400
    results of the backlog each time held its network thread back for minutes (the
    agent's publishing with it)."""
    return [item["text"].removeprefix("s/pump: ")
            for doc in payloads([m for m in messages if b"s/pump: " in m.payload])
            for item in doc["items"] if item["text"].startswith("s/pump: ")]
