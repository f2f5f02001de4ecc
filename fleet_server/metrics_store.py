"""Device metrics over time and recent alerts, for the console's plots (bounded).

The MQTT bridge already receives every device's ``metrics`` reports; the inventory
keeps only the last one (``devices.metrics``). This module keeps a history of the few
figures the console plots, and the devices' alerts:

- ``device_metric_samples``: one row per report (``resolution`` 0), each the cumulative
  counters (lines in, dropped, errors) and the gauges (inference p99, RSS, spool
  depth) of that report, timed by the server's clock at arrival (a device's wrong clock
  cannot push rows out of retention). Rows older than ``raw_keep_s`` are folded into
  ``bucket_s`` buckets (``resolution`` = bucket_s; counters: the bucket's last value,
  gauges: its maximum) kept ``rollup_keep_s``. Rates are computed when read, from
  consecutive cumulative counters, so folding loses no line or drop, only detail;
- ``device_alerts``: the devices' alerts (deduplicated by ``msg_id``), kept
  ``alert_keep_s`` and at most ``max_alerts`` rows.

Folding and the series are pure functions (:func:`fold`, :func:`series`); the store is
the I/O around them (:class:`MetricsStore`). Settings: ``[metrics]`` in the server
config (:class:`fleet_server.console.settings.MetricsRetention`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, Index, Integer, String, Text, delete, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from contract.limits import MAX_STORED_INT
from contract.messages import Alert, Metrics
from contract.mutes import MAX_SOURCE_CHARS
from fleet_server.console.settings import MetricsRetention
from fleet_server.db import Base, Database, OtaEventRow
from fleet_server.device_reports import Report
from fleet_server.retention import MinuteBudget, trim_per_device

# Which agent counters make up the plotted "dropped" and "errors" figures.
DROPPED_COUNTERS = ("lines_dropped", "spool_dropped")
ERROR_COUNTERS = ("inference_errors", "batch_errors", "source_errors", "reload_errors",
                  "ota_errors")
COMPACT_CHUNK = 5000
MAX_POINTS = 1500  # per plotted series: more would not show on a screen anyway
ALERT_TEXT_CHARS = 500  # of an alert's line kept (a mute of a cut line names a shape's start)


class MetricSampleRow(Base):
    __tablename__ = "device_metric_samples"
    __table_args__ = (Index("ix_metric_device_res_ts", "device_id", "resolution", "ts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(64))
    resolution: Mapped[int] = mapped_column(Integer, doc="0: one report; else bucket size (s)")
    ts: Mapped[float] = mapped_column(Float, index=True,
                                      doc="server time of arrival (bucket: its last report)")
    uptime_s: Mapped[float] = mapped_column(Float)
    lines_in: Mapped[int] = mapped_column(Integer, doc="cumulative since the agent started")
    dropped: Mapped[int] = mapped_column(Integer, doc="cumulative: " + "+".join(
        DROPPED_COUNTERS))
    errors: Mapped[int] = mapped_column(Integer, doc="cumulative: " + "+".join(ERROR_COUNTERS))
    p99_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    rss_mb: Mapped[float | None] = mapped_column(Float, nullable=True)
    spool_depth: Mapped[float | None] = mapped_column(Float, nullable=True)


class DeviceAlertRow(Base):
    __tablename__ = "device_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    msg_id: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    ts: Mapped[float] = mapped_column(Float, index=True, doc="server time of arrival")
    device_ts: Mapped[float] = mapped_column(Float, doc="the line's time on the device")
    slot: Mapped[str] = mapped_column(String(32))
    model_version: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text, doc="the line (cut at 500 characters)")
    repeats: Mapped[int] = mapped_column(Integer, default=0)


@dataclass(frozen=True)
class Sample:
    """One point of a device's history (a report, or a folded bucket)."""

    ts: float
    uptime_s: float
    lines_in: int
    dropped: int
    errors: int
    p99_ms: float | None
    rss_mb: float | None
    spool_depth: float | None


def _stored(count: int) -> int:
    """A cumulative counter folded into the columns' range (INTEGER on PostgreSQL): past
    2^31 it starts again from 0, which the rates read as one restart, not as a failed
    insert that would take the whole ingest batch with it."""
    return count % (MAX_STORED_INT + 1)


def sample_of(metrics: Metrics, received_at: float) -> Sample:
    c, g = metrics.counters, metrics.gauges
    rss = g.get("rss_bytes")
    return Sample(ts=received_at, uptime_s=metrics.uptime_s,
                  lines_in=_stored(c.get("lines_in", 0)),
                  dropped=_stored(sum(c.get(k, 0) for k in DROPPED_COUNTERS)),
                  errors=_stored(sum(c.get(k, 0) for k in ERROR_COUNTERS)),
                  p99_ms=g.get("latency_p99_ms"),
                  rss_mb=None if rss is None else round(rss / 1e6, 2),
                  spool_depth=g.get("spool_depth"))


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def merge(a: Sample, b: Sample, ts: float) -> Sample:
    """Two samples of one bucket as one: the later counters, the larger gauges."""
    last = b if b.ts >= a.ts else a
    return Sample(ts=ts, uptime_s=last.uptime_s, lines_in=last.lines_in,
                  dropped=last.dropped, errors=last.errors, p99_ms=_max(a.p99_ms, b.p99_ms),
                  rss_mb=_max(a.rss_mb, b.rss_mb),
                  spool_depth=_max(a.spool_depth, b.spool_depth))


def fold(samples: Iterable[tuple[str, Sample]], bucket_s: int) -> dict[tuple[str, float],
                                                                         Sample]:
    """(device, sample) pairs -> one merged sample per (device, bucket start)."""
    out: dict[tuple[str, float], Sample] = {}
    for device_id, s in sorted(samples, key=lambda p: (p[0], p[1].ts)):
        start = float(int(s.ts // bucket_s) * bucket_s)
        key = (device_id, start)
        # The merged sample keeps the time of its last reading: rates need the real
        # distance between counter readings.
        out[key] = s if key not in out else merge(out[key], s, max(out[key].ts, s.ts))
    return out


def series(samples: Sequence[Sample], max_points: int = MAX_POINTS) -> dict[str, list[Any]]:
    """The plotted series: per interval between consecutive samples, lines/s and
    dropped/errors per minute (a counter that went down means the agent restarted: the
    new value counts since then); gauges as reported. Thinned to ``max_points``."""
    ordered = sorted(samples, key=lambda s: s.ts)
    out: dict[str, list[Any]] = {k: [] for k in ("ts", "lines_per_s", "p99_ms", "rss_mb",
                                                  "spool_depth", "dropped_per_min",
                                                  "errors_per_min")}
    prev: Sample | None = None
    for s in ordered:
        if prev is not None and s.ts > prev.ts:
            dt = s.ts - prev.ts
            restarted = s.lines_in < prev.lines_in or s.uptime_s < prev.uptime_s

            def delta(now: int, before: int, restarted: bool = restarted) -> int:
                return now if restarted or now < before else now - before

            out["ts"].append(round(s.ts, 3))
            out["lines_per_s"].append(round(delta(s.lines_in, prev.lines_in) / dt, 3))
            out["dropped_per_min"].append(round(delta(s.dropped, prev.dropped) * 60 / dt, 3))
            out["errors_per_min"].append(round(delta(s.errors, prev.errors) * 60 / dt, 3))
            out["p99_ms"].append(s.p99_ms)
            out["rss_mb"].append(s.rss_mb)
            out["spool_depth"].append(s.spool_depth)
        prev = s
    step = -(-len(out["ts"]) // max_points) if out["ts"] else 1
    if step > 1:
        out = {k: v[::step] for k, v in out.items()}
    return out


def _row(device_id: str, s: Sample, resolution: int) -> MetricSampleRow:
    return MetricSampleRow(device_id=device_id, resolution=resolution, ts=s.ts,
                           uptime_s=s.uptime_s, lines_in=s.lines_in, dropped=s.dropped,
                           errors=s.errors, p99_ms=s.p99_ms, rss_mb=s.rss_mb,
                           spool_depth=s.spool_depth)


def _sample(r: MetricSampleRow) -> Sample:
    return Sample(ts=r.ts, uptime_s=r.uptime_s, lines_in=r.lines_in, dropped=r.dropped,
                  errors=r.errors, p99_ms=r.p99_ms, rss_mb=r.rss_mb, spool_depth=r.spool_depth)


def alert_row(alert: Alert, received_at: float) -> DeviceAlertRow:
    return DeviceAlertRow(
        msg_id=alert.msg_id, device_id=alert.device_id, ts=received_at,
        device_ts=alert.item.ts, slot=alert.slot, model_version=alert.model_version,
        label=alert.item.label[:64], score=alert.item.score, reason=alert.reason[:255],
        source=alert.item.source[:MAX_SOURCE_CHARS], text=alert.item.text[:ALERT_TEXT_CHARS],
        repeats=alert.repeats)


def _count(result: Any) -> int:
    """Rows a DELETE removed (CursorResult.rowcount; typed as a plain Result)."""
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass
class Compacted:
    folded: int = 0  # raw rows folded into buckets
    expired: int = 0  # bucket rows past rollup_keep_s
    alerts_removed: int = 0
    events_removed: int = 0  # OTA events past a device's ota_events_per_device


class MetricsStore:
    """Keeps the history; ``record`` runs in the ingest transaction of a batch."""

    def __init__(self, db: Database, policy: MetricsRetention) -> None:
        self.db = db
        self.policy = policy
        self._last: dict[str, float] = {}  # device -> arrival of its last stored report
        self._next_compact = 0.0
        self._compacting = threading.Lock()
        self.alert_rows = MinuteBudget(policy.alerts_per_device_minute)
        self.event_rows = MinuteBudget(policy.ota_events_per_device_minute)  # for ingest

    def record(self, session: Session, reports: Sequence[Report]) -> int:
        """Store the batch's metrics and alerts; returns the rows added."""
        if not self.policy.enabled:
            return 0
        alerts = [r for r in reports if isinstance(r.message, Alert)]
        known = set(session.scalars(select(DeviceAlertRow.msg_id).where(
            DeviceAlertRow.msg_id.in_([r.message.msg_id for r in alerts])))) if alerts else set()
        added = 0
        for report in reports:
            msg = report.message
            if isinstance(msg, Metrics):
                last = self._last.get(report.device_id)
                if last is not None and report.received_at - last < self.policy.min_interval_s:
                    continue
                if len(self._last) > 1_000_000:
                    self._last.clear()  # bounded: forgetting only relaxes the rate guard
                self._last[report.device_id] = report.received_at
                session.add(_row(report.device_id, sample_of(msg, report.received_at), 0))
                added += 1
            elif isinstance(msg, Alert) and msg.msg_id not in known:
                known.add(msg.msg_id)
                if self.alert_rows.take(report.device_id, report.received_at):
                    session.add(alert_row(msg, report.received_at))
                    added += 1
        return added

    def maybe_compact(self, now: float | None = None) -> Compacted | None:
        """Compact at most every ``compact_every_s`` (called after each ingest batch)."""
        now = time.time() if now is None else now
        if now < self._next_compact or not self._compacting.acquire(blocking=False):
            return None
        try:
            self._next_compact = now + self.policy.compact_every_s
            if not self.policy.enabled:  # no metrics or alerts kept; OTA events are
                with self.db.session() as session:
                    return Compacted(events_removed=trim_per_device(
                        session, OtaEventRow, self.policy.ota_events_per_device))
            return self.compact(now)
        finally:
            self._compacting.release()

    def compact(self, now: float) -> Compacted:
        p, done = self.policy, Compacted()
        cutoff = now - p.raw_keep_s
        while True:  # fold expired raw rows, a chunk per transaction
            with self.db.session() as session:
                rows = list(session.scalars(select(MetricSampleRow).where(
                    MetricSampleRow.resolution == 0, MetricSampleRow.ts < cutoff)
                    .order_by(MetricSampleRow.id).limit(COMPACT_CHUNK)))
                if not rows:
                    break
                for (device_id, start), s in fold(
                        ((r.device_id, _sample(r)) for r in rows), p.bucket_s).items():
                    # A bucket row carries the time of its last reading (exact rates);
                    # a bucket is found by its time range.
                    existing = session.scalars(select(MetricSampleRow).where(
                        MetricSampleRow.device_id == device_id,
                        MetricSampleRow.resolution == p.bucket_s,
                        MetricSampleRow.ts >= start,
                        MetricSampleRow.ts < start + p.bucket_s)).first()
                    merged = s if existing is None else merge(
                        _sample(existing), s, max(existing.ts, s.ts))
                    if existing is not None:
                        session.delete(existing)
                    session.add(_row(device_id, merged, p.bucket_s))
                session.execute(delete(MetricSampleRow).where(
                    MetricSampleRow.id.in_([r.id for r in rows])))
                done.folded += len(rows)
        with self.db.session() as session:
            done.expired = _count(session.execute(delete(MetricSampleRow).where(
                MetricSampleRow.resolution != 0,
                MetricSampleRow.ts < now - p.rollup_keep_s)))
            done.alerts_removed = _count(session.execute(delete(DeviceAlertRow).where(
                DeviceAlertRow.ts < now - p.alert_keep_s)))
            # One device's share first: the fleet-wide cap below then takes the oldest of
            # everyone's, not every other device's alerts (review, December 2026).
            done.alerts_removed += trim_per_device(session, DeviceAlertRow,
                                                   p.max_alerts_per_device)
            done.events_removed = trim_per_device(session, OtaEventRow, p.ota_events_per_device)
            total = session.scalar(select(func.count()).select_from(DeviceAlertRow)) or 0
            if total > p.max_alerts:
                keep_from = session.scalar(select(DeviceAlertRow.id).order_by(
                    DeviceAlertRow.id.desc()).offset(p.max_alerts - 1).limit(1))
                if keep_from is not None:
                    done.alerts_removed += _count(session.execute(delete(DeviceAlertRow).where(
                        DeviceAlertRow.id < keep_from)))
        return done

    # --- reading ------------------------------------------------------------------------
    def history(self, session: Session, device_id: str, since: float) -> list[Sample]:
        rows = session.scalars(select(MetricSampleRow).where(
            MetricSampleRow.device_id == device_id, MetricSampleRow.ts >= since)
            .order_by(MetricSampleRow.ts))
        return [_sample(r) for r in rows]


def recent_alerts(session: Session, device_id: str | None, limit: int) -> list[DeviceAlertRow]:
    query = select(DeviceAlertRow).order_by(DeviceAlertRow.id.desc()).limit(limit)
    if device_id is not None:
        query = query.where(DeviceAlertRow.device_id == device_id)
    return list(session.scalars(query))


def alerts_per_hour(session: Session, now: float, hours: int = 24) -> list[int]:
    """Alert counts per hour over the last ``hours`` (oldest first; by arrival)."""
    start = now - hours * 3600
    counts = [0] * hours
    for (ts,) in session.execute(select(DeviceAlertRow.ts).where(DeviceAlertRow.ts >= start)):
        counts[min(hours - 1, int((ts - start) // 3600))] += 1
    return counts
