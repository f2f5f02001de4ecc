"""The fleet console in a real headless Chromium, as an operator uses it.

Real parts: ``nanofleet server run`` (the console is part of it), a real Mosquitto, real
signed releases, the real agent (``nanofleet-agent run``) reading a log file, and
simulated devices (hil.simdevice: each its own MQTT connection, the agent's OTA state
machine and reports). Screenshots of every page land in ``test-output/console/``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from agent.enroll import make_csr
from contract.mutes import MuteList, mutes_topic
from fleet_server.console.settings import ConsoleSettings
from hil.fleet import FleetServer, FleetSetup, setup_fleet
from hil.simdevice import Behaviour, SimFleet, make_devices
from nanomodel import default_bundle_path
from tests.support.agent_proc import AgentProcess, write_config
from tests.support.alert_fleet import alert, send_alerts, wait_alerts
from tests.support.browser import browser_page, output_dir, require_browser
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector
from tests.support.rollout_rig import api, publish, relabeled, rollout, wait_devices

pytestmark = pytest.mark.timeout(600)
AGENT = "edge-gw-01"
FAST = Behaviour(step_s=0.05, trial_s=0.2)


@pytest.fixture(scope="module")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    require_browser()
    b = Mosquitto(tmp_path_factory.mktemp("console-broker")).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, mqtt_broker: Mosquitto) -> Iterator[
        FleetSetup]:
    work = tmp_path_factory.mktemp("console-fleet")
    setup = setup_fleet(work, mqtt_port=mqtt_broker.port, rollout_tick_s=0.1,
                        console=ConsoleSettings(refresh_s=0.5, page_size=25))
    server = FleetServer(setup).start()
    try:
        server.wait_mqtt()
        publish(setup, default_bundle_path())
        publish(setup, relabeled(2, work / "v2.nfb"))
        publish(setup, relabeled(3, work / "v3.nfb"))
        yield setup
    finally:
        server.stop()


@pytest.fixture(scope="module")
def viewer_token(fleet: FleetSetup) -> str:
    r = api(fleet, "POST", "/api/v1/tokens", json={"name": "viewer", "scopes": ["read"]})
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Any]:
    with browser_page(tmp_path / "profile") as p:
        yield p


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(output_dir() / f"{name}.png"), full_page=True)


def sign_in(page: Any, setup: FleetSetup, token: str, path: str = "/console/fleet") -> None:
    page.goto(setup.url + path)
    assert "/console/login" in page.url  # not signed in yet: sent to the sign-in page
    page.get_by_label("Operator token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{path}")


def sims(broker: Mosquitto, setup: FleetSetup, prefix: str, count: int, group: str,
         tags: str = "") -> tuple[SimFleet, list[str]]:
    devices = make_devices(prefix, count, behaviour=lambda _i: Behaviour(**vars(FAST)))
    sim = SimFleet(broker.port, devices).start()
    sim.wait_connected()
    ids = [d.device_id for d in devices]
    wait_devices(setup, ids, lambda d: d["state"] == "online")
    body: dict[str, Any] = {"devices": ids, "group": group}
    if tags:
        body["add_tags"] = tags.split(",")
    r = api(setup, "PATCH", "/api/v1/devices", json=body)
    assert r.status_code == 200, r.text
    return sim, ids


class LogWriter:
    """Appends log lines to the agent's file (its real traffic) until stopped."""

    LINES = ("kernel: eth0: link up, 1000 Mbps full duplex",
             "sshd[812]: Failed password for invalid user admin from 203.0.113.7 port 52311",
             "kernel: CPU0: Core temperature above threshold, cpu clock throttled",
             "systemd[1]: Started Daily apt download activities.")

    def __init__(self, path: Path) -> None:
        self.path, self.stop_ = path, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop_.is_set():
            with self.path.open("a") as f:
                for _ in range(5):
                    f.write(f"Dec  3 08:00:{n % 60:02d} gw {self.LINES[n % len(self.LINES)]}\n")
                    n += 1
            time.sleep(0.05)

    def stop(self) -> None:
        self.stop_.set()
        self.thread.join()


def start_agent(tmp: Path, setup: FleetSetup, broker: Mosquitto) -> tuple[AgentProcess, Path]:
    log = tmp / "gw.log"
    log.write_text("")
    config = write_config(tmp / "agent.toml", AGENT, tmp / "state", broker.port, f"""
[model]
slot = "logs"

[alerts]
repeat_window_s = 5.0

[[sources]]
kind = "file"
path = "{log}"

[ota]
metadata_url = "{setup.url}/repo/metadata/"
target_base_url = "{setup.url}/repo/targets/"
root_file = "{setup.root_file}"
""")
    return AgentProcess(config, tmp / "state").start(wait=False), log


def any_rollout(setup: FleetSetup) -> str:
    """A rollout's id: the newest one, or (a test run alone) a new one to a device that
    never connects (it stays running, waiting for it)."""
    found = api(setup, "GET", "/api/v1/rollouts").json()["rollouts"]
    if found:
        return str(found[0]["id"])
    r = api(setup, "POST", "/api/v1/rollouts", json={
        "model": "nano-logs", "version": 2, "select": {"ids": ["ghost-01"]}})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def enroll(setup: FleetSetup, device_id: str) -> str:
    """Enroll ``device_id`` with the server's device CA, as ``nanofleet-agent enroll`` does
    (single-use token with group and tags, a CSR from a fresh key); its serial."""
    r = api(setup, "POST", "/api/v1/enroll-tokens", json={
        "device_id": device_id, "group": "gateways", "tags": ["site-a", "din-rail"]})
    assert r.status_code == 200, r.text
    csr = make_csr(ec.generate_private_key(ec.SECP256R1()), device_id)
    r = httpx.post(setup.url + "/api/v1/enroll", json={
        "token": r.json()["token"], "device_id": device_id, "csr": csr}, timeout=30)
    assert r.status_code == 200, r.text
    serial: str = r.json()["serial"]
    return serial


def plot_points(page: Any, series: str) -> int:
    return int(page.locator(f'.plot[data-series="{series}"]').get_attribute("data-points")
               or 0)


def test_sign_in_new_agent_appears_live_and_its_metrics_plot(
        page: Any, fleet: FleetSetup, mqtt_broker: Mosquitto, tmp_path: Path) -> None:
    setup = fleet
    page.goto(setup.url + "/console/fleet")
    page.get_by_label("Operator token").fill("nfo_not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    assert "token not recognised or revoked" in page.locator("#login-error").inner_text()
    shot(page, "01-sign-in-refused")

    page.get_by_label("Operator token").fill(setup.token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/fleet")
    cookie = next(c for c in page.context.cookies() if c["name"] == "nanofleet_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.locator(f'tr[data-device="{AGENT}"]').count() == 0

    agent, log = start_agent(tmp_path, setup, mqtt_broker)
    writer = LogWriter(log)
    try:
        # No reload: the overview's fragment polls, and the agent's row appears in it.
        page.locator(f'tr[data-device="{AGENT}"]').wait_for(timeout=60_000)
        row = page.locator(f'tr[data-device="{AGENT}"]')
        row.locator(".badge", has_text="online").wait_for()
        assert "logs: nano-logs v1" in row.inner_text()
        serial = enroll(setup, AGENT)
        page.get_by_role("link", name=AGENT).click()
        page.wait_for_url(f"**/console/devices/{AGENT}")
        assert page.locator("h1").inner_text() == AGENT
        # The metrics plot fills as the agent reports (every second): uPlot draws a canvas.
        deadline = time.monotonic() + 60
        while plot_points(page, "lines_per_s") < 3:
            assert time.monotonic() < deadline, page.locator("#metrics-count").inner_text()
            time.sleep(0.5)
        assert page.locator('.plot[data-series="lines_per_s"] canvas').count() >= 1
        assert page.locator('.plot[data-series="rss_mb"] canvas').count() >= 1
        data = json.loads(page.locator("#metrics-data").inner_text())
        assert max(v for v in data["lines_per_s"] if v is not None) > 0
        assert max(v for v in data["rss_mb"] if v is not None) > 10  # a real process's RSS
        page.locator("table.alerts tbody tr td", has_text="Failed password").first.wait_for(
            timeout=30_000)
        assert "onnxruntime" in page.locator("section", has_text="Live models").inner_text()
        identity = page.locator("section", has_text="Certificate serial").inner_text()
        assert serial in identity and "gateways" in identity and "din-rail" in identity
        time.sleep(2)  # a few more points for the picture
        shot(page, "03-device")
    finally:
        writer.stop()
        agent.stop()


def test_create_a_rollout_in_the_form_and_watch_it_complete(
        page: Any, fleet: FleetSetup, mqtt_broker: Mosquitto) -> None:
    setup = fleet
    sim, ids = sims(mqtt_broker, setup, "pump-", 12, "pumps", "eu,field")
    try:
        sign_in(page, setup, setup.token)
        page.get_by_label("Group").select_option("pumps")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**group=pumps**")
        assert page.locator("tr[data-device]").count() == 12
        page.get_by_label("Device id contains").fill("pump-0003")
        page.get_by_role("button", name="Filter").click()
        assert page.locator("tr[data-device]").count() == 1
        page.goto(setup.url + "/console/fleet")
        shot(page, "02-fleet")

        page.get_by_role("link", name="Releases").click()
        assert page.locator("table").first.locator("text=v3").count() >= 1
        shot(page, "04-releases")
        page.get_by_role("link", name="Roll out…").first.click()
        page.wait_for_url("**/console/rollouts/new?model=nano-logs&version=*")
        page.get_by_label("Model", exact=True).select_option("nano-logs")
        page.get_by_label("Version").fill("2")
        page.get_by_label("a group").check()
        page.get_by_label("Group", exact=True).fill("pumps")
        page.get_by_label("Canary size").fill("2")
        page.get_by_label("Waves").fill("50,20")  # a bad value: waves must increase
        page.get_by_label("Soak").fill("0")
        page.get_by_label("Failure threshold").fill("2")
        page.get_by_role("button", name="Create rollout").click()
        error = page.locator("#n-waves-error")
        assert "wave percentages must increase" in error.inner_text()
        assert page.get_by_label("Waves").get_attribute("aria-invalid") == "true"
        assert page.get_by_label("Version").input_value() == "2"  # nothing typed is lost
        shot(page, "05-rollout-form-error")
        page.get_by_label("Waves").fill("50,100")
        page.get_by_role("button", name="Create rollout").click()
        page.wait_for_url("**/console/rollouts/r-*")
        rid = page.url.rsplit("/", 1)[-1]
        # Watched live: the fragment polls until the rollout completes.
        page.locator('#rollout-live[data-status="completed"]').wait_for(timeout=60_000)
        r = rollout(setup, rid)
        assert r["status"] == "completed" and r["counts"]["committed"] == 12
        page.get_by_role("link", name="pump-0001").click()
        timeline = page.locator("ol.timeline")
        assert "committed" in timeline.inner_text() and rid in timeline.inner_text()
        shot(page, "03b-device-ota-history")
        page.go_back()
        assert page.locator(".stage").count() == 3  # canary, 50 %, 100 %
        assert "12 of 12 committed" in page.locator(".status-card").inner_text()
        shot(page, "06-rollout-completed")
        page.goto(setup.url + "/console/releases/nano-logs/2")
        assert "12 device(s) run it" in page.locator("#h-where").inner_text()
        release = page.locator("section", has_text="Signed minimum version").inner_text()
        assert ("ones that read known_programs, level_offsets, tokenizer.head:time-host-v1"
                in release)
        shot(page, "07-release")
        page.goto(setup.url + "/console/audit")
        page.get_by_label("Did").select_option("rollout-create")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**action=rollout-create**")
        assert page.locator("table.audit tbody tr", has_text=rid).count() == 1
        assert page.locator("table.audit tbody tr").count() == 1
    finally:
        sim.stop()


def test_pause_and_resume_a_rollout(page: Any, fleet: FleetSetup,
                                    mqtt_broker: Mosquitto) -> None:
    setup = fleet
    sim, ids = sims(mqtt_broker, setup, "valve-", 6, "valves")
    try:
        sign_in(page, setup, setup.token, "/console/rollouts/new")
        page.get_by_label("Model", exact=True).select_option("nano-logs")
        page.get_by_label("Version").fill("3")
        page.get_by_label("Group", exact=True).fill("valves")
        page.get_by_label("Canary size").fill("1")
        page.get_by_label("Waves").fill("100")
        page.get_by_label("Soak").fill("4s")
        page.get_by_role("button", name="Create rollout").click()
        page.wait_for_url("**/console/rollouts/r-*")
        rid = page.url.rsplit("/", 1)[-1]
        page.get_by_role("button", name="Pause").click()
        page.locator('#rollout-live[data-status="paused"]').wait_for()
        assert rollout(setup, rid)["status"] == "paused"
        time.sleep(5)  # longer than the soak: a paused rollout starts no stage
        r = rollout(setup, rid)
        assert r["status"] == "paused" and r["counts"]["pending"] >= 5
        shot(page, "08-rollout-paused")
        page.goto(setup.url + "/console/fleet")
        live = page.locator("section", has_text="Rollouts in progress")
        assert rid in live.inner_text() and "paused" in live.inner_text()
        shot(page, "02b-fleet-rollout-in-progress")
        page.goto(setup.url + f"/console/rollouts/{rid}")
        page.get_by_role("button", name="Resume").click()
        page.locator('#rollout-live[data-status="completed"]').wait_for(timeout=60_000)
        assert rollout(setup, rid)["counts"]["committed"] == 6
        page.goto(setup.url + "/console/rollouts")
        assert page.locator("tr", has_text=rid).locator(".badge", has_text="completed").count()
        shot(page, "10-rollouts")
        page.goto(setup.url + "/console/audit")
        assert page.locator("table.audit tbody tr", has_text="rollout-pause").count() == 1
        shot(page, "09-audit")
    finally:
        sim.stop()


def test_a_halted_rollout_shows_why_and_abort_asks_first(
        page: Any, fleet: FleetSetup, mqtt_broker: Mosquitto) -> None:
    setup = fleet
    bad = Behaviour(step_s=0.05, trial_s=0.2, fail_at="trial", fail_reason="health-collapse")
    devices = make_devices("fan-", 4, behaviour=lambda _i: Behaviour(**vars(bad)))
    sim = SimFleet(mqtt_broker.port, devices).start()
    try:
        sim.wait_connected()
        ids = [d.device_id for d in devices]
        wait_devices(setup, ids, lambda d: d["state"] == "online")
        sign_in(page, setup, setup.token, "/console/rollouts/new")
        page.get_by_label("Model", exact=True).select_option("nano-logs")
        page.get_by_label("Version").fill("2")
        page.get_by_role("radio", name="device ids").check()
        page.get_by_role("textbox", name="Device ids").fill(" ".join(ids))
        page.get_by_label("Canary size").fill("1")
        page.get_by_label("Soak").fill("0")
        page.get_by_label("Failure threshold").fill("0")
        page.get_by_role("button", name="Create rollout").click()
        page.wait_for_url("**/console/rollouts/r-*")
        rid = page.url.rsplit("/", 1)[-1]
        page.locator('#rollout-live[data-status="halted"]').wait_for(timeout=60_000)
        notice = page.locator(".status-card .notice").inner_text()
        assert "Halted: failure-threshold" in notice and "health-collapse" in notice
        assert page.locator("td", has_text="health-collapse").count() == 1  # the canary
        shot(page, "13-rollout-halted")
        page.once("dialog", lambda d: d.dismiss())  # asked first; "no" changes nothing
        page.get_by_role("button", name="Abort").click()
        time.sleep(1)
        assert rollout(setup, rid)["status"] == "halted"
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Abort").click()
        page.locator('#rollout-live[data-status="aborted"]').wait_for()
        assert rollout(setup, rid)["status"] == "aborted"
    finally:
        sim.stop()


def test_read_only_token_sees_everything_and_can_change_nothing(
        page: Any, fleet: FleetSetup, viewer_token: str) -> None:
    setup = fleet
    sign_in(page, setup, viewer_token)
    assert "(read-only)" in page.locator(".who").inner_text()
    rid = any_rollout(setup)
    page.goto(setup.url + "/console/rollouts")
    assert page.get_by_role("link", name="New rollout…").count() == 0
    page.goto(setup.url + f"/console/rollouts/{rid}")
    assert page.get_by_role("button", name="Pause").count() == 0
    assert page.locator(".stage").count() >= 1  # sees everything
    shot(page, "12-read-only-rollout")
    page.goto(setup.url + "/console/releases")
    assert page.get_by_role("link", name="Roll out…").count() == 0
    # Asked for anyway: refused with the scope it lacks.
    response = page.goto(setup.url + "/console/rollouts/new")
    assert response is not None and response.status == 403
    assert "needs 'deploy'" in page.locator(".notice").inner_text()
    shot(page, "11-read-only-refused")
    # A forged POST with the session's own CSRF token: refused by scope, nothing changes.
    page.goto(setup.url + "/console/fleet")
    csrf = page.locator('.who input[name="csrf"]').get_attribute("value")
    before = len(api(setup, "GET", "/api/v1/rollouts").json()["rollouts"])
    r = page.request.post(setup.url + "/console/rollouts", form={
        "csrf": csrf, "model": "nano-logs", "version": "2", "target": "all"})
    assert r.status == 403
    assert len(api(setup, "GET", "/api/v1/rollouts").json()["rollouts"]) == before


def test_forms_without_the_csrf_token_are_refused_and_sign_out_ends_the_session(
        page: Any, fleet: FleetSetup) -> None:
    setup = fleet
    sign_in(page, setup, setup.token)
    rid = any_rollout(setup)
    r = page.request.post(setup.url + f"/console/rollouts/{rid}/abort", form={"csrf": "x"})
    assert r.status == 403 and "CSRF" in r.text()
    r = page.request.post(setup.url + f"/console/rollouts/{rid}/abort")
    assert r.status == 403
    other = page.context.new_page()  # a second tab, polling the overview
    other.goto(setup.url + "/console/fleet")
    page.get_by_role("button", name="Sign out").click()
    # This tab polls the overview too: a poll that lands between the sign-out and its
    # redirect finds no session and goes to the sign-in page first, with ?next= (seen
    # once in a full run), so either URL is the sign-in page.
    page.wait_for_url("**/console/login**")
    # The other tab's next poll finds no session and goes to the sign-in page by itself.
    other.wait_for_url("**/console/login**", timeout=15_000)
    page.goto(setup.url + "/console/audit")
    assert "/console/login" in page.url
    shot(page, "00-sign-in")
    # The API is untouched by the console: same token, same answers.
    assert httpx.get(setup.url + "/api/v1/health").status_code == 200
    assert api(setup, "GET", "/api/v1/audit", params={"action": "console-sign-in"}).json()[
        "entries"]


def test_mute_an_alert_for_the_days_and_devices_chosen(
        page: Any, fleet: FleetSetup, mqtt_broker: Mosquitto) -> None:
    """The device page's mute options sit outside its refreshed part: chosen, they survive
    refreshes, and the "mute" button of an alert sends them; the device's list and every
    other device's carry the mute."""
    setup, device = fleet, "mute-gw-01"
    line = "sshd[812]: Connection closed by 192.0.2.44 port 50122 [preauth]"
    send_alerts(mqtt_broker, [alert(device, "mute-browser-1", 1, "sshd", line, "security")])
    [made] = wait_alerts(setup, 1, device)
    watch = Collector(mqtt_broker.port, [mutes_topic(device)])
    try:
        sign_in(page, setup, setup.token, f"/console/devices/{device}")
        page.get_by_label("Mute for").select_option("30")
        page.get_by_label("on every device").check()
        page.get_by_label("Reason").fill("scanner on the LAN")
        time.sleep(1.5)  # three refreshes of the live part (refresh_s 0.5) keep the choice
        assert page.get_by_label("Mute for").input_value() == "30"
        before = time.time()
        row = page.locator(f'tr[data-alert="{made["id"]}"]')
        row.get_by_role("button", name="mute").click()
        page.wait_for_url(f"**/console/devices/{device}")
        page.locator(f'tr[data-alert="{made["id"]}"] .mute-tag').wait_for()
        [mute] = [m for m in api(setup, "GET", "/api/v1/mutes").json()["mutes"]
                  if m["alert_id"] == made["id"]]
        assert mute["device_id"] is None and mute["source"] == "sshd"
        assert mute["reason"] == "scanner on the LAN"
        assert before + 30 * 86_400 - 5 <= mute["expires_at"] <= time.time() + 30 * 86_400
        assert "every device" in page.locator("table.mutes").inner_text()
        shot(page, "14-device-muted")
        got = watch.wait_for(lambda ms: any(
            mute["id"] in m.payload.decode() for m in ms), 15)
    finally:
        watch.close()
    held = MuteList.model_validate_json(got[-1].payload)  # the list the device takes
    assert [m.id for m in held.mutes if m.id == mute["id"]] == [mute["id"]]


def test_right_with_the_category_chosen_files_the_line_under_it(
        page: Any, fleet: FleetSetup, mqtt_broker: Mosquitto) -> None:
    """The model called a failing SD card "hardware"; the operator says "right" but
    files the line under storage, chosen in the page's Judging card (outside its refreshed
    part), and the labelled lines the next fine-tune reads carry storage."""
    setup, device = fleet, "judge-gw-01"
    line = "kernel: mmc0: Card stuck in wrong state! card_busy_detect status: 0xe00"
    send_alerts(mqtt_broker, [alert(device, "judge-browser-1", 1, "kernel", line,
                                    "hardware")])
    [made] = wait_alerts(setup, 1, device)
    sign_in(page, setup, setup.token, f"/console/devices/{device}")
    page.get_by_label('"right" files the line as').fill("storage")
    time.sleep(1.0)  # refreshes of the live part keep the choice
    page.locator(f'tr[data-alert="{made["id"]}"]').get_by_role("button", name="right").click()
    page.wait_for_url(f"**/console/devices/{device}")
    verdict = page.locator(f'tr[data-alert="{made["id"]}"] .judged')
    verdict.wait_for()
    assert verdict.inner_text() == "right → storage"
    r = api(setup, "GET", "/api/v1/labelled-lines", params={"device": device})
    assert [json.loads(x) for x in r.text.splitlines()] == [{"text": line, "label": "storage"}]


UNLABELLED_JS = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button'))
  .filter(c => !(c.labels && c.labels.length) && !c.getAttribute('aria-label')
               && !(c.tagName === 'BUTTON' && c.textContent.trim()))
  .map(c => c.outerHTML.slice(0, 80))"""
UNNAMED_CHARTS_JS = """() => Array.from(document.querySelectorAll('svg[role=img]'))
  .filter(s => !s.getAttribute('aria-label')).length"""


def test_every_page_labels_its_controls_and_works_from_the_keyboard(
        page: Any, fleet: FleetSetup) -> None:
    setup = fleet
    sign_in(page, setup, setup.token)
    rid = any_rollout(setup)
    r = api(setup, "PATCH", "/api/v1/devices", json={"devices": ["a11y-01"], "group": "a11y",
                                                          "create": True})
    assert r.status_code == 200, r.text
    for path in ("/console/fleet", "/console/devices/a11y-01", "/console/releases",
                 "/console/releases/nano-logs/2", "/console/rollouts", "/console/rollouts/new",
                 f"/console/rollouts/{rid}", "/console/audit"):
        response = page.goto(setup.url + path)
        assert response is not None and response.status == 200, path
        assert page.evaluate(UNLABELLED_JS) == [], path
        assert page.evaluate(UNNAMED_CHARTS_JS) == 0, path
        assert page.locator("h1").count() == 1, path
    # Keyboard: the first Tab reaches the skip link, which moves focus to the content.
    page.goto(setup.url + "/console/fleet")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    # Filtering with the keyboard alone: focus the search box, type, Enter.
    page.get_by_label("Device id contains").focus()
    page.keyboard.type("a11y-01")
    page.keyboard.press("Enter")
    page.wait_for_url("**q=a11y-01**")
    assert page.locator("tr[data-device]").count() == 1


def test_session_cookie_is_secure_when_served_over_tls(fleet: FleetSetup) -> None:
    """Behind a TLS proxy (X-Forwarded-Proto: https) the cookies carry Secure; the API
    is not affected by the console (bearer tokens as before, JSON errors)."""
    setup = fleet
    with httpx.Client(base_url=setup.url, headers={"X-Forwarded-Proto": "https"}) as c:
        form = c.get("/console/login")
        login_cookie = form.headers["set-cookie"]
        assert "Secure" in login_cookie
        assert "default-src 'self'" in form.headers["content-security-policy"]
        nonce = form.text.split('name="login_csrf" value="', 1)[1].split('"', 1)[0]
        # httpx keeps Secure cookies for https:// only: hand the sign-in cookie back as the
        # browser behind the proxy would.
        r = c.post("/console/login", headers={"Cookie": login_cookie.split(";", 1)[0]},
                   data={"token": setup.token, "login_csrf": nonce,
                         "next": "https://elsewhere.example/"})
        assert r.status_code == 303 and r.headers["location"] == "/console/fleet"
        cookie = next(h for h in r.headers.get_list("set-cookie")
                      if h.startswith("nanofleet_console="))
        assert {"HttpOnly", "Secure", "SameSite=strict", "Path=/console"} <= {
            p.strip() for p in cookie.split(";")}
        session = {"Cookie": cookie.split(";", 1)[0]}
        assert c.get("/console/fleet", headers=session).status_code == 200
        # The session cookie is no API credential.
        assert c.get("/api/v1/devices", headers=session).status_code == 401
    with httpx.Client(base_url=setup.url) as c:
        assert "Secure" not in c.get("/console/login").headers["set-cookie"]
    assert api(setup, "GET", "/api/v1/devices").status_code == 200
