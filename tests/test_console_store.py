"""The console's storage and reads on a real SQLite database: metrics history with bounded
retention and downsampling, alerts, sign-in sessions, and the overview's counts/paging."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from contract import topics
from contract.messages import Alert, Metrics, ResultItem
from fleet_server.auth import create_token, revoke_token
from fleet_server.config import OperatorToken, hash_token
from fleet_server.console import sessions
from fleet_server.console.overview import (
    OverviewFilter,
    device_page,
    held_states,
    state_counts,
)
from fleet_server.console.settings import MetricsRetention
from fleet_server.db import Database, Device
from fleet_server.device_reports import Report, parse_report
from fleet_server.identity.tables import DeviceIdentity, DeviceQuarantine
from fleet_server.inventory import ingest
from fleet_server.metrics_store import (
    DeviceAlertRow,
    MetricSampleRow,
    MetricsStore,
    Sample,
    alerts_per_hour,
    series,
)

T0 = 1_800_000_000.0


@pytest.fixture
def db(any_db: Database) -> Database:
    """The checks hold on both databases the server supports (conftest ``any_db``)."""
    return any_db


def metrics(device: str, at: float, lines: int, uptime: float, *, dropped: int = 0,
            p99: float = 5.0, seq: int = 1) -> Report:
    msg = Metrics(seq=seq, device_id=device, uptime_s=uptime,
                  counters={"lines_in": lines, "lines_dropped": dropped,
                            "inference_errors": 0},
                  gauges={"latency_p99_ms": p99, "rss_bytes": 50e6, "spool_depth": 3.0})
    return Report(device, "metrics", msg, at)


def alert(device: str, at: float, msg_id: str) -> Report:
    item = ResultItem(source="auth", ts=at, text="Failed password for root", label="security",
                      score=0.97, anomaly=0.2)
    msg = Alert(msg_id=msg_id, seq=1, device_id=device, slot="logs", model_version=1,
                item=item, reason="label security >= 0.80")
    return Report(device, "alerts", msg, at)


def test_series_rates_survive_an_agent_restart_and_are_thinned() -> None:
    def s(ts: float, lines: int, uptime: float, dropped: int = 0) -> Sample:
        return Sample(ts, uptime, lines, dropped, 0, 4.0, 50.0, 1.0)

    out = series([s(0, 0, 10), s(10, 100, 20), s(20, 300, 30, dropped=2),
                  s(30, 50, 5)])  # restarted: 50 lines since
    assert out["lines_per_s"] == [10.0, 20.0, 5.0]
    assert out["dropped_per_min"] == [0.0, 12.0, 0.0]
    many = series([s(i, i * 10, i + 1) for i in range(5000)], max_points=1000)
    assert 900 <= len(many["ts"]) <= 1000 and set(many["lines_per_s"]) == {10.0}


def test_counters_past_the_integer_columns_store_folded(db: Database) -> None:
    """lines_in passes 2^31 after ~250 days at 100 lines/s (before: on PostgreSQL the
    INSERT failed, and with it the ingest batch and every device's reports in it). The
    sample folds counters into the columns' range, which the rates read as one restart;
    a counter past 64 bits is refused where it arrives."""
    big = 2**40 + 5
    store = MetricsStore(db, MetricsRetention())
    with db.session() as session:
        assert store.record(session, [metrics("busy-1", T0, lines=big, uptime=3e7,
                                              dropped=big)]) == 1
    with db.session() as session:
        row = session.scalars(select(MetricSampleRow)).one()
    assert (row.lines_in, row.dropped) == (big % 2**31, big % 2**31)
    doc = metrics("busy-1", T0, lines=1, uptime=1.0).message.model_dump_json()
    doc = doc.replace('"lines_in":1,', f'"lines_in":{2**64},')
    with pytest.raises(ValueError, match="lines_in"):
        parse_report(topics.metrics("busy-1"), doc.encode(), T0)


def test_a_nul_in_a_devices_text_is_stored_as_a_replacement_character(db: Database) -> None:
    """A log line may hold a NUL; PostgreSQL's text columns refuse it (before: the INSERT
    failed, and with it the batch). parse_report replaces it in every string."""
    doc = alert("gw-nul", T0, "n" * 32).message.model_dump_json().replace(
        "Failed password for root", "Failed password for ro\\u0000ot")
    report = parse_report(topics.alerts("gw-nul"), doc.encode(), T0)
    assert isinstance(report.message, Alert) and "\x00" not in report.message.item.text
    with db.session() as session:
        MetricsStore(db, MetricsRetention()).record(session, [report])
    with db.session() as session:
        row = session.scalars(select(DeviceAlertRow).where(
            DeviceAlertRow.device_id == "gw-nul")).one()
    assert row.text == "Failed password for ro\ufffdot"


def test_history_is_downsampled_and_bounded_without_losing_lines(db: Database) -> None:
    policy = MetricsRetention(raw_keep_s=3600, bucket_s=300, rollup_keep_s=4 * 3600,
                              alert_keep_s=3600, max_alerts=100, min_interval_s=1.0)
    store = MetricsStore(db, policy)
    # 6 hours of reports every 30 s, 10 lines/s.
    reports = [metrics("gw-1", T0 + i * 30, lines=300 * i, uptime=30.0 * i + 1, seq=i)
               for i in range(720)]
    with db.session() as session:
        assert store.record(session, reports) == 720
        # Closer than min_interval_s to the last stored one: not stored (a chatty device).
        assert store.record(session, [metrics("gw-1", T0 + 719 * 30 + 0.2, 1, 1)]) == 0
    now = T0 + 720 * 30
    done = store.compact(now)
    with db.session() as session:
        raw = session.scalar(select(func.count()).where(MetricSampleRow.resolution == 0))
        buckets = session.scalar(select(func.count()).where(MetricSampleRow.resolution == 300))
        history = store.history(session, "gw-1", 0)
    assert raw == 120  # the last hour, every report
    assert buckets == 36  # 4 h kept at 5-min buckets (3 h of folded rows beyond the raw hour)
    assert done.folded == 600 and done.expired == 24
    rates = series(history)["lines_per_s"]
    assert all(r == pytest.approx(10.0) for r in rates)
    # Compacting again changes nothing; a second pass over the same data is idempotent.
    assert store.compact(now).folded == 0


def test_alerts_are_deduplicated_expire_and_are_capped(db: Database) -> None:
    store = MetricsStore(db, MetricsRetention(alert_keep_s=3600, max_alerts=100))
    with db.session() as session:
        store.record(session, [alert("gw-1", T0 - 5000 + i, f"old{i}") for i in range(10)])
        store.record(session, [alert("gw-1", T0 - 60 + i * 0.1, f"a{i}") for i in range(150)])
        assert store.record(session, [alert("gw-1", T0, "a1")]) == 0  # redelivered
    with db.session() as session:
        per_hour = alerts_per_hour(session, T0 + 1)
    assert per_hour[-1] == 150 and per_hour[-2] == 10 and sum(per_hour) == 160
    done = store.compact(T0 + 1)
    with db.session() as session:
        kept = list(session.scalars(select(DeviceAlertRow.msg_id).order_by(DeviceAlertRow.id)))
    assert done.alerts_removed == 60 and len(kept) == 100 and kept[-1] == "a149"


def test_sessions_follow_the_token_and_expire(db: Database) -> None:
    config = [OperatorToken(name="ops", sha256=hash_token("nfo_config"))]
    with db.session() as session:
        token = create_token(session, "viewer", ["read"], config, "ops")
    with db.session() as session:
        with pytest.raises(sessions.SignInRefused, match="not recognised"):
            sessions.sign_in(session, "nfo_wrong", config, T0)
        sid, identity = sessions.sign_in(session, token, config, T0)
        assert identity.name == "viewer" and not identity.allows("deploy")
        found = sessions.lookup(session, sid, config, T0 + 10, idle_s=600)
        assert found is not None and found.identity.name == "viewer"
        assert sessions.csrf_ok(found, found.csrf)
        assert not sessions.csrf_ok(found, found.csrf[:-1] + "x")
        assert not sessions.csrf_ok(found, None)
        assert sessions.lookup(session, "made-up", config, T0, idle_s=600) is None
        assert sessions.lookup(session, sid, config, T0 + 700, idle_s=600) is None  # idle
        stale, _ = sessions.sign_in(session, token, config, T0)
        sid, _ = sessions.sign_in(session, token, config, T0 + 1000, idle_s=600)
        assert sessions.lookup(session, stale, config, T0 + 1000, idle_s=10**6) is None
    with db.session() as session:
        revoke_token(session, "viewer", config, "ops")
    with db.session() as session:  # a revoked token's sessions end at once
        assert sessions.lookup(session, sid, config, T0 + 1, idle_s=600) is None
        assert session.scalar(select(func.count()).select_from(
            sessions.ConsoleSessionRow)) == 0


def test_a_refused_sign_in_writes_nothing(db: Database) -> None:
    """Review, December 2026: every anonymous sign-in attempt deleted the idle sessions
    first, a write that takes the database's lock report ingest and rollouts wait for."""
    config = [OperatorToken(name="ops", sha256=hash_token("nfo_config"))]
    with db.session() as session:
        sessions.sign_in(session, "nfo_config", config, T0, idle_s=600)
    with db.session() as session:
        with pytest.raises(sessions.SignInRefused):
            sessions.sign_in(session, "nfo_guess", config, T0 + 10_000, idle_s=600)
        assert not session.new and not session.deleted and not session.dirty
        assert session.scalar(select(func.count()).select_from(
            sessions.ConsoleSessionRow)) == 1  # the idle one is still there
    with db.session() as session:  # a sign-in that succeeds removes it on the way
        sessions.sign_in(session, "nfo_config", config, T0 + 10_000, idle_s=600)
        session.flush()
        assert session.scalar(select(func.count()).select_from(
            sessions.ConsoleSessionRow)) == 1


def test_polling_does_not_keep_a_session_and_sessions_have_a_maximum_age(
        db: Database) -> None:
    """An open tab polls every 2 s: before (review, December 2026) that kept its session
    signed in for days. Polls do not count as use now, and a session ends session_max_s
    after sign-in whatever its use."""
    config = [OperatorToken(name="ops", sha256=hash_token("nfo_config"))]
    with db.session() as session:
        token = create_token(session, "night", ["read"], config, "ops")
    with db.session() as session:
        sid, _ = sessions.sign_in(session, token, config, T0)
        for t in range(0, 1200, 60):  # 20 minutes of polling alone
            assert sessions.lookup(session, sid, config, T0 + t, idle_s=600, used=False) \
                or t > 600
        assert sessions.lookup(session, sid, config, T0 + 1200, idle_s=600) is None
        sid, _ = sessions.sign_in(session, token, config, T0)
        for t in range(0, 1200, 60):  # the operator clicks around: stays signed in
            assert sessions.lookup(session, sid, config, T0 + t, idle_s=600) is not None
        assert sessions.lookup(session, sid, config, T0 + 1300, idle_s=600,
                               max_age_s=1250) is None  # used, but too old


def test_overview_counts_and_pages_in_the_database(db: Database) -> None:
    now = T0
    with db.session() as session:
        for i in range(120):
            state = "online" if i < 90 else "offline" if i < 110 else "unknown"
            seen = now - (1000 if i < 10 else 5)  # 10 silent "online" devices: stale
            session.add(Device(device_id=f"dev-{i:04d}", state=state, last_seen=seen,
                               models=[], metrics={}, tags=["eu"] if i % 2 else ["us"],
                               group_name="pumps" if i < 60 else "valves"))
        session.add(DeviceIdentity(device_id="dev-0050", status="revoked"))
        # Quarantined (the broker denies it everything; its connection says online), and
        # one both revoked and quarantined: revoked wins. An ended quarantine is nothing.
        session.add_all([
            DeviceQuarantine(device_id=d, since=now - 60, until=now + until, reason="flood",
                             created_by="server")
            for d, until in (("dev-0020", 600), ("dev-0050", 600), ("dev-0021", -1))])
    with db.session() as session:
        held = held_states(session, now)
        assert held == {"dev-0050": "revoked", "dev-0020": "quarantined"}
        counts = state_counts(session, held, now, stale_after_s=300)
        assert counts == {"online": 78, "stale": 10, "offline": 20, "unknown": 10,
                          "quarantined": 1, "revoked": 1}
        page = device_page(session, OverviewFilter(state="online", group="pumps", page=2),
                           now, 300, page_size=20, held=held)
        assert (page.total, page.pages, page.page) == (48, 3, 2)
        assert page.rows[0].device_id == "dev-0031" and page.rows[0].state == "online"
        quarantined = device_page(session, OverviewFilter(state="quarantined"), now, 300,
                                  page_size=20)
        assert [(r.device_id, r.state) for r in quarantined.rows] == [
            ("dev-0020", "quarantined")]
        tagged = device_page(session, OverviewFilter(tag="eu", search="dev-00_"), now, 300,
                             page_size=50, held=held)
        assert tagged.total == 0  # "_" is a literal, not a LIKE wildcard
        tagged = device_page(session, OverviewFilter(tag="eu", search="dev-01"), now, 300,
                             page_size=5, held=held)
        assert tagged.total == 10 and [r.device_id for r in tagged.rows][:2] == [
            "dev-0101", "dev-0103"]


def test_alert_reports_are_parsed_from_their_topic_and_only_touch_last_seen(
        db: Database) -> None:
    report = alert("gw-1", T0, "m1")
    payload = report.message.model_dump_json().encode()
    parsed = parse_report("nanofleet/v1/dev/gw-1/alerts", payload, T0 + 1)
    assert parsed.kind == "alerts" and parsed.message == report.message
    with pytest.raises(ValueError, match="payload claims device 'gw-1'"):
        parse_report("nanofleet/v1/dev/gw-2/alerts", payload, T0)
    with db.session() as session:
        assert ingest(session, [parsed]) == 0  # not an OTA event
        MetricsStore(db, MetricsRetention()).record(session, [parsed])
    with db.session() as session:
        device = session.get(Device, "gw-1")
        assert device is not None and device.last_seen == T0 + 1 and device.state == "unknown"
        assert session.scalar(select(func.count()).select_from(DeviceAlertRow)) == 1
