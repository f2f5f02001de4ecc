"""Alerts leave the agent's outbox at a pace the fleet server stores them.

Found while making the server quarantine flooding devices (December 2026): the server
keeps at most 200 reports of one device waiting to be stored and drops the rest unread
(fleet_server/report_budget.py), and the broker acknowledges them to the device all the
same. An agent sent its outbox as fast as the broker took it, so an alert storm within
the agent's own limit (600 a minute, in a burst) or the alerts spooled during an outage
lost a third or more: 417 of 600 stored over loopback. The outbox now sends alerts and
OTA events at ``[spool] report_rate_per_s`` after a burst of at most 100.

Real parts: the agent's spool, its MQTT link and outbox sender, a Mosquitto, and a
`nanofleet server run` process storing what arrives.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import MqttConfig
from agent.metrics import Counters
from agent.mqtt_link import MqttLink
from agent.sender import OutboxSender, Pacer
from agent.spool import Spool
from contract import topics
from hil.broker import Mosquitto
from hil.fleet import FleetServer, FleetSetup
from tests.support.alert_fleet import alert, alert_fleet_processes, api

ALERTS = 500  # under the server's 600 stored per device and minute


def test_the_pacer_waits_out_its_rate() -> None:
    pacer = Pacer(rate_per_s=10, burst=3)
    now = pacer.last
    assert [pacer.take(now) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert pacer.take(now) == pytest.approx(0.1)  # nothing taken while waiting
    assert pacer.take(now + 0.11) == 0.0
    assert pacer.take(now + 10) == 0.0 and pacer.tokens == 2.0  # refilled to the burst


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[FleetSetup, Mosquitto, FleetServer]]:
    with alert_fleet_processes(tmp_path / "fleet") as parts:
        yield parts


def _drain(tmp_path: Path, broker: Mosquitto, device: str, pacer: Pacer | None) -> float:
    """An outbox holding ALERTS alerts (a storm, or an outage's) sent to the broker; the
    seconds it took."""
    counters = Counters()
    spool = Spool(tmp_path / f"{device}.db", 100_000, 10**8, counters)
    spool.commit([(topics.alerts(device), alert(
        device, f"{device}-{i}", i + 1, "kernel", f"sda: I/O error, sector {i}",
        "storage").model_dump_json().encode()) for i in range(ALERTS)], {})
    link = MqttLink(MqttConfig(host="127.0.0.1", port=broker.port), f"nanofleet-{device}",
                    will=None)
    sender = OutboxSender(spool, link, counters, window=20,
                          paced=frozenset({topics.alerts(device)}), pacer=pacer)
    started = time.monotonic()
    sender.start()
    link.start()
    try:
        assert link.connected.wait(10)
        assert sender.drain(60), "the outbox did not empty in 60 s"
        return time.monotonic() - started
    finally:
        sender.stop()
        link.stop()
        spool.close()


def _stored(setup: FleetSetup, device: str) -> int:
    deadline = time.monotonic() + 20
    count = -1
    while time.monotonic() < deadline:
        answer = api(setup, "GET", "/api/v1/alerts", params={"device": device, "limit": 1000})
        now = len(answer.json()["alerts"])
        if now == count and now > 0:
            return now  # the same twice in a row: ingest has caught up
        count = now
        time.sleep(1.0)
    return count


def test_an_alert_storm_is_stored_whole(
        tmp_path: Path, fleet: tuple[FleetSetup, Mosquitto, FleetServer]) -> None:
    setup, broker, _ = fleet
    took = _drain(tmp_path, broker, "paced-01", Pacer(rate_per_s=200, burst=100))
    assert took >= (ALERTS - 100) / 200 * 0.9, took  # it did wait
    assert _stored(setup, "paced-01") == ALERTS
    assert api(setup, "GET", "/api/v1/health/detail").json()["mqtt"]["shed"] == 0
    # Sent unpaced (as before), the same storm loses alerts at the server.
    _drain(tmp_path, broker, "unpaced-01", None)
    assert _stored(setup, "unpaced-01") < ALERTS
    assert api(setup, "GET", "/api/v1/health/detail").json()["mqtt"]["shed"] > 0
