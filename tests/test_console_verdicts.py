"""Operators' verdicts on alerts in the web console, end to end: a real `nanofleet server
run` process and a real Mosquitto; devices send alerts over MQTT; an operator signed in
to the console says, on the device page, which were false alarms and which were right,
and the labelled lines and the audit log show it as they do for the REST API. A reader
sees the verdicts but gets no buttons, and neither a reader's nor a forged form changes
anything."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from hil.fleet import FleetSetup
from tests.support.alert_fleet import alert, alert_fleet, api, send_alerts, wait_alerts
from tests.support.console_client import console, csrf_of, notice, operator_token

DEVICE, OTHER = "gw-07", "gw-08"
# (device, msg_id, source, text, label, reason): the third is an anomaly alert whose most
# probable label is "normal" (a "right" verdict on it needs a label the buttons do not give).
ALERTS = [
    (DEVICE, "cv-1", "kernel", "EXT4-fs error (device mmcblk0p2): ext4_find_entry:1455: "
     "inode #2: comm systemd: reading directory lblock 0", "storage", "label storage >= 0.80"),
    (DEVICE, "cv-2", "sshd", "Failed password for root from 203.0.113.9 port 52144 ssh2",
     "security", "label security >= 0.80"),
    (DEVICE, "cv-3", "app", "worker 7 restarted 41 times in 60 s", "normal",
     "anomaly 0.97 >= 0.90"),
    (OTHER, "cv-4", "cron", "pam_unix(cron:session): session opened for user root(uid=0)",
     "security", "label security >= 0.80"),
]
TEXT = {msg_id: text for _, msg_id, _, text, _, _ in ALERTS}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetSetup]:
    with alert_fleet(tmp_path_factory.mktemp("console-verdicts")) as (setup, broker):
        send_alerts(broker, [
            alert(dev, msg_id, seq, source, text, label, reason, anomaly=0.97)
            for seq, (dev, msg_id, source, text, label, reason) in enumerate(ALERTS, 1)])
        listed = wait_alerts(setup, len(ALERTS))
        assert sorted(a["text"] for a in listed) == sorted(TEXT.values()), listed
        yield setup


def alert_ids(setup: FleetSetup) -> dict[str, int]:
    """The server's alert id of each line, by our msg_id."""
    by_text = {a["text"]: a["id"] for a in api(setup, "GET", "/api/v1/alerts").json()["alerts"]}
    return {msg_id: by_text[text] for msg_id, text in TEXT.items()}


def rows(page: str) -> dict[int, str]:
    """The alerts table's rows (their HTML), by alert id."""
    return {int(m.group(1)): m.group(2) for m in re.finditer(
        r'<tr data-alert="(\d+)">(.*?)</tr>', page, re.S)}


def verdict_cell(row: str) -> tuple[str, str | None]:
    """(what the verdict column says, its title) of one row."""
    cell = row.split('<td class="verdict">', 1)[1]
    judged = re.search(r'<span class="judged" title="([^"]*)">([^<]*)</span>', cell)
    if judged:
        return html.unescape(judged.group(2)), html.unescape(judged.group(1))
    assert cell.startswith('<span class="muted">—</span>'), cell
    return "—", None


def buttons(row: str) -> list[tuple[str, str]]:
    """(form action, button text) of the row's verdict forms, each with its CSRF field."""
    return [(m.group(1), m.group(2)) for m in re.finditer(
        r'<form method="post" action="([^"]+)"(?: class="right")?><input type="hidden" name="csrf" '
        r'value="[^"]+"><button type="submit" aria-describedby="alert-\d+">([^<]+)</button>'
        r'</form>', row)]


def lines(setup: FleetSetup, device: str) -> list[dict[str, Any]]:
    r = api(setup, "GET", f"/api/v1/labelled-lines?device={device}")
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines()]


def verdict_audit(setup: FleetSetup) -> list[dict[str, Any]]:
    r = api(setup, "GET", "/api/v1/audit", params={"action": "alert-verdict"})
    entries: list[dict[str, Any]] = r.json()["entries"]
    return entries


def test_an_operator_judges_alerts_on_the_device_page(fleet: FleetSetup) -> None:
    setup = fleet
    ids = alert_ids(setup)
    page_url = f"/console/devices/{DEVICE}"
    with console(setup, operator_token(setup, "night-shift", "deploy"), page_url) as c:
        page = c.get(page_url)
        assert page.status_code == 200
        csrf = csrf_of(page.text)
        table = rows(page.text)
        assert sorted(table) == sorted(ids[m] for m in ("cv-1", "cv-2", "cv-3"))
        for msg_id in ("cv-1", "cv-2", "cv-3"):
            row = table[ids[msg_id]]
            assert verdict_cell(row) == ("—", None)
            base = f"/console/devices/{DEVICE}/alerts/{ids[msg_id]}"
            assert buttons(row) == [(f"{base}/false_alarm", "false alarm"),
                                    (f"{base}/right", "right")]
        audited = len(verdict_audit(setup))

        # "false alarm" on the storage alert: stored as a normal line, audited, and back to
        # the device page (post/redirect/get), which now shows the verdict.
        r = c.post(f"{page_url}/alerts/{ids['cv-1']}/false_alarm", data={"csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == page_url
        page = c.get(page_url)
        said, title = verdict_cell(rows(page.text)[ids["cv-1"]])
        assert said == "false alarm → normal"
        assert title is not None and re.fullmatch(
            r"by night-shift, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", title), title
        assert verdict_cell(rows(page.text)[ids["cv-2"]]) == ("—", None)
        assert lines(setup, DEVICE) == [{"text": TEXT["cv-1"], "label": "normal"}]
        entries = verdict_audit(setup)
        assert len(entries) == audited + 1
        assert {k: entries[0][k] for k in ("actor", "action", "subject", "detail")} == {
            "actor": "night-shift", "action": "alert-verdict", "subject": DEVICE,
            "detail": {"alert": "cv-1", "verdict": "false_alarm", "label": "normal"}}

        # "right" keeps the alert's label; judging again replaces the verdict.
        r = c.post(f"{page_url}/alerts/{ids['cv-2']}/right", data={"csrf": csrf})
        assert r.status_code == 303
        r = c.post(f"{page_url}/alerts/{ids['cv-1']}/right", data={"csrf": csrf})
        assert r.status_code == 303
        page = c.get(page_url)
        assert verdict_cell(rows(page.text)[ids["cv-1"]])[0] == "right → storage"
        assert verdict_cell(rows(page.text)[ids["cv-2"]])[0] == "right → security"
        assert lines(setup, DEVICE) == [{"text": TEXT["cv-1"], "label": "storage"},
                                        {"text": TEXT["cv-2"], "label": "security"}]

        # "right" with the category the operator chose (the page's "Judging" choice, which
        # the button's form sends as `label`): the line is filed under it; a label that is
        # no label is refused and changes nothing.
        page = c.get(page_url)
        assert 'id="verdict-labels"' in page.text and '<option value="storage">' in page.text
        r = c.post(f"{page_url}/alerts/{ids['cv-2']}/right", data={"csrf": csrf,
                                                                   "label": "Storage!"})
        assert r.status_code == 422 and notice(r.text).startswith(
            "category 'Storage!' is not a label: lower-case letters, digits, - and _")
        r = c.post(f"{page_url}/alerts/{ids['cv-2']}/right", data={"csrf": csrf,
                                                                   "label": " storage "})
        assert r.status_code == 303
        assert verdict_cell(rows(c.get(page_url).text)[ids["cv-2"]])[0] == "right → storage"
        assert lines(setup, DEVICE)[-1] == {"text": TEXT["cv-2"], "label": "storage"}
        r = c.post(f"{page_url}/alerts/{ids['cv-2']}/right", data={"csrf": csrf, "label": ""})
        assert r.status_code == 303  # blank: the alert's own label again

        # The live fragment (htmx polls it) shows the same column and buttons.
        live = c.get(f"{page_url}/live", headers={"HX-Request": "true"})
        assert live.status_code == 200
        assert verdict_cell(rows(live.text)[ids["cv-2"]])[0] == "right → security"
        assert len(buttons(rows(live.text)[ids["cv-3"]])) == 2

        # A contradiction is refused with the verdicts' own message, and the earlier
        # verdict stays exactly as it was (the refused one is rolled back).
        r = c.post(f"{page_url}/alerts/{ids['cv-3']}/false_alarm", data={"csrf": csrf})
        assert r.status_code == 303
        audited = len(verdict_audit(setup))
        r = c.post(f"{page_url}/alerts/{ids['cv-3']}/right", data={"csrf": csrf})
        assert r.status_code == 422
        assert notice(r.text) == ("a right alert is not a 'normal' line: use verdict "
                                  "'false_alarm'")
        assert verdict_cell(rows(r.text)[ids["cv-3"]])[0] == "false alarm → normal"
        page = c.get(page_url)
        assert verdict_cell(rows(page.text)[ids["cv-3"]])[0] == "false alarm → normal"
        assert lines(setup, DEVICE)[-1] == {"text": TEXT["cv-3"], "label": "normal"}
        assert len(verdict_audit(setup)) == audited

        # Unknown alerts, and another device's alert through this device's page, are
        # refused with the console's notice; nothing is stored.
        other_before = lines(setup, OTHER)
        for alert_id in (999_999, ids["cv-4"]):
            r = c.post(f"{page_url}/alerts/{alert_id}/right", data={"csrf": csrf})
            assert r.status_code == 404
            assert notice(r.text) == (
                f"no alert {alert_id} on device {DEVICE}: the server keeps alerts for a "
                "while only (the table lists those it has)")
        assert lines(setup, OTHER) == other_before
        assert len(verdict_audit(setup)) == audited

        # Forms without the session's CSRF token, or with a wrong one: refused, unchanged.
        for data in ({}, {"csrf": "x" * len(csrf)}, {"csrf": csrf[:-1]}):
            r = c.post(f"{page_url}/alerts/{ids['cv-2']}/false_alarm", data=data)
            assert r.status_code == 403 and "missing or wrong CSRF token" in r.text
        assert verdict_cell(rows(c.get(page_url).text)[ids["cv-2"]])[0] == "right → security"
        assert len(verdict_audit(setup)) == audited


def test_a_reader_sees_verdicts_but_cannot_judge(fleet: FleetSetup) -> None:
    setup = fleet
    ids = alert_ids(setup)
    r = api(setup, "POST", f"/api/v1/alerts/{ids['cv-4']}/verdict",
            json={"verdict": "right", "label": "auth"})
    assert r.status_code == 200, r.text
    before = lines(setup, OTHER)
    audited = len(verdict_audit(setup))
    page_url = f"/console/devices/{OTHER}"
    with console(setup, operator_token(setup, "viewer", "read"), page_url) as c:
        page = c.get(page_url)
        assert page.status_code == 200 and "(read-only)" in page.text
        row = rows(page.text)[ids["cv-4"]]
        said, title = verdict_cell(row)
        assert said == "right → auth"
        assert title is not None and title.startswith("by operator, "), title
        assert buttons(row) == [] and "/alerts/" not in page.text
        live = c.get(f"{page_url}/live", headers={"HX-Request": "true"})
        assert "/alerts/" not in live.text

        # A forged form with the reader's own valid CSRF token: refused by scope.
        csrf = csrf_of(page.text)
        r = c.post(f"{page_url}/alerts/{ids['cv-4']}/false_alarm", data={"csrf": csrf})
        assert r.status_code == 403
        assert "needs 'deploy'" in html.unescape(r.text)
    assert lines(setup, OTHER) == before == [{"text": TEXT["cv-4"], "label": "auth"}]
    assert len(verdict_audit(setup)) == audited
