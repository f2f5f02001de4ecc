"""The MQTT query door of a real agent process, against a real Mosquitto (review,
December 2026): answers go only to the device's own ``reply/<client>``; an answer over
the broker's packet limit is an error answer, not silence; a long response topic does
not stall the agent (it went whole into a log line whose secret filter was quadratic:
83 s with every thread held)."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.config import MqttConfig
from agent.control import ask
from agent.metrics import Counters
from agent.mqtt_link import MqttLink
from agent.queries import MAX_ALERTS_ANSWER_BYTES
from agent.query_service import (
    MAX_CONCURRENT_QUERIES,
    MAX_UNACKED_ANSWER_BYTES,
    MQTT_QUERIES_PER_S,
    QueryService,
)
from contract.messages import QueryResponse
from tests.support.agent_proc import AgentProcess, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector
from tests.support.query_fakes import words_alone_pipeline

DEV = "gate-09"
ROOT = f"nanofleet/v1/dev/{DEV}"
# Control bytes take 6 bytes each in an alert's JSON: 200 such alerts are ~2.3 MB.
LINE = "sshd[311]: Failed password for root from 203.0.113.9 port 4242 ssh2 " + "\x01" * 1950


def _query(sub: Collector, reply_to: str, corr: bytes, cmd: dict[str, object]) -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = reply_to
    props.CorrelationData = corr
    sub.publish(f"{ROOT}/query", json.dumps(cmd), props=props)


def test_the_query_door_answers_only_its_own_reply_topics_and_always_answers(
        tmp_path: Path, broker: Mosquitto) -> None:
    log = tmp_path / "auth.log"
    log.write_text("")
    state = tmp_path / "state"
    src = f'[[sources]]\nkind = "file"\nname = "auth"\npath = "{log}"\nstart_at = "beginning"\n'
    cfg = write_config(tmp_path / "agent.toml", DEV, state, broker.port, src,
                       "[alerts]\nrepeat_window_s = 0\nexplain = false\nmax_per_minute = 100000\n")
    agent = AgentProcess(cfg, state).start()
    everything = Collector(broker.port, "#")
    try:
        with open(log, "a") as f:
            f.write("".join(LINE + "\n" for _ in range(200)))
        deadline = time.monotonic() + 30
        while agent.query("metrics")["result"]["counters"].get("alerts", 0) < 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        errors0 = agent.query("metrics")["result"]["counters"].get("query_errors", 0)
        status = {"cmd": "status"}
        # Not the device's reply/<client>: its own alerts topic, another device's, one a
        # level deeper, 64 KB of `a.a.a...` under reply/ (before: logged whole).
        refused = [f"{ROOT}/alerts", "nanofleet/v1/dev/other-01/reply/x", f"{ROOT}/reply/a/b",
                   f"{ROOT}/reply/" + "a." * 32000 + "/x", f"{ROOT}/reply/", f"{ROOT}/replyx"]
        big_answer = {"cmd": "recent_alerts", "args": {"limit": 1000}}
        for i, topic in enumerate(refused):  # the long one asks for the big answer too
            _query(everything, topic, f"r{i}".encode(), big_answer if "a.a." in topic else status)
        started = time.monotonic()
        assert ask(agent.socket, "status", {}, timeout=30)["ok"]
        assert time.monotonic() - started < 5.0
        # 200 alerts of long lines (2.4 MB before its budget, over the packet limit): the
        # newest that fit the budget.
        _query(everything, f"{ROOT}/reply/tech", b"big", big_answer)
        _query(everything, f"{ROOT}/reply/tech.2_x-y", b"ok", status)
        got = everything.wait_for(
            lambda ms: {m.properties.CorrelationData for m in ms
                        if m.topic.startswith(f"{ROOT}/reply/")} >= {b"big", b"ok"},
            timeout=30)
        replies = {m.properties.CorrelationData: (m.topic, json.loads(m.payload)) for m in got
                   if m.topic.startswith(f"{ROOT}/reply/")}
        assert set(replies) == {b"big", b"ok"}, replies.keys()  # none of the refused ones
        topic, big = replies[b"big"]
        assert topic == f"{ROOT}/reply/tech" and big["ok"] and 0 < len(big["result"]) < 200
        assert len(json.dumps(big)) <= MAX_ALERTS_ANSWER_BYTES + 4096
        assert replies[b"ok"][1]["ok"]
        assert not [m for m in everything.messages if not m.topic.startswith(f"{ROOT}/reply/")
                    and b'"ok":' in m.payload]  # no answer went anywhere else
        errors = agent.query("metrics")["result"]["counters"]["query_errors"]
        assert errors - errors0 == len(refused)
        # The refused topic is logged cut (before: whole, through a quadratic filter).
        assert max((len(line) for line in agent.output().splitlines() if "a.a.a" in line),
                   default=0) < 1000
    finally:
        everything.close()
        agent.stop()


def test_a_query_thread_that_cannot_start_gives_its_slot_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Near the unit's TasksMax a thread cannot start: before, its slot was never given
    back, and after four such queries every query was answered "busy" until a restart."""
    published: list[tuple[str, bytes]] = []
    link = SimpleNamespace(max_send_bytes=1 << 20, publish=lambda topic, data, **kw: (
        published.append((topic, data)), SimpleNamespace(rc=0, is_published=lambda: True))[1])
    agent = SimpleNamespace(counters=Counters(), link=link,
                            cfg=SimpleNamespace(device_id=DEV))
    service = QueryService(agent)  # type: ignore[arg-type]
    monkeypatch.setattr(service, "answer",
                        lambda payload: QueryResponse(ok=True, cmd="status", result=1))

    def message() -> SimpleNamespace:
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{ROOT}/reply/t"
        return SimpleNamespace(properties=props, payload=b'{"cmd": "status"}')

    real_start = threading.Thread.start

    def no_thread(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_thread)
    for _ in range(MAX_CONCURRENT_QUERIES + 1):
        service.on_query_message(message())  # type: ignore[arg-type]
    assert all(b"can't start new thread" in data for _, data in published)
    monkeypatch.setattr(threading.Thread, "start", real_start)
    service.on_query_message(message())  # type: ignore[arg-type]
    deadline = time.monotonic() + 5
    while len(published) < MAX_CONCURRENT_QUERIES + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert json.loads(published[-1][1]) == {"ok": True, "cmd": "status", "result": 1,
                                            "error": None}


def test_a_flood_of_queries_is_dropped_before_any_work(tmp_path: Path,
                                                       broker: Mosquitto) -> None:
    """Review, December 2026: 20,000 queries cost the agent 3.1 s of CPU, each answered
    at least "busy" on paho's network thread in the queue its outbox shares. Now at most
    MQTT_QUERIES_PER_S a second (bursts of twice that) get any work; the rest are counted."""
    log = tmp_path / "auth.log"
    log.write_text("")
    state = tmp_path / "state"
    src = f'[[sources]]\nkind = "file"\nname = "auth"\npath = "{log}"\n'
    agent = AgentProcess(write_config(tmp_path / "agent.toml", DEV, state, broker.port, src),
                         state).start()
    replies = Collector(broker.port, f"{ROOT}/reply/#")
    try:
        started = time.monotonic()
        for i in range(500):
            _query(replies, f"{ROOT}/reply/t", str(i).encode(), {"cmd": "status"})
        time.sleep(2.0)
        elapsed = time.monotonic() - started
        counters = agent.query("metrics")["result"]["counters"]
        allowed = MQTT_QUERIES_PER_S * (2 + elapsed)
        assert counters["queries_dropped"] >= 500 - allowed
        assert len(replies.messages) <= allowed
        assert ask(agent.socket, "status", {}, timeout=30)["ok"]  # the local door is open
        time.sleep(1.0)  # the rate refills: a technician's next query is answered
        _query(replies, f"{ROOT}/reply/t", b"after", {"cmd": "status"})
        replies.wait_for(lambda ms: any(m.properties.CorrelationData == b"after" for m in ms),
                         timeout=10)
    finally:
        replies.close()
        agent.stop()


def replying_service(sent: list[bytes], max_send_bytes: int = 1 << 20
                     ) -> tuple[SimpleNamespace, QueryService]:
    """A query service whose replies (the bytes published) land in ``sent``."""
    agent = SimpleNamespace(
        cfg=SimpleNamespace(device_id=DEV), counters=Counters(),
        link=SimpleNamespace(max_send_bytes=max_send_bytes,
                             publish=lambda topic, data, qos, props: _sent(sent, data)))
    return agent, QueryService(agent)  # type: ignore[arg-type]


def _sent(sent: list[bytes], data: bytes) -> SimpleNamespace:
    sent.append(data)
    return SimpleNamespace(rc=0, is_published=lambda: True)  # acknowledged at once


def test_answers_the_link_has_not_delivered_are_bounded_in_bytes(broker: Mosquitto) -> None:
    """Review, December 2026: paho keeps every answer until the broker acknowledges it,
    1,000 of them but any size; a 49-byte recent_alerts query drew 256 KiB, and on a slow
    uplink the agent grew 4.7 MB/s. Real paho and Mosquitto, the broker stopped (SIGSTOP:
    nothing is acknowledged): past MAX_UNACKED_ANSWER_BYTES the answer is "busy", and
    once the broker acknowledges, answers go out again. A requester's correlation data is
    an id (at most 1 KiB), not a second payload to echo."""
    assert broker.proc is not None
    link = MqttLink(MqttConfig(host="127.0.0.1", port=broker.port), "unacked-1", will=None)
    link.start()
    agent = SimpleNamespace(cfg=SimpleNamespace(device_id=DEV), counters=Counters(), link=link)
    service = QueryService(agent)  # type: ignore[arg-type]
    answer = QueryResponse(ok=True, cmd="recent_alerts", result=["x" * 300_000])
    try:
        assert link.connected.wait(10)
        broker.proc.send_signal(signal.SIGSTOP)
        for _ in range(10):
            service._reply(f"{ROOT}/reply/tech", b"c", answer)
        sizes = [len(m.payload) for m in link.client._out_messages.values()]
        assert len(sizes) == 10
        assert len([n for n in sizes if n > 300_000]) == MAX_UNACKED_ANSWER_BYTES // 300_000
        assert agent.counters.get("queries_busy") == 10 - MAX_UNACKED_ANSWER_BYTES // 300_000
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic, props.CorrelationData = f"{ROOT}/reply/tech", b"c" * 2000
        service.on_query_message(SimpleNamespace(  # type: ignore[arg-type]
            topic=f"{ROOT}/query", payload=b'{"cmd": "status"}', retain=False,
            properties=props))
        assert agent.counters.get("query_errors") == 1
        broker.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 20
        while link.client._out_messages:
            assert time.monotonic() < deadline, "the broker never acknowledged"
            time.sleep(0.05)
        service._reply(f"{ROOT}/reply/tech", b"c", answer)
        assert agent.counters.get("queries_busy") == 10 - MAX_UNACKED_ANSWER_BYTES // 300_000
    finally:
        broker.proc.send_signal(signal.SIGCONT)
        link.stop()


def test_an_answer_over_the_brokers_packet_limit_is_an_error_answer() -> None:
    """A broker that announces a small Maximum Packet Size would drop the answer without a
    word: the technician gets an error answer that says why instead."""
    sent: list[bytes] = []
    agent, service = replying_service(sent, max_send_bytes=2000)
    service._reply(f"{ROOT}/reply/tech", b"c", QueryResponse(ok=True, cmd="recent_alerts",
                                                              result=["x" * 5000]))
    reply = json.loads(sent[0])
    assert not reply["ok"] and "over the broker's packet limit" in reply["error"]
    assert agent.counters.get("query_errors") == 1


def test_a_retained_query_is_not_answered() -> None:
    """A query published retained (``mosquitto_pub -r``) would be answered again at every
    reconnect, for ever (review, December 2026): ignored and counted."""
    sent: list[bytes] = []
    agent, service = replying_service(sent)
    props = Properties(PacketTypes.PUBLISH)
    props.ResponseTopic = f"{ROOT}/reply/tech"
    msg = SimpleNamespace(topic=f"{ROOT}/query", payload=b'{"cmd": "help"}', retain=True,
                          properties=props)
    service.on_query_message(msg)  # type: ignore[arg-type]
    time.sleep(0.2)
    assert sent == [] and agent.counters.get("query_errors") == 1


def test_model_queries_share_one_limit_whatever_door_they_came_by() -> None:
    """The socket's 8 handlers and MQTT's 4 slots made 12 classify/explain calls at once
    (review, December 2026): the model's queries take one of 4 slots, shared."""
    from agent.model import LoadedModel
    from agent.model_slot import ModelSlot
    from nanomodel import default_bundle_path

    agent = SimpleNamespace(
        counters=Counters(), slot=ModelSlot("logs", LoadedModel.load(default_bundle_path())),
        pipeline=words_alone_pipeline())
    service = QueryService(agent)  # type: ignore[arg-type]
    ask_ = b'{"cmd": "classify", "args": {"text": "fan speed 0 rpm"}}'
    for _ in range(MAX_CONCURRENT_QUERIES):  # in service elsewhere
        assert service._model_slots.acquire(blocking=False)
    busy = service.answer(ask_)
    assert not busy.ok and "busy" in str(busy.error)
    assert agent.counters.get("queries_busy") == 1
    assert service.answer(b'{"cmd": "help"}').ok  # the rest is not the model's
    service._model_slots.release()
    assert service.answer(ask_).ok
