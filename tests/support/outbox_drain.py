"""An agent's outbox full of alerts, sent to a broker by the agent's own spool, MQTT link
and outbox sender; and how many alerts a fleet server stored. For
``tests/test_report_pacing.py`` and ``benchmarks/report_flood.py``."""

from __future__ import annotations

import time
from pathlib import Path

from agent.config import MqttConfig
from agent.metrics import Counters
from agent.mqtt_link import MqttLink
from agent.sender import OutboxSender
from agent.spool import Spool
from agent.token_bucket import TokenBucket
from contract import topics
from hil.broker import Mosquitto
from hil.fleet import FleetSetup
from tests.support.alert_fleet import alert, api


def drain_outbox(workdir: Path, broker: Mosquitto, device: str, pacer: TokenBucket | None,
                 count: int) -> float:
    """An outbox holding ``count`` alerts (a storm, or an outage's) sent to the broker, paced
    by ``pacer`` (None: as fast as the broker takes them); the seconds it took."""
    counters = Counters()
    spool = Spool(workdir / f"{device}.db", 100_000, 10**8, counters)
    spool.commit([(topics.alerts(device), alert(
        device, f"{device}-{i}", i + 1, "kernel", f"sda: I/O error, sector {i}",
        "storage").model_dump_json().encode()) for i in range(count)], {})
    link = MqttLink(MqttConfig(host="127.0.0.1", port=broker.port), f"nanofleet-{device}",
                    will=None)
    sender = OutboxSender(spool, link, counters, window=20,
                          paced=frozenset({topics.alerts(device)}), pacer=pacer)
    started = time.monotonic()
    sender.start()
    link.start()
    try:
        assert link.connected.wait(10)
        assert sender.drain(120), "the outbox did not empty in 120 s"
        return time.monotonic() - started
    finally:
        sender.stop()
        link.stop()
        spool.close()


def stored_alerts(setup: FleetSetup, device: str) -> int:
    """How many alerts of ``device`` the server stored, once ingest has caught up."""
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
