"""Alert mutes end to end: a real Mosquitto, the real agent process following a real file
with the shipped model, and the fleet server's retained mute list published as the
server does (retained, QoS 1, on dev/{id}/mutes)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.messages import Alert
from contract.mutes import AlertMute, MuteList, message_shape, mutes_topic
from fleet_server.metrics_store import alert_row
from fleet_server.mute_rules import mute_shape
from tests.support.agent_proc import AgentProcess, payloads, write_config
from tests.support.json_log import READ, WRITE, WRITE_AGAIN
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector

DEV = "gate-03"
ROOT = f"nanofleet/v1/dev/{DEV}"
# The shipped model calls all of these security (or storage) well above 0.8.
FAILED = [f"sshd[{pid}]: Failed password for root from {ip} port {port} ssh2"
          for pid, ip, port in [(311, "203.0.113.9", 4242), (2718, "198.51.100.7", 50022),
                                (4, "192.0.2.200", 61000), (77, "203.0.113.10", 22),
                                (90, "198.51.100.1", 1024)]]
INVALID = "sshd[9]: Invalid user admin from 192.0.2.1 port 22"
# No window: every alert the gate lets through is sent (grouping is tested elsewhere).
ALERTS = "[alerts]\nrepeat_window_s = 0\nexplain = false\n"
# How long to wait for the agent (its start, a list or a line through the broker and the
# model): CI runs two workers on a loaded two-core box. Only a failing wait takes this long.
WAIT_S = 60.0


@pytest.fixture
def rig(tmp_path: Path, broker: Mosquitto) -> Iterator[Callable[..., tuple[AgentProcess, Path]]]:
    agents: list[AgentProcess] = []

    def make(alerts: str = ALERTS) -> tuple[AgentProcess, Path]:
        log = tmp_path / "auth.log"
        log.write_text("")
        state = tmp_path / "state"
        source = f'[[sources]]\nkind = "file"\nname = "auth"\npath = "{log}"\n' \
                 'start_at = "beginning"\n'
        cfg = write_config(tmp_path / "agent.toml", DEV, state, broker.port, source, alerts)
        agents.append(AgentProcess(cfg, state))
        return agents[-1], log

    yield make
    for agent in agents:
        agent.stop()


def append(path: Path, lines: list[str]) -> None:
    with open(path, "a") as f:
        f.write("".join(line + "\n" for line in lines))


def publish_mutes(broker: Mosquitto, payload: bytes) -> None:
    pub = Collector(broker.port, "nanofleet/none")
    pub.publish(mutes_topic(DEV), payload, qos=1, retain=True)
    pub.close()


def mute_list(revision: int, *texts: str) -> bytes:
    mutes = [AlertMute(id=f"{i:012x}", shape=message_shape(text), expires=time.time() + 3600,
                       reason="the jump host's cron job") for i, text in enumerate(texts)]
    return MuteList(revision=revision, mutes=mutes).model_dump_json().encode()


def until(agent: AgentProcess, what: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    """``what()`` once it is truthy, polled every 50 ms."""
    deadline = time.monotonic() + timeout
    while not (got := what()):
        assert time.monotonic() < deadline, f"not reached in {timeout} s:\n{agent.output()}"
        time.sleep(0.05)
    return got


def counter(agent: AgentProcess, name: str) -> int:
    return int(agent.query("metrics")["result"]["counters"].get(name, 0))


def mute_revision(agent: AgentProcess) -> int | None:
    revision: int | None = agent.query("mutes")["result"]["revision"]
    return revision


def alert_texts(messages: list[Any]) -> list[str]:
    """The alerts' lines (``wait_for`` hands its predicate the messages, under its lock)."""
    return [a["item"]["text"] for a in payloads([m for m in messages
                                                 if m.topic == f"{ROOT}/alerts"])]


def result_items(sub: Collector) -> dict[str, dict[str, Any]]:
    return {item["text"]: item for doc in payloads(sub.on(f"{ROOT}/results/logs"))
            for item in doc["items"]}


def test_a_muted_shape_sends_no_alert_until_a_newer_list_lifts_it(
        rig: Callable[..., tuple[AgentProcess, Path]], broker: Mosquitto) -> None:
    publish_mutes(broker, mute_list(1, FAILED[0]))  # retained before the agent is up
    agent, log = rig()
    sub = Collector(broker.port, f"{ROOT}/#")
    agent.start()
    until(agent, lambda: mute_revision(agent) == 1)
    # The counter is read over the query socket, the log line from a file written by
    # another thread: wait for the line rather than race it.
    until(agent, lambda: "mute list revision 1 applied: 1 mutes active" in agent.output())

    # The muted shape (other pids, addresses, ports): classified and published, no
    # alert. Another sshd shape and another label still alert.
    disk = "disk /dev/sda: I/O error, sector 1234"
    append(log, [*FAILED[:3], INVALID, disk])
    got = sub.wait_for(lambda ms: disk in alert_texts(ms), timeout=WAIT_S)
    assert alert_texts(got) == [INVALID, disk]
    items = result_items(sub)
    assert all(items[text]["label"] == "security" for text in FAILED[:3])
    assert counter(agent, "alerts_muted") == 3 and counter(agent, "alerts") == 2

    # The technician sees what is muted, locally.
    shown = agent.query("mutes")["result"]
    assert shown["enabled"] is True and shown["storm_per_minute"] == 30
    [held] = shown["mutes"]
    assert held["shape"] == message_shape(FAILED[0]) and held["source"] is None
    assert held["reason"] == "the jump host's cron job"
    cli = subprocess.run([sys.executable, "-m", "agent.cli", "query", "--config",
                          str(agent.config), "mutes"], capture_output=True, text=True,
                         timeout=30)
    assert cli.returncode == 0 and "failed password for root from # port #" in cli.stdout, \
        cli.stdout + cli.stderr

    # A broken list is refused and counted; the mute held stays in force.
    publish_mutes(broker, b'{"revision": 9, "mutes": "all"')
    until(agent, lambda: counter(agent, "mutes_rejected") == 1)
    until(agent, lambda: "mute list refused, keeping the mutes held" in agent.output())
    disk2 = "disk /dev/sdb: I/O error, sector 99"
    append(log, [FAILED[3], disk2])
    got = sub.wait_for(lambda ms: disk2 in alert_texts(ms), timeout=WAIT_S)
    assert alert_texts(got) == [INVALID, disk, disk2]
    assert counter(agent, "alerts_muted") == 4 and mute_revision(agent) == 1

    # A newer list without the mute lifts it.
    publish_mutes(broker, mute_list(2))
    until(agent, lambda: mute_revision(agent) == 2)
    append(log, [FAILED[4]])
    sub.wait_for(lambda ms: FAILED[4] in alert_texts(ms), timeout=WAIT_S)
    assert counter(agent, "alerts_muted") == 4 and agent.query("mutes")["result"]["mutes"] == []
    metrics = sub.wait_for(lambda ms: any(
        json.loads(m.payload)["counters"].get("mute_lists_applied") == 2
        for m in ms if m.topic == f"{ROOT}/metrics"), timeout=WAIT_S)
    last = json.loads([m for m in metrics if m.topic == f"{ROOT}/metrics"][-1].payload)
    assert last["counters"]["mutes_rejected"] == 1 and last["gauges"]["mutes_active"] == 0
    sub.close()


def test_mutes_turned_off_are_not_even_received(
        rig: Callable[..., tuple[AgentProcess, Path]], broker: Mosquitto) -> None:
    publish_mutes(broker, mute_list(1, FAILED[0]))
    agent, log = rig(ALERTS + "mutes = false\n")
    sub = Collector(broker.port, f"{ROOT}/alerts")
    agent.start()
    append(log, [FAILED[1]])
    sub.wait_for(lambda ms: FAILED[1] in alert_texts(ms), timeout=WAIT_S)
    shown = agent.query("mutes")["result"]
    assert shown["enabled"] is False and shown["revision"] is None and shown["mutes"] == []
    assert counter(agent, "alerts_muted") == 0 and counter(agent, "mute_lists_applied") == 0
    sub.close()


def test_a_brute_force_storm_of_a_muted_line_is_alerted_again(
        rig: Callable[..., tuple[AgentProcess, Path]], broker: Mosquitto) -> None:
    """The device's own normal never hides a storm: an operator muted the jump host's one
    failed login a day; a brute force repeating that line gets through, saying why."""
    publish_mutes(broker, mute_list(1, FAILED[0]))
    agent, log = rig(ALERTS + "mute_storm_per_minute = 5\n")
    sub = Collector(broker.port, f"{ROOT}/alerts")
    agent.start()
    until(agent, lambda: mute_revision(agent) == 1)
    append(log, [FAILED[1]])  # one a day: muted
    until(agent, lambda: counter(agent, "alerts_muted") == 1)
    storm = [f"sshd[{9000 + i}]: Failed password for root from 203.0.113.66 port {40000 + i} ssh2"
             for i in range(12)]
    append(log, storm)
    got = sub.wait_for(lambda ms: len(alert_texts(ms)) >= 8, timeout=WAIT_S)
    alerts = payloads(got)
    # 5 lines of the shape within the minute are "the device's normal" (1 + 4 of the
    # storm); the 6th is more than 5 a minute: from there every alert goes out, saying so.
    assert [a["item"]["text"] for a in alerts] == storm[4:]
    assert all("muted shape storming: more than 5 lines in the last minute" in a["reason"]
               for a in alerts)
    assert counter(agent, "alerts_muted") == 5 and counter(agent, "alerts_mute_storm") == 8
    sub.close()


def test_a_restart_while_the_broker_is_away_keeps_the_mutes(
        rig: Callable[..., tuple[AgentProcess, Path]], broker: Mosquitto) -> None:
    """An offline device that restarts must not alert on its muted lines until the broker
    is back (the outbox would deliver those alerts later): the list is kept on disk."""
    publish_mutes(broker, mute_list(3, FAILED[0]))
    agent, log = rig()
    agent.start()
    until(agent, lambda: mute_revision(agent) == 3)
    agent.stop()
    broker.stop()
    agent.start()  # no broker: only the kept list can mute
    assert mute_revision(agent) == 3
    assert "mute list revision 3 restored from disk: 1 mutes active" in agent.output()
    append(log, [FAILED[1], INVALID])
    until(agent, lambda: counter(agent, "alerts") == 1)
    assert counter(agent, "alerts_muted") == 1
    recent = agent.query("recent_alerts")["result"]
    assert [a["item"]["text"] for a in recent] == [INVALID]


def test_a_long_json_line_is_muted_by_the_start_the_server_kept(
        rig: Callable[..., tuple[AgentProcess, Path]], broker: Mosquitto) -> None:
    """A 900-character JSON log line: the fleet server keeps its first 500 characters, so
    the mute it makes names the start of the line's shape (a prefix mute). Built here as the
    server builds it, from the alert the agent sent; the same message with other values
    sends no alert, another message that begins alike still does."""
    agent, log = rig()
    sub = Collector(broker.port, f"{ROOT}/#")
    agent.start()
    append(log, [WRITE])
    got = sub.wait_for(lambda ms: WRITE in alert_texts(ms), timeout=WAIT_S)
    [sent] = [Alert.model_validate_json(m.payload) for m in got if m.topic == f"{ROOT}/alerts"]
    assert sent.item.label == "storage" and sent.item.score >= 0.8 and len(sent.item.text) > 900

    stored = alert_row(sent, time.time())  # what the server keeps: the first 500 characters
    assert len(stored.text) == 500 and WRITE.startswith(stored.text)
    shape, prefix = mute_shape(stored.text)
    assert prefix and message_shape(WRITE).startswith(shape) and shape != message_shape(WRITE)
    muted = AlertMute(id="00000000a11e", shape=shape, prefix=prefix, source="auth",
                      expires=time.time() + 3600, reason="collector retries on its own")
    publish_mutes(broker, MuteList(revision=1, mutes=[muted]).model_dump_json().encode())
    until(agent, lambda: mute_revision(agent) == 1)
    [held] = agent.query("mutes")["result"]["mutes"]
    assert (held["shape"], held["prefix"]) == (shape, True)
    cli = subprocess.run([sys.executable, "-m", "agent.cli", "query", "--config",
                          str(agent.config), "mutes"], capture_output=True, text=True,
                         timeout=30)
    assert cli.returncode == 0 and "00000000a11e  start" in cli.stdout, cli.stdout + cli.stderr

    append(log, [WRITE_AGAIN, READ])
    got = sub.wait_for(lambda ms: READ in alert_texts(ms), timeout=WAIT_S)
    assert alert_texts(got) == [WRITE, READ]
    items = result_items(sub)
    assert items[WRITE_AGAIN]["label"] == "storage"  # classified and published all the same
    assert counter(agent, "alerts_muted") == 1 and counter(agent, "alerts") == 2
    sub.close()
