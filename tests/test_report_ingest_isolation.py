"""One report the database refuses does not take other devices' reports with it (a busy
device's counters past 2^31 storing at all: test_console_store)."""

from __future__ import annotations

import time

from contract import topics
from contract.messages import Status
from fleet_server.config import MqttSettings
from fleet_server.device_reports import Report, parse_report
from fleet_server.mqtt_bridge import MqttBridge


def _status(device_id: str) -> Report:
    doc = Status(seq=1, device_id=device_id, state="online", agent_version="1").model_dump_json()
    return parse_report(topics.status(device_id), doc.encode(), time.time())


def test_a_refused_report_is_dropped_alone_and_counted() -> None:
    """The batch is tried as one transaction three times, then each report on its own: the
    store refusing one device's report (as a column would) keeps the others."""
    stored: list[str] = []
    calls: list[int] = []

    def store(reports: list[Report]) -> None:
        calls.append(len(reports))
        if any(r.device_id == "bad-1" for r in reports):
            raise ValueError("integer out of range")
        stored.extend(r.device_id for r in reports)

    bridge = MqttBridge(MqttSettings(enabled=False), store)
    batch = [_status(d) for d in ("good-1", "bad-1", "good-2")]
    bridge._deliver(batch)
    assert stored == ["good-1", "good-2"]
    assert calls == [3, 3, 3, 1, 1, 1]
    counts = bridge.counters.as_dict()
    assert (counts["ingested"], counts["ingest_failures"]) == (2, 1)
    assert "integer out of range" in (counts["last_error"] or "")

