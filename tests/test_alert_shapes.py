"""Which messages alert most (fleet_server.alert_shapes), the ranking on its own: alerts
grouped by the shape a mute of them names and their source, their volume with the repeats
the agent held back, cut lines by the start of their shape, verdicts and mutes, the
``unjudged`` filter, the limit, an order that does not depend on the rows' order; then the
bounded read from a real database (one query, the newest alerts, the verdicts joined)."""

from __future__ import annotations

import itertools
import random

import pytest

from contract.mutes import message_shape, prefix_shape
from fleet_server.alert_shapes import (
    MAX_LIMIT,
    AlertLine,
    ShapeGroup,
    rank_shapes,
    shape_ranking,
)
from fleet_server.console.details import alert_shapes, muted_alerts
from fleet_server.db import Database
from fleet_server.metrics_store import ALERT_TEXT_CHARS, DeviceAlertRow
from fleet_server.mutes import AlertMuteRow
from fleet_server.verdicts import AlertVerdictRow
from tests.support.alert_lines import CLOSED, CLOSED_AGAIN, FAILED, FAILED_AGAIN, USB
from tests.support.json_log import READ, WRITE, json_line

pytestmark = pytest.mark.unit

# The same JSON message with other values of the same lengths: the server's cut falls at the
# same place, so the kept starts have one shape.
WRITE_SAME_CUT = json_line("2026-04-07T22:13:09.456Z", "0badc0de-9999-8888-7777-666655554444",
                           "0af7651916cd43dd8448eb211c80319c", 654321, 98.25)
BLOB = "upload failed: payload=" + "QUJDRA" * 100  # cut; its sure start is too short to mute
NOW = 10_000.0
DAY = 86_400.0


def line(i: int, text: str, *, device: str = "gw-1", source: str = "sshd",
         label: str = "security", repeats: int = 0, verdict: str | None = None,
         at: float | None = None) -> AlertLine:
    return AlertLine(id=i, device_id=device, received_at=NOW - 1000 + i if at is None else at,
                     label=label, source=source, text=text[:ALERT_TEXT_CHARS],
                     repeats=repeats, verdict=verdict)


def mute(i: int, shape: str, *, prefix: bool = False, device: str | None = "gw-1",
         source: str | None = "sshd", expires: float = NOW + DAY) -> AlertMuteRow:
    return AlertMuteRow(id=f"{i:016x}", device_id=device, source=source, shape=shape,
                        prefix=prefix, reason="", created_by="op", created_at=NOW - 10,
                        expires_at=expires)


def summary(groups: list[ShapeGroup]) -> list[tuple[str, str, int, int, int]]:
    return [(g.source, g.shape, g.count, g.alerts, g.repeats) for g in groups]


def test_one_message_with_other_values_is_one_group_and_repeats_are_volume() -> None:
    alerts = [line(1, CLOSED), line(2, CLOSED_AGAIN, repeats=4), line(3, FAILED),
              line(4, FAILED_AGAIN), line(5, FAILED, label="auth"), line(6, USB, source="kernel"),
              line(7, CLOSED, source="journal")]  # another source: another group
    ranking = rank_shapes(alerts, [], NOW)
    closed, failed = message_shape(CLOSED), message_shape(FAILED)
    assert closed == message_shape(CLOSED_AGAIN) and failed == message_shape(FAILED_AGAIN)
    # 2 alerts that carry 4 held back outweigh 3 alerts: the volume decides.
    assert summary(ranking.groups) == [("sshd", closed, 6, 2, 4), ("sshd", failed, 3, 3, 0),
                                       ("journal", closed, 1, 1, 0),
                                       ("kernel", message_shape(USB), 1, 1, 0)]
    assert (ranking.shapes, ranking.alerts_read, ranking.complete) == (4, 7, True)
    top, second = ranking.groups[:2]
    assert dict(top.labels) == {"security": 6} and dict(second.labels) == {"security": 2,
                                                                           "auth": 1}
    assert (top.alert_id, top.first_received_at, top.last_received_at) == (2, NOW - 999,
                                                                           NOW - 998)
    assert (second.alert_id, top.device_ids, top.devices) == (5, ["gw-1"], 1)
    assert all(g.mutable and not g.prefix and not g.judged and not g.muted
               for g in ranking.groups)


def test_cut_lines_group_by_the_start_of_their_shape() -> None:
    """What a mute of them names: WRITE and the same message with values of the same
    lengths have one kept start; READ begins alike but says another thing; a cut line
    whose sure start is too short to mute is grouped by its plain shape, not mutable."""
    alerts = [line(1, WRITE, source="app", label="storage"),
              line(2, WRITE_SAME_CUT, source="app", label="storage", repeats=1),
              line(3, READ, source="app", label="storage"),
              line(4, BLOB, source="app"), line(5, BLOB, source="app"),
              line(6, WRITE[:300], source="app")]  # short enough: a whole line
    start = prefix_shape(WRITE[:ALERT_TEXT_CHARS])
    assert start == prefix_shape(WRITE_SAME_CUT[:ALERT_TEXT_CHARS]) != prefix_shape(
        READ[:ALERT_TEXT_CHARS])
    groups = rank_shapes(alerts, [], NOW).groups
    assert [(g.shape, g.prefix, g.mutable, g.count) for g in groups] == [
        (start, True, True, 3),
        (message_shape(BLOB[:ALERT_TEXT_CHARS]), False, False, 2),
        (message_shape(WRITE[:300]), False, True, 1),  # newer than READ's: first
        (prefix_shape(READ[:ALERT_TEXT_CHARS]), True, True, 1)]
    assert groups[0].alert_id == 2


def test_verdicts_and_mutes_of_a_device_and_of_the_fleet() -> None:
    alerts = [line(1, CLOSED, verdict="false_alarm"), line(2, CLOSED_AGAIN),
              line(3, CLOSED, device="gw-2", verdict="right"), line(4, CLOSED, device="gw-2"),
              line(5, FAILED), line(6, FAILED, device="gw-2"), line(7, FAILED, device="gw-3"),
              line(8, USB, source="kernel"), line(9, USB, source="kernel", device="gw-2"),
              line(10, WRITE, source="app", device="gw-2"), line(11, BLOB, source="app")]
    mutes = [mute(1, message_shape(CLOSED)),  # gw-1's own
             mute(2, message_shape(FAILED), device=None),  # every device
             mute(3, message_shape(USB), device=None, expires=NOW),  # expired: no longer
             mute(4, message_shape(USB), device="gw-2", source="journal"),  # other source
             mute(5, prefix_shape(WRITE[:ALERT_TEXT_CHARS]), prefix=True, device="gw-2",
                  source=None)]
    by_shape = {(g.source, g.shape): g for g in rank_shapes(alerts, mutes, NOW).groups}
    closed = by_shape[("sshd", message_shape(CLOSED))]
    assert (closed.devices, closed.device_ids, closed.false_alarms, closed.right) == (
        2, ["gw-1", "gw-2"], 1, 1)
    assert (closed.muted_devices, closed.muted) == (1, False)  # gw-1 only
    failed = by_shape[("sshd", message_shape(FAILED))]
    assert (failed.devices, failed.muted_devices, failed.muted, failed.judged) == (
        3, 3, True, False)
    usb = by_shape[("kernel", message_shape(USB))]
    assert (usb.muted_devices, usb.muted) == (0, False)
    write = by_shape[("app", prefix_shape(WRITE[:ALERT_TEXT_CHARS]))]
    assert write.prefix and write.muted
    blob = by_shape[("app", message_shape(BLOB[:ALERT_TEXT_CHARS]))]
    assert not blob.mutable and not blob.muted  # no mute names it: never "muted"

    # unjudged: what nobody looked at (no verdict on any alert, no mute on any device).
    left = rank_shapes(alerts, mutes, NOW, unjudged=True)
    assert [(g.source, g.shape) for g in left.groups] == [
        ("kernel", message_shape(USB)), ("app", message_shape(BLOB[:ALERT_TEXT_CHARS]))]
    assert left.shapes == 5  # found in all, before the filter

    # The console's "muted" tag says the same of each of a device's alerts.
    for device in ("gw-1", "gw-2"):
        rows = [DeviceAlertRow(id=a.id, device_id=a.device_id, source=a.source, text=a.text)
                for a in alerts if a.device_id == device]
        applies = [m for m in mutes if m.device_id in (None, device) and m.expires_at > NOW]
        tagged = muted_alerts(rows, alert_shapes(rows), applies)
        ranked = {(g.source, g.shape, g.prefix): g for g in rank_shapes(
            [a for a in alerts if a.device_id == device], mutes, NOW).groups}
        for r in rows:
            shapes = alert_shapes([r])
            if r.id in shapes:
                g = ranked[(r.source, *shapes[r.id])]
                assert (r.id in tagged) == g.muted, (device, r.text)
            else:
                assert r.id not in tagged


def test_the_limit_and_an_order_that_the_rows_order_does_not_change() -> None:
    # Ties on volume: more alerts first, then the newer last alert, then source and shape.
    alerts = [line(1, CLOSED, repeats=1, at=50.0),  # 2 by volume, 1 alert
              line(2, FAILED, at=40.0), line(3, FAILED_AGAIN, at=40.0),  # 2, 2 alerts
              line(4, USB, source="a", at=60.0), line(5, USB, source="b", at=60.0),
              line(6, USB, source="c", at=70.0),
              line(7, "pump P3 test alarm", at=60.0)]
    expected = [("sshd", message_shape(FAILED)), ("sshd", message_shape(CLOSED)),
                ("c", message_shape(USB)), ("a", message_shape(USB)), ("b", message_shape(USB)),
                ("sshd", "pump p3 test alarm")]
    rng = random.Random(7)
    for _ in range(20):
        rows = alerts[:]
        rng.shuffle(rows)
        got = rank_shapes(rows, [], NOW)
        assert [(g.source, g.shape) for g in got.groups] == expected
        assert got.groups[0].alert_id == 3  # the newest: the later id at the same time
    for limit in (1, 3, MAX_LIMIT):
        assert [(g.source, g.shape) for g in rank_shapes(alerts, [], NOW, limit=limit)
                .groups] == expected[:limit]
    for bad in (0, MAX_LIMIT + 1):
        with pytest.raises(ValueError, match="limit"):
            rank_shapes(alerts, [], NOW, limit=bad)
    # Many devices: every one counted, ten named, the most alerting first.
    many = [line(100 + i, USB, device=f"d-{i:02d}", repeats=i % 3) for i in range(15)]
    g = rank_shapes(many, [], NOW).groups[0]
    assert g.devices == 15 and len(g.device_ids) == 10
    assert g.device_ids[:5] == ["d-02", "d-05", "d-08", "d-11", "d-14"]


# --- the bounded read, from a real database ----------------------------------------------------

def test_the_read_takes_the_newest_alerts_with_their_verdicts_and_says_when_it_stopped(
        db: Database) -> None:
    texts = itertools.cycle([CLOSED, FAILED, CLOSED_AGAIN])
    with db.session() as session:
        for i in range(1, 31):
            session.add(DeviceAlertRow(
                msg_id=f"m-{i}", device_id="gw-1" if i % 5 else "gw-2", ts=1000.0 + i,
                device_ts=1.0, slot="logs", model_version=1, label="security", score=0.9,
                reason="r", source="sshd", text=next(texts), repeats=1 if i == 30 else 0))
        # a verdict is on its alert's line: the same id, device, source and text
        for msg_id, verdict, text in (("m-1", "false_alarm", CLOSED), ("m-2", "right", FAILED),
                                      ("m-29", "right", FAILED)):
            session.add(AlertVerdictRow(alert_msg_id=msg_id, device_id="gw-1", verdict=verdict,
                                        label="x", alert_label="security", model_version=1,
                                        source="sshd", text=text, at=1.0, actor="op"))
        session.add(mute(1, message_shape(FAILED), device=None))
    with db.session() as session:
        whole = shape_ranking(session, None, None, NOW)
        assert (whole.alerts_read, whole.complete, whole.shapes) == (30, True, 2)
        closed, failed = whole.groups
        assert (closed.shape, closed.alerts, closed.count) == (message_shape(CLOSED), 20, 21)
        assert (closed.false_alarms, failed.right, failed.false_alarms) == (1, 2, 0)
        assert (failed.muted, closed.muted, closed.devices, closed.alert_id) == (
            True, False, 2, 30)

        newest = shape_ranking(session, None, None, NOW, max_rows=4)  # ids 30..27
        assert (newest.alerts_read, newest.complete) == (4, False)
        assert [(g.alerts, g.first_received_at) for g in newest.groups] == [(3, 1027.0),
                                                                            (1, 1029.0)]
        one = shape_ranking(session, "gw-2", 1020.0, NOW)  # ids 20, 25 and 30
        assert (one.alerts_read, one.complete) == (3, True)
        assert [(g.count, g.device_ids) for g in one.groups] == [(3, ["gw-2"]),
                                                                 (1, ["gw-2"])]
        left = shape_ranking(session, None, None, NOW, unjudged=True)
        assert left.groups == []
