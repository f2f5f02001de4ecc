"""Alert mutes in the web console, end to end: a real `nanofleet server run` process and a
real Mosquitto; devices send alerts over MQTT; an operator signed in to the console mutes
one of a device's alerts from its page and lifts the mute from the page's "Muted here"
list. The mute is the one the REST API lists, and the device's retained list on the broker,
read by a real MQTT client on `dev/{id}/mutes` as the agent reads it, carries it and then
no longer does. A reader sees the mutes but gets no buttons, and neither a reader's nor a
forged form changes anything."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.messages import Metrics
from contract.mutes import MuteList, message_shape, mutes_topic, prefix_shape
from contract.topics import metrics as metrics_topic
from fleet_server.metrics_store import ALERT_TEXT_CHARS
from hil.fleet import FleetSetup
from tests.support.alert_fleet import (
    alert,
    alert_fleet,
    alert_fleet_processes,
    api,
    retained,
    send_alerts,
    wait_alerts,
)
from tests.support.alert_lines import CLOSED, CLOSED_AGAIN, USB
from tests.support.console_client import console, csrf_of, notice, operator_token
from tests.support.json_log import READ, WRITE, WRITE_AGAIN
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector

DEVICE, OTHER = "gw-m1", "gw-m2"
# The server keeps the first ALERT_TEXT_CHARS of a line: a mute of a cut line names the
# start of its shape, unless what the server can be sure of is too short (a long blob).
BLOB = "upload failed: payload=" + "QUJDRA" * 100
# (device, msg_id, source, text)
ALERTS = [
    (DEVICE, "cm-1", "sshd", CLOSED),
    (DEVICE, "cm-2", "kernel", USB),
    (DEVICE, "cm-3", "app", WRITE),  # 900 characters of JSON: cut
    (DEVICE, "cm-4", "sshd", CLOSED_AGAIN),  # the same message as cm-1, another day
    (OTHER, "cm-5", "sshd", CLOSED),
    (DEVICE, "cm-6", "app", BLOB),  # cut, and no sure start long enough to mute
    (DEVICE, "cm-7", "app", WRITE_AGAIN),  # cm-3's message with other values
    (DEVICE, "cm-8", "app", READ),  # another message that begins like cm-3's
]
DAY = 86_400.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FleetSetup, Mosquitto]]:
    with alert_fleet(tmp_path_factory.mktemp("console-mutes")) as (setup, broker):
        send_alerts(broker, [alert(dev, msg_id, seq, source, text, "security")
                             for seq, (dev, msg_id, source, text) in enumerate(ALERTS, 1)])
        assert len(wait_alerts(setup, len(ALERTS))) == len(ALERTS)
        yield setup, broker


def alert_ids(setup: FleetSetup) -> dict[str, int]:
    """The server's alert id of each alert, by our msg_id."""
    listed = api(setup, "GET", "/api/v1/alerts", params={"limit": 1000}).json()["alerts"]
    by_key = {(a["device_id"], a["text"]): a["id"] for a in listed}
    return {msg_id: by_key[(dev, text[:ALERT_TEXT_CHARS])] for dev, msg_id, _, text in ALERTS}


def page_url(device: str) -> str:
    return f"/console/devices/{device}"


def mutes(setup: FleetSetup, device: str | None = None) -> list[dict[str, Any]]:
    r = api(setup, "GET", "/api/v1/mutes", params={"device": device} if device else {})
    assert r.status_code == 200, r.text
    listed: list[dict[str, Any]] = r.json()["mutes"]
    return listed


def audit(setup: FleetSetup, action: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = api(setup, "GET", "/api/v1/audit",
                                        params={"action": action}).json()["entries"]
    return entries


def when(ts: float) -> str:
    """A time as the console's pages show it."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def alert_rows(page: str) -> dict[int, str]:
    """The alerts table's rows (their HTML), by alert id."""
    return {int(m.group(1)): m.group(2) for m in re.finditer(
        r'<tr data-alert="(\d+)">(.*?)</tr>', page, re.S)}


def muted_tag(row: str) -> str | None:
    """The title of the row's "muted" tag, None when the row has none."""
    found = re.search(r'<span class="pill mute-tag" title="([^"]*)">muted</span>', row)
    return None if found is None else html.unescape(found.group(1))


def mute_forms(row: str) -> list[tuple[str, str, str]]:
    """(action, days, button text) of the row's mute forms, each with its CSRF field."""
    return [(m.group(1), m.group(2), m.group(3)) for m in re.finditer(
        r'<form method="post" action="([^"]+)" class="mute"><input type="hidden" '
        r'name="csrf" value="[^"]+"><input type="hidden" name="days" value="(\d+)">'
        r'<button type="submit" aria-describedby="alert-\d+"[^>]*>([^<]+)</button></form>',
        row)]


def muted_here(page: str) -> dict[str, list[str]]:
    """The "Muted here" list: each row's cells as text, by mute id."""
    section = page.split('<h2 id="h-mutes">Muted here</h2>', 1)[1].split("</section>", 1)[0]
    return {m.group(1): [text_of(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", m.group(2),
                                                         re.S)]
            for m in re.finditer(r'<tr data-mute="([0-9a-f]+)">(.*?)</tr>', section, re.S)}


def unmute_forms(page: str) -> list[str]:
    """The actions of the page's unmute forms (each with its CSRF field)."""
    return re.findall(r'<form method="post" action="([^"]+)" class="unmute"><input '
                      r'type="hidden" name="csrf" value="[^"]+"><button type="submit"', page)


def test_an_operator_mutes_an_alert_from_the_device_page_and_lifts_the_mute(
        fleet: tuple[FleetSetup, Mosquitto]) -> None:
    setup, broker = fleet
    ids = alert_ids(setup)
    url = page_url(DEVICE)
    watch = Collector(broker.port, ["nanofleet/v1/dev/+/mutes"])
    with console(setup, operator_token(setup, "night-shift", "deploy"), url) as c:
        page = c.get(url)
        assert page.status_code == 200
        csrf = csrf_of(page.text)
        table = alert_rows(page.text)
        assert sorted(table) == sorted(ids[m] for m in ("cm-1", "cm-2", "cm-3", "cm-4", "cm-6",
                                                        "cm-7", "cm-8"))
        for msg_id in ("cm-1", "cm-2", "cm-3", "cm-4", "cm-7", "cm-8"):
            assert mute_forms(table[ids[msg_id]]) == [
                (f"{url}/alerts/{ids[msg_id]}/mute", "7", "mute")]
            assert muted_tag(table[ids[msg_id]]) is None
        assert mute_forms(table[ids["cm-6"]]) == []  # a mute would be refused
        assert muted_here(page.text) == {}
        assert "No active mute applies to this device." in page.text
        assert mutes(setup) == []

        # The button: the mute is made as the API makes it, audited, published; back to
        # the page (post/redirect/get).
        before = time.time()
        r = c.post(f"{url}/alerts/{ids['cm-1']}/mute", data={"csrf": csrf, "days": "7"})
        assert r.status_code == 303 and r.headers["location"] == url
        [made] = mutes(setup)
        assert (made["device_id"], made["source"], made["shape"], made["alert_id"],
                made["created_by"], made["reason"]) == (
            DEVICE, "sshd", message_shape(CLOSED), ids["cm-1"], "night-shift", "")
        assert before + 7 * DAY <= made["expires_at"] <= time.time() + 7 * DAY
        [entry] = audit(setup, "alert-mute")
        assert (entry["actor"], entry["subject"], entry["detail"]["mute"],
                entry["detail"]["outcome"], entry["detail"]["days"]) == (
            "night-shift", DEVICE, made["id"], "created", 7)
        held = retained(broker, DEVICE)
        assert [(m.id, m.shape, m.source, m.expires) for m in held.mutes] == [
            (made["id"], message_shape(CLOSED), "sshd", made["expires_at"])]
        assert held.mutes[0].matches("sshd", message_shape(CLOSED_AGAIN))
        with pytest.raises(TimeoutError):  # the device's own mute: no other list was sent
            retained(broker, OTHER, timeout=1.0)

        # The page lists it, and tags both lines of that message (the other day's too).
        page = c.get(url)
        assert muted_here(page.text) == {made["id"]: [
            message_shape(CLOSED), "sshd", "this device", when(made["expires_at"]), "—",
            "night-shift", "unmute"]}
        assert unmute_forms(page.text) == [f"{url}/mutes/{made['id']}/unmute"]
        table = alert_rows(page.text)
        for msg_id in ("cm-1", "cm-4"):
            assert muted_tag(table[ids[msg_id]]) == (
                f"its message is muted here until {when(made['expires_at'])} (by night-shift)")
        assert muted_tag(table[ids["cm-2"]]) is None
        live = c.get(f"{url}/live", headers={"HX-Request": "true"})
        assert list(muted_here(live.text)) == [made["id"]]
        # The same line on another device is not muted there.
        other = c.get(page_url(OTHER))
        assert muted_here(other.text) == {}
        assert muted_tag(alert_rows(other.text)[ids["cm-5"]]) is None

        # Again, from the other line of that message: for fewer days the mute stays as it
        # is (nothing published); the button's 7 days later than it ends moves its end out.
        revision = held.revision
        r = c.post(f"{url}/alerts/{ids['cm-4']}/mute", data={"csrf": csrf, "days": "3"})
        assert r.status_code == 303
        assert mutes(setup) == [made]
        assert audit(setup, "alert-mute")[0]["detail"]["outcome"] == "unchanged"
        assert retained(broker, DEVICE).revision == revision
        r = c.post(f"{url}/alerts/{ids['cm-4']}/mute", data={"csrf": csrf, "days": "7"})
        assert r.status_code == 303
        [made] = mutes(setup)
        assert audit(setup, "alert-mute")[0]["detail"]["outcome"] == "extended"
        held = retained(broker, DEVICE)
        assert held.revision > revision and held.mutes[0].expires == made["expires_at"]
        assert muted_here(c.get(url).text)[made["id"]][3] == when(made["expires_at"])

        # On every device: not with a deploy token (one such mute quiets the whole fleet;
        # review, December 2026): the page offers no such choice, and a forged form is
        # refused, saying what is needed, with nothing muted or published.
        page = c.get(url)
        assert 'name="all_devices"' not in page.text and 'name="any_source"' in page.text
        r = c.post(f"{url}/alerts/{ids['cm-2']}/mute", data={
            "csrf": csrf, "days": "1", "all_devices": "on"})
        assert r.status_code == 403 and "needs &#39;admin&#39;" in r.text, r.text
        assert mutes(setup) == [made]
        with pytest.raises(TimeoutError):
            retained(broker, OTHER, timeout=1.0)

        # The form's optional fields, by an operator who also holds admin: on every
        # device, from any source, for a day, with a reason; every device's list carries
        # it, and its row says so.
        with console(setup, operator_token(setup, "duty-admin", "deploy", "admin"),
                      url) as admin:
            page = admin.get(url)
            assert 'name="all_devices"' in page.text
            r = admin.post(f"{url}/alerts/{ids['cm-2']}/mute", data={
                "csrf": csrf_of(page.text), "days": "1", "all_devices": "on",
                "any_source": "on", "reason": " flaky hub "})
        assert r.status_code == 303
        everywhere = mutes(setup)[0]
        assert (everywhere["device_id"], everywhere["source"], everywhere["reason"]) == (
            None, None, "flaky hub")
        assert everywhere["expires_at"] <= time.time() + DAY
        assert [m.id for m in retained(broker, DEVICE).mutes] == [everywhere["id"], made["id"]]
        assert [m.id for m in retained(broker, OTHER).mutes] == [everywhere["id"]]
        assert audit(setup, "alert-mute")[0]["subject"] == "every device"
        page = c.get(url)
        assert list(muted_here(page.text)) == [everywhere["id"], made["id"]]
        assert muted_here(page.text)[everywhere["id"]] == [
            message_shape(USB), "any", "every device", when(everywhere["expires_at"]),
            "flaky hub", "duty-admin", "unmute everywhere"]
        assert "muted on every device" in (muted_tag(alert_rows(page.text)[ids["cm-2"]]) or "")
        other = c.get(page_url(OTHER))
        assert list(muted_here(other.text)) == [everywhere["id"]]

        # Unmute: the row goes, the device gets a newer list without it, audited.
        revision = retained(broker, DEVICE).revision
        r = c.post(f"{url}/mutes/{made['id']}/unmute", data={"csrf": csrf})
        assert r.status_code == 303 and r.headers["location"] == url
        assert [m["id"] for m in mutes(setup)] == [everywhere["id"]]
        lifted = retained(broker, DEVICE)
        assert lifted.revision > revision
        assert [m.id for m in lifted.mutes] == [everywhere["id"]]
        [entry] = audit(setup, "alert-unmute")
        assert (entry["actor"], entry["subject"], entry["detail"]["mute"]) == (
            "night-shift", DEVICE, made["id"])
        page = c.get(url)
        assert list(muted_here(page.text)) == [everywhere["id"]]
        assert muted_tag(alert_rows(page.text)[ids["cm-1"]]) is None

        # Lifting the every-device mute from this device's page lifts it everywhere.
        r = c.post(f"{url}/mutes/{everywhere['id']}/unmute", data={"csrf": csrf})
        assert r.status_code == 303
        assert mutes(setup) == []
        assert retained(broker, DEVICE).mutes == [] and retained(broker, OTHER).mutes == []
        page = c.get(url)
        assert muted_here(page.text) == {} and unmute_forms(page.text) == []
        revisions = [MuteList.model_validate_json(m.payload).revision
                     for m in watch.messages if m.topic == mutes_topic(DEVICE)]
        assert revisions == sorted(revisions) and revisions
    watch.close()


def test_a_cut_line_is_muted_by_the_start_of_its_shape(
        fleet: tuple[FleetSetup, Mosquitto]) -> None:
    """A 900-character JSON line, kept cut: its button makes a prefix mute, which the
    device's retained list carries as one (``"prefix": true``) and the page shows as the
    start of a shape ("…"); it tags the same message with other values, not another message
    that begins alike."""
    setup, broker = fleet
    ids = alert_ids(setup)
    url = page_url(DEVICE)
    start = prefix_shape(WRITE[:ALERT_TEXT_CHARS])
    with console(setup, operator_token(setup, "json-shift", "deploy"), url) as c:
        page = c.get(url)
        row = alert_rows(page.text)[ids["cm-3"]]
        assert "the server kept this line cut, so the mute names the start of its shape" in row
        r = c.post(f"{url}/alerts/{ids['cm-3']}/mute",
                   data={"csrf": csrf_of(page.text), "days": "7"})
        assert r.status_code == 303
        [made] = mutes(setup)
        assert (made["shape"], made["prefix"], made["source"]) == (start, True, "app")
        reader = Collector(broker.port, [mutes_topic(DEVICE)])
        try:
            payload = reader.wait_for(bool)[0].payload
        finally:
            reader.close()
        [sent] = json.loads(payload)["mutes"]
        assert (sent["id"], sent["shape"], sent["prefix"]) == (made["id"], start, True)
        assert retained(broker, DEVICE).mutes[0].matches("app", message_shape(WRITE_AGAIN))

        page = c.get(url)
        [(shape, *_)] = muted_here(page.text).values()
        assert shape == start + "…"
        table = alert_rows(page.text)
        for msg_id in ("cm-3", "cm-7"):
            assert muted_tag(table[ids[msg_id]]) == (
                f"its message is muted here until {when(made['expires_at'])} (by json-shift)")
        for msg_id in ("cm-1", "cm-6", "cm-8"):
            assert muted_tag(table[ids[msg_id]]) is None
        r = c.post(f"{url}/mutes/{made['id']}/unmute", data={"csrf": csrf_of(page.text)})
        assert r.status_code == 303 and mutes(setup) == []


def test_refused_and_forged_mute_forms_change_nothing(
        fleet: tuple[FleetSetup, Mosquitto]) -> None:
    setup, broker = fleet
    ids = alert_ids(setup)
    url = page_url(DEVICE)
    # A mute of the other device, made through the API: not this page's to lift.
    r = api(setup, "POST", f"/api/v1/alerts/{ids['cm-5']}/mute", json={})
    assert r.status_code in (200, 201), r.text
    foreign = r.json()["id"]
    with console(setup, operator_token(setup, "day-shift", "deploy"), url) as c:
        csrf = csrf_of(c.get(url).text)
        state = (mutes(setup), len(audit(setup, "alert-mute")),
                 len(audit(setup, "alert-unmute")), retained(broker, OTHER))

        # Alerts this page does not list (unknown, another device's): the console's notice.
        for alert_id in (999_999, ids["cm-5"]):
            r = c.post(f"{url}/alerts/{alert_id}/mute", data={"csrf": csrf})
            assert r.status_code == 404
            assert notice(r.text) == (
                f"no alert {alert_id} on device {DEVICE}: the server keeps alerts for a "
                "while only (the table lists those it has)")
        # What mute_alert refuses, in its own words.
        r = c.post(f"{url}/alerts/{ids['cm-6']}/mute", data={"csrf": csrf})
        assert r.status_code == 422 and "probably cut" in notice(r.text)
        assert "fewer than the 200 a mute of a line's start needs" in notice(r.text)
        assert muted_here(r.text) == {}  # the page itself, with its lists
        for days in ("0", "91", "seven", "7.5", "-1", "1e1"):
            r = c.post(f"{url}/alerts/{ids['cm-1']}/mute", data={"csrf": csrf, "days": days})
            assert r.status_code == 422, days
            assert notice(r.text).startswith("days must be a whole number from 1 to 90"), days
        r = c.post(f"{url}/alerts/{ids['cm-1']}/mute", data={"csrf": csrf, "reason": "r" * 201})
        assert r.status_code == 422 and "at most 200" in notice(r.text)
        # Mutes this page does not list: unknown, or another device's own.
        for mute_id in ("0123456789abcdef", foreign, "f" * 64):
            r = c.post(f"{url}/mutes/{mute_id}/unmute", data={"csrf": csrf})
            assert r.status_code == 404, mute_id
            assert notice(r.text).startswith("no mute ") and "applies to device gw-m1" in \
                notice(r.text)

        # Forms without the session's CSRF token, or with a wrong one.
        for data in ({}, {"csrf": "x" * len(csrf)}, {"csrf": csrf[:-1]}):
            r = c.post(f"{url}/alerts/{ids['cm-1']}/mute", data=data)
            assert r.status_code == 403 and "missing or wrong CSRF token" in r.text
            r = c.post(f"{page_url(OTHER)}/mutes/{foreign}/unmute", data=data)
            assert r.status_code == 403 and "missing or wrong CSRF token" in r.text
        assert state == (mutes(setup), len(audit(setup, "alert-mute")),
                         len(audit(setup, "alert-unmute")), retained(broker, OTHER))
    assert api(setup, "DELETE", f"/api/v1/mutes/{foreign}").status_code == 204


def test_a_reader_sees_the_mutes_but_cannot_mute_or_lift(
        fleet: tuple[FleetSetup, Mosquitto]) -> None:
    setup, broker = fleet
    ids = alert_ids(setup)
    url = page_url(DEVICE)
    r = api(setup, "POST", f"/api/v1/alerts/{ids['cm-1']}/mute",
            json={"reason": "scanner on the LAN"})
    assert r.status_code == 201, r.text
    made = r.json()
    state = (mutes(setup), len(audit(setup, "alert-mute")), retained(broker, DEVICE))
    with console(setup, operator_token(setup, "viewer", "read"), url) as c:
        page = c.get(url)
        assert page.status_code == 200 and "(read-only)" in page.text
        assert muted_here(page.text) == {made["id"]: [
            message_shape(CLOSED), "sshd", "this device", when(made["expires_at"]),
            "scanner on the LAN", "operator"]}
        assert muted_tag(alert_rows(page.text)[ids["cm-1"]]) is not None
        assert unmute_forms(page.text) == [] and "/unmute" not in page.text
        assert "/mute" not in page.text and "/alerts/" not in page.text
        live = c.get(f"{url}/live", headers={"HX-Request": "true"})
        assert list(muted_here(live.text)) == [made["id"]] and "/mute" not in live.text

        # Forged forms with the reader's own valid CSRF token: refused by scope.
        csrf = csrf_of(page.text)
        r = c.post(f"{url}/alerts/{ids['cm-2']}/mute", data={"csrf": csrf})
        assert r.status_code == 403 and "needs 'deploy'" in html.unescape(r.text)
        r = c.post(f"{url}/mutes/{made['id']}/unmute", data={"csrf": csrf})
        assert r.status_code == 403 and "needs 'deploy'" in html.unescape(r.text)
    assert state == (mutes(setup), len(audit(setup, "alert-mute")), retained(broker, DEVICE))
    assert api(setup, "DELETE", f"/api/v1/mutes/{made['id']}").status_code == 204


def test_a_mute_made_while_the_broker_is_away_is_stored_and_the_page_says_so(
        tmp_path: Path) -> None:
    with alert_fleet_processes(tmp_path) as (setup, broker, server):
        send_alerts(broker, [alert(DEVICE, "away-1", 1, "sshd", CLOSED, "security")])
        [listed] = wait_alerts(setup, 1)
        url = page_url(DEVICE)
        with console(setup, setup.token, url) as c:
            csrf = csrf_of(c.get(url).text)
            broker.stop()
            r = c.post(f"{url}/alerts/{listed['id']}/mute", data={"csrf": csrf})
            assert r.status_code == 202
            assert notice(r.text, "warn").startswith(
                "The mute is stored, but the broker did not acknowledge the device lists")
            [made] = mutes(setup)
            assert list(muted_here(r.text)) == [made["id"]]
            broker.start()
            server.wait_mqtt(timeout=60)
            assert [m.id for m in retained(broker, DEVICE, timeout=30).mutes] == [made["id"]]


def test_the_page_says_how_many_alerts_the_device_held_back(
        fleet: tuple[FleetSetup, Mosquitto]) -> None:
    """What a mute hides stays visible: the device's own count, from its metrics report."""
    setup, broker = fleet
    report = Metrics(seq=1, device_id=OTHER, uptime_s=60.0,
                     counters={"alerts_muted": 12, "alerts_mute_storm": 3}, gauges={})
    sender = Collector(broker.port, ["nanofleet/v1/dev/test-sender/nothing"])
    try:
        sender.publish(metrics_topic(OTHER), report.model_dump_json())
    finally:
        sender.close()
    deadline = time.monotonic() + 15
    while (api(setup, "GET", f"/api/v1/devices/{OTHER}").json().get("metrics") or {}) \
            .get("counters", {}).get("alerts_muted") != 12:
        assert time.monotonic() < deadline, "the server never stored the metrics report"
        time.sleep(0.2)
    with console(setup, operator_token(setup, "reader-m", "read"), page_url(OTHER)) as c:
        page = text_of(c.get(page_url(OTHER)).text)
    assert "Held back by mutes since the agent started: 12 alert(s); sent anyway because " \
           "the shape stormed: 3 (its last metrics report)." in page


def shape_rows(page: str) -> list[tuple[int, list[str]]]:
    """The "Most frequent alerts here" table: (newest alert id, the cells as text) per row."""
    return [(int(m.group(1)), [text_of(c) for c in re.findall(r"<td[^>]*>(.*?)</td>",
                                                             m.group(2), re.S)])
            for m in re.finditer(r'<tr data-shape-alert="(\d+)">(.*?)</tr>', page, re.S)]


def test_the_device_page_ranks_its_most_frequent_alerts(
        fleet: tuple[FleetSetup, Mosquitto]) -> None:
    """Above the alerts, the device's messages that alert most (the API's alert-shapes of
    this device): count with the repeats the agent held back, labels, shape, and whether
    they are judged or muted, so that judging the top rows is quick."""
    setup, broker = fleet
    device = "gw-m3"
    script = "login <script>alert(1)</script> from 10.0.0.7"
    lines = [("sshd", CLOSED, "security", 3), ("sshd", CLOSED_AGAIN, "auth", 0),
             ("kernel", USB, "hardware", 0), ("app", BLOB, "security", 0),
             ("app", WRITE, "storage", 0), ("motd", script, "security", 0)]
    send_alerts(broker, [alert(device, f"{device}-{i}", i, source, text, label)
                         .model_copy(update={"repeats": repeats})
                         for i, (source, text, label, repeats) in enumerate(lines, 1)])
    listed = wait_alerts(setup, len(lines), device)
    assert len(listed) == len(lines), listed
    by_text = {a["text"]: a["id"] for a in listed}
    assert api(setup, "POST", f"/api/v1/alerts/{by_text[USB]}/verdict",
               json={"verdict": "false_alarm"}).status_code == 200
    r = api(setup, "POST", f"/api/v1/alerts/{by_text[CLOSED_AGAIN]}/mute", json={})
    assert r.status_code == 201, r.text
    ranked = api(setup, "GET", "/api/v1/alert-shapes", params={"device": device}).json()
    url = page_url(device)
    with console(setup, operator_token(setup, "reader-shapes", "read"), url) as c:
        page = c.get(url).text
        live = c.get(f"{url}/live", headers={"HX-Request": "true"}).text
    assert "Most frequent alerts here" in page and "<script>" not in page
    assert "<code class=\"shape\">login &lt;script&gt;alert(#)&lt;/script&gt; from #</code>" in page
    assert page.index("Most frequent alerts here") < page.index('<table class="alerts">')
    rows = shape_rows(page)
    assert [alert_id for alert_id, _ in rows] == [g["alert_id"] for g in ranked["shapes"]]
    top_id, top = rows[0]  # 2 alerts, and 3 the agent held back: the most
    assert top_id == by_text[CLOSED_AGAIN]
    assert (top[0], top[1], top[3]) == ("5", "security 4, auth 1", "not judged muted")
    ago = r"(\d+ (s|min) ago|just now)"
    assert re.fullmatch(re.escape(f"{message_shape(CLOSED)} sshd · last ") + ago
                        + re.escape(f" · newest alert {top_id}"), top[2]), top[2]
    state = {alert_id: cells[3] for alert_id, cells in rows}
    assert state[by_text[USB]] == "false alarm 1"
    assert state[by_text[BLOB[:ALERT_TEXT_CHARS]]] == "not judged can't be muted"
    cut = dict(rows)[by_text[WRITE[:ALERT_TEXT_CHARS]]]
    assert cut[2].startswith(prefix_shape(WRITE[:ALERT_TEXT_CHARS]) + "… app")
    # The live fragment comes a moment later: "last 0 s ago" may have become "1 s ago"
    # (CI saw exactly that); everything else is the same.

    def aged(rs: list[tuple[int, list[str]]]) -> list[tuple[int, list[str]]]:
        return [(i, [re.sub(ago, "(age)", cell) for cell in cells]) for i, cells in rs]

    assert aged(shape_rows(live)) == aged(rows)
    assert api(setup, "DELETE", f"/api/v1/mutes/{r.json()['id']}").status_code == 204
