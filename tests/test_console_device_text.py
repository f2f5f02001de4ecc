"""Text a device chose, on the console's device page: a bidi override or an invisible
mark in a log line no longer makes the line read differently from what it says (review,
December 2026: `Invalid user \u202eresu-tseug` showed as "guest-user"). A real `nanofleet
server run`, a real Mosquitto, the alert sent over MQTT as a device sends it. Also: where
signing in sends the browser (the sign-in's ``next``, another value a link can carry)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from contract import topics
from contract.messages import ModelInfo, OtaEvent, Status
from hil.fleet import FleetSetup
from tests.support.alert_fleet import alert, alert_fleet, api, send_alerts, wait_alerts
from tests.support.console_client import console, operator_token
from tests.support.mqtt_client import Collector

DEVICE = "gw-09"
TEXT = ("Invalid user \u202eresu-tseug\u202c from 203.0.113.7 port 22\u2066 sshd \u00b7 "
        "label normal\u2069 zero\u200bwidth")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetSetup]:
    with alert_fleet(tmp_path_factory.mktemp("console-text")) as (setup, broker):
        send_alerts(broker, [alert(DEVICE, "bidi-1", 1, "sshd", TEXT, "security",
                                   "label security >= 0.80", anomaly=0.97)])
        assert [a["text"] for a in wait_alerts(setup, 1)] == [TEXT]  # stored as sent
        # A device names its models and its OTA reports' rollouts.
        sender = Collector(broker.port, ["nanofleet/v1/dev/test-sender/nothing"])
        try:
            sender.publish(topics.status(DEVICE), Status(
                seq=1, device_id=DEVICE, state="online", models=[ModelInfo(
                    slot="logs", name="../../rollouts/evil", version=1, label="v1",
                    runtime="onnxruntime", sha256="a" * 64), ModelInfo(
                    slot="sensors", name="..", version=2, label="v2",
                    runtime="onnxruntime", sha256="b" * 64)],
                reads=["level_offsets\u2066", "tokenizer.head:time-host-v1"]).model_dump_json())
            sender.publish(topics.ota(DEVICE), OtaEvent(
                seq=1, device_id=DEVICE, slot="logs", state="failed",
                rollout_id="../../audit").model_dump_json())
        finally:
            sender.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            got = api(setup, "GET", f"/api/v1/devices/{DEVICE}").json()
            if got.get("models") and got.get("ota_events"):
                break
            time.sleep(0.2)
        yield setup


def test_control_and_bidi_characters_are_shown_not_obeyed(fleet: FleetSetup) -> None:
    url = f"/console/devices/{DEVICE}"
    with console(fleet, operator_token(fleet, "reader", "read"), url) as c:
        page = c.get(url)
    assert page.status_code == 200
    for mark in ("\u202e", "\u202c", "\u2066", "\u2069", "\u200b"):
        assert mark not in page.text, repr(mark)
    assert "Invalid user ?resu-tseug? from 203.0.113.7 port 22? sshd" in page.text
    assert "zero?width" in page.text
    assert "level_offsets?, tokenizer.head:time-host-v1" in page.text  # what it reads


def test_names_a_device_chose_stay_one_segment_of_their_links(fleet: FleetSetup) -> None:
    """Before (review, December 2026) `../../rollouts/evil` as a model name made the
    release link point at another console page."""
    url = f"/console/devices/{DEVICE}"
    with console(fleet, operator_token(fleet, "reader2", "read"), url) as c:
        page = c.get(f"{url}/live").text + c.get(url).text
    assert "/releases/..%2F..%2Frollouts%2Fevil/1" in page, page
    assert "/rollouts/..%2F..%2Faudit" in page
    assert 'href="/console/releases/../' not in page and 'rollouts/../' not in page
    # A name that is only a dot segment: no link one page up.
    assert 'href="/console/releases/-/2"' in page, page
    assert "/releases/../2" not in page and "/releases/%2E%2E/2" not in page


@pytest.mark.parametrize("target", [
    "/console/../api/v1/devices", "/console/%2e%2e/api/v1/devices",
    "/console/.%2E/metrics", "/console/devices/./../../x", "/console/\x00",
    "https://elsewhere.example/", "//elsewhere.example/console/", "/console\\..\\x"])
def test_signing_in_never_sends_the_browser_out_of_the_console(fleet: FleetSetup,
                                                                target: str) -> None:
    """``next`` after sign-in: before (review, December 2026) ``/console/../api/...``
    passed the prefix check and the browser resolved it to a page outside the console."""
    with httpx.Client(base_url=fleet.url, timeout=30) as client:
        form = client.get("/console/login")
        nonce = form.text.split('name="login_csrf" value="', 1)[1].split('"', 1)[0]
        r = client.post("/console/login", data={"token": fleet.token, "login_csrf": nonce,
                                                "next": target})
        assert r.status_code == 303 and r.headers["location"] == "/console/fleet"


def test_a_console_page_with_a_query_is_still_where_signing_in_goes(fleet: FleetSetup) -> None:
    target = "/console/devices/gw-09?events=5&q=a..b"
    with console(fleet, fleet.token, next_path=target) as client:
        assert client.get(target).status_code == 200
