"""Operators' verdicts on alerts, end to end: a real `nanofleet server run` process and a
real Mosquitto; a device sends alerts over MQTT; an operator lists them, says which were
false alarms, exports the judged lines, and `nanofleet model eval --alerts` and
`nanofleet model train` read the export as it is."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from fleet_server.alert_shapes import shape_ranking
from fleet_server.db import Database
from fleet_server.metrics_store import DeviceAlertRow
from fleet_server.migrations import upgrade
from fleet_server.verdicts import (
    AlertVerdictRow,
    VerdictRefused,
    judge,
    labelled_lines,
    true_label,
    verdicts_of,
)
from hil.fleet import FleetSetup
from nanomodel import default_bundle_path
from nanomodel.cli import main as model_cli
from tests.support.alert_fleet import alert, alert_fleet, api, send_alerts, wait_alerts
from tests.support.mosquitto import Mosquitto

DEVICE = "gw-03"
# What a device on an SSH gateway might send: two real faults, three healthy lines.
LINES = [
    ("sshd", "Failed password for root from 203.0.113.9 port 52144 ssh2", "security", "right"),
    ("kernel", "EXT4-fs error (device mmcblk0p2): ext4_find_entry:1455: inode #2: comm "
     "systemd: reading directory lblock 0", "storage", "right"),
    ("sshd", "error: kex_exchange_identification: Connection closed by remote host",
     "network", "false_alarm"),
    ("nginx", '2026/12/03 11:35:26 [error] 15895#15895: *10 open() "/var/www/html/.env" '
     "failed (2: No such file or directory), client: 10.77.0.34", "security", "false_alarm"),
    ("cron", "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
     "security", "false_alarm"),
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FleetSetup, Mosquitto]]:
    with alert_fleet(tmp_path_factory.mktemp("verdicts")) as running:
        yield running


def test_verdicts_turn_alerts_into_labelled_lines(fleet: tuple[FleetSetup, Mosquitto],
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    setup, broker = fleet
    send_alerts(broker, [alert(DEVICE, f"a{i}", i, source, text, label)
                         for i, (source, text, label, _) in enumerate(LINES, 1)])
    listed = wait_alerts(setup, len(LINES), DEVICE)
    assert len(listed) == len(LINES), listed
    by_text = {a["text"]: a for a in listed}
    assert all(a["verdict"] is None for a in listed)

    # A reader may look but not judge.
    r = api(setup, "POST", "/api/v1/tokens", json={"name": "viewer", "scopes": ["read"]})
    viewer = r.json()["token"]
    first = by_text[LINES[0][1]]["id"]
    r = api(setup, "POST", f"/api/v1/alerts/{first}/verdict", viewer,
            json={"verdict": "right"})
    assert r.status_code == 403 and "needs 'deploy'" in r.json()["error"]["message"]

    for _, text, _, verdict in LINES:
        r = api(setup, "POST", f"/api/v1/alerts/{by_text[text]['id']}/verdict",
                json={"verdict": verdict})
        assert r.status_code == 200, r.text
        assert r.json()["verdict"]["verdict"] == verdict
    # Judged again, with the right category this time: the verdict is replaced.
    kernel = by_text[LINES[1][1]]["id"]
    r = api(setup, "POST", f"/api/v1/alerts/{kernel}/verdict",
            json={"verdict": "right", "label": "hardware"})
    assert r.json()["verdict"] == {"verdict": "right", "label": "hardware",
                                   "by": r.json()["verdict"]["by"],
                                   "at": r.json()["verdict"]["at"]}

    # Contradictions, unknown alerts and bad labels are refused, named.
    r = api(setup, "POST", f"/api/v1/alerts/{first}/verdict",
            json={"verdict": "false_alarm", "label": "security"})
    assert r.status_code == 422 and "a false alarm is a 'normal' line" in r.text
    r = api(setup, "POST", "/api/v1/alerts/999999/verdict", json={"verdict": "right"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown-alert"
    # past the database's integers (before: a 500 from the database driver)
    r = api(setup, "POST", f"/api/v1/alerts/{2**63}/verdict", json={"verdict": "right"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid-request"
    r = api(setup, "POST", f"/api/v1/alerts/{first}/verdict",
            json={"verdict": "right", "label": "Not A Label!"})
    assert r.status_code == 422
    r = api(setup, "POST", f"/api/v1/alerts/{first}/verdict", json={"verdict": "maybe"})
    assert r.status_code == 422

    listed = api(setup, "GET", f"/api/v1/alerts?device={DEVICE}").json()["alerts"]
    assert {a["text"]: a["verdict"]["label"] for a in listed} == {
        LINES[0][1]: "security", LINES[1][1]: "hardware", LINES[2][1]: "normal",
        LINES[3][1]: "normal", LINES[4][1]: "normal"}
    audit = api(setup, "GET", "/api/v1/audit").json()
    assert sum(e["action"] == "alert-verdict" for e in audit["entries"]) == len(LINES) + 1

    # The export is what the model tools read, as it is.
    r = api(setup, "GET", f"/api/v1/labelled-lines?device={DEVICE}&with_source=true")
    assert r.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert [(x["text"], x["label"], x["source"]) for x in rows] == [
        (LINES[0][1], "security", "sshd"), (LINES[1][1], "hardware", "kernel"),
        (LINES[2][1], "normal", "sshd"), (LINES[3][1], "normal", "nginx"),
        (LINES[4][1], "normal", "cron")]
    export = tmp_path / "judged.jsonl"
    export.write_text(r.text, encoding="utf-8")
    capsys.readouterr()
    code = model_cli(["model", "eval", "--alerts", "--data", str(export), "--bundle",
                      str(default_bundle_path()), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["lines"] == 5 and result["alerts"] == 2
    assert sorted(result["sources"]) == ["cron", "kernel", "nginx", "sshd"]

    plain = api(setup, "GET", "/api/v1/labelled-lines").text
    assert all(set(json.loads(line)) == {"text", "label"} for line in plain.splitlines())
    train = tmp_path / "train.jsonl"
    train.write_text(plain * 20, encoding="utf-8")
    code = model_cli(["model", "train", "--base", str(default_bundle_path()), "--head-only",
                      "--data", str(train), "--out", str(tmp_path / "site.nfb"), "--quiet",
                      "--epochs", "1"])
    assert code == 0, capsys.readouterr().err
    later = api(setup, "GET", f"/api/v1/labelled-lines?since={time.time() + 60}").text
    assert later == ""


def test_a_verdicts_label_follows_from_the_verdict() -> None:
    assert true_label("false_alarm", "security", None) == "normal"
    assert true_label("false_alarm", "security", "normal") == "normal"
    assert true_label("right", "security", None) == "security"
    assert true_label("right", "security", "storage") == "storage"
    with pytest.raises(VerdictRefused, match="use verdict 'right'"):
        true_label("false_alarm", "security", "storage")
    with pytest.raises(VerdictRefused, match="use verdict 'false_alarm'"):
        true_label("right", "security", "normal")


def test_a_refused_verdict_leaves_the_stored_one(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(db)
    try:
        with db.session() as session:
            alert = DeviceAlertRow(msg_id="m1", device_id=DEVICE, ts=1.0, device_ts=1.0,
                                   slot="logs", model_version=1, label="security", score=0.9,
                                   reason="label security >= 0.80", source="sshd",
                                   text="Accepted publickey for deploy", repeats=0)
            session.add(alert)
            session.flush()
            judge(session, alert, "false_alarm", None, "alice")
            with pytest.raises(VerdictRefused):
                judge(session, alert, "right", "normal", "bob")
        # the refusal was caught and the session committed: the first verdict stands
        with db.session() as session:
            row = session.scalars(select(AlertVerdictRow)).one()
            assert (row.verdict, row.label, row.actor) == ("false_alarm", "normal", "alice")
    finally:
        db.dispose()


def test_a_reused_alert_id_does_not_inherit_or_replace_a_verdict(tmp_path: Path) -> None:
    """A device chooses its alerts' ids. Once a judged alert has left the history, a new
    line under its id (before, review December 2026: shown as that false alarm, with the
    operator's name, and left out of the unjudged ranking; judging it replaced the judged
    line the fine-tune learns from) is unjudged, and judging it is refused."""
    db = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(db)

    def stored(text: str) -> DeviceAlertRow:
        return DeviceAlertRow(msg_id="m1", device_id=DEVICE, ts=1.0, device_ts=1.0,
                              slot="logs", model_version=1, label="security", score=0.9,
                              reason="label security >= 0.80", source="sshd", text=text,
                              repeats=0)
    try:
        with db.session() as session:
            first = stored("cron job backup finished with warnings")
            session.add(first)
            session.flush()
            judge(session, first, "false_alarm", None, "alice")
            assert set(verdicts_of(session, [first])) == {"m1"}
            session.delete(first)  # gone from the history (7 days, or the fleet-wide cap)
        with db.session() as session:
            reused = stored("Accepted publickey for root from 203.0.113.9 port 4711 ssh2")
            session.add(reused)
            session.flush()
            assert verdicts_of(session, [reused]) == {}
            ranked = shape_ranking(session, DEVICE, None, 2.0, unjudged=True)
            assert [g.alerts for g in ranked.groups] == [1]  # listed as not judged
            with pytest.raises(VerdictRefused, match="reused"):
                judge(session, reused, "right", None, "bob")
        with db.session() as session:
            assert [json.loads(line)["text"] for line in labelled_lines(session)] == [
                "cron job backup finished with warnings"]
    finally:
        db.dispose()
