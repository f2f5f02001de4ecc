"""What one device's reports may store on the server (fleet_server/retention.py; review,
December 2026): its alerts and OTA events are bounded per device, in rows kept and in rows
stored a minute, so a device's flood neither fills the server's disk nor pushes the other
devices' alerts out; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from contract.messages import Alert, OtaEvent, ResultItem
from fleet_server.console.settings import MetricsRetention
from fleet_server.db import Database, OtaEventRow
from fleet_server.device_reports import Report
from fleet_server.device_views import list_devices
from fleet_server.inventory import LAST_DETAIL_CHARS, ingest
from fleet_server.metrics_store import DeviceAlertRow, MetricsStore
from fleet_server.retention import MinuteBudget

T0 = 1_800_000_000.0  # a minute's start: 30,000,000 minutes


@pytest.fixture
def db(any_db: Database) -> Database:
    """The checks hold on both databases the server supports (conftest ``any_db``)."""
    return any_db


def alert(device: str, at: float, msg_id: str) -> Report:
    item = ResultItem(source="auth", ts=at, text="Failed password for root", label="security",
                      score=0.97, anomaly=0.2)
    return Report(device, "alerts", Alert(seq=1, device_id=device, msg_id=msg_id, slot="logs",
                                          model_version=1, item=item, reason="r"), at)


def event(device: str, at: float, n: int, detail: str | None = None) -> Report:
    msg = OtaEvent(seq=n, device_id=device, msg_id=f"{device}-e{n}", slot="logs",
                   state="downloading", to_version=n, ts=at, detail=detail)
    return Report(device, "ota", msg, at)


def count(db: Database, row: type, device: str) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(row).where(
            row.device_id == device)) or 0)  # type: ignore[attr-defined]


def test_one_device_cannot_push_the_other_devices_alerts_out(db: Database) -> None:
    store = MetricsStore(db, MetricsRetention(max_alerts=100, max_alerts_per_device=20,
                                              alerts_per_device_minute=10_000))
    with db.session() as session:
        store.record(session, [alert("victim-01", T0 + i, f"v{i}") for i in range(5)])
        store.record(session, [alert("pump-66", T0 + 10 + i / 100, f"x{i}") for i in range(500)])
    done = store.compact(T0 + 20)
    assert count(db, DeviceAlertRow, "victim-01") == 5  # before: 0
    assert count(db, DeviceAlertRow, "pump-66") == 20 and done.alerts_removed == 480
    with db.session() as session:  # the flooder keeps its newest
        newest = session.scalar(select(func.max(DeviceAlertRow.id)).where(
            DeviceAlertRow.device_id == "pump-66"))
        kept = set(session.scalars(select(DeviceAlertRow.msg_id).where(
            DeviceAlertRow.device_id == "pump-66")))
    assert newest is not None and kept == {f"x{i}" for i in range(480, 500)}


def test_a_devices_alerts_over_its_minute_are_counted_not_stored(db: Database) -> None:
    store = MetricsStore(db, MetricsRetention(alerts_per_device_minute=50))
    with db.session() as session:
        stored = store.record(session, [alert("pump-66", T0 + i / 10, f"x{i}")
                                        for i in range(100)])
        stored += store.record(session, [alert("victim-01", T0 + 1, "v0")])
    assert stored == 51 and store.alert_rows.refused == 50
    with db.session() as session:  # the next minute takes the device's alerts again
        assert store.record(session, [alert("pump-66", T0 + 61, "x-next")]) == 1


def test_ota_events_of_one_device_are_bounded_and_still_move_its_row(db: Database) -> None:
    budget = MinuteBudget(60)
    with db.session() as session:
        new = ingest(session, [event("pump-66", T0 + i / 100, i + 1, "x" * 4000)
                               for i in range(300)], budget)
        ingest(session, [event("victim-01", T0 + 1, 1)], budget)
    assert new == 300 and budget.refused == 240
    assert count(db, OtaEventRow, "pump-66") == 60 and count(db, OtaEventRow, "victim-01") == 1
    with db.session() as session:
        pump = next(d for d in list_devices(session) if d["device_id"] == "pump-66")
    assert pump["last_ota"]["to_version"] == 300  # the inventory follows every event
    assert len(pump["last_ota"]["detail"]) == LAST_DETAIL_CHARS  # before: 4,000 (or 250 KB)
    store = MetricsStore(db, MetricsRetention(ota_events_per_device=10))
    done = store.compact(T0 + 100)
    assert done.events_removed == 50 and count(db, OtaEventRow, "pump-66") == 10
    assert count(db, OtaEventRow, "victim-01") == 1
    # With metrics and alerts off, OTA events are still bounded.
    with db.session() as session:
        ingest(session, [event("pump-66", T0 + 200 + i, 1000 + i) for i in range(30)])
    off = MetricsStore(db, MetricsRetention(enabled=False, ota_events_per_device=10))
    compacted = off.maybe_compact(T0 + 300)
    assert compacted is not None and compacted.events_removed == 30
    assert count(db, OtaEventRow, "pump-66") == 10
