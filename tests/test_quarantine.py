"""A device that floods the fleet server is quarantined at the broker, and let back.

Before (docs/security-transport.md, "Residual"), a device certificate publishing reports
faster than the server reads them overflowed the broker's bounded queue for the server's
session, and the broker dropped other devices' reports there for as long as the flood
lasted; the server could only name the device in its log. Now the server denies such a
device every topic in the device ACL and reloads the broker (fleet_server/identity/
quarantine.py), for a while that doubles for repeat floods; operators can quarantine and
release devices themselves.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contract import topics
from contract.messages import OtaEvent, Status
from fleet_server.broker_config import render_acl
from fleet_server.config import ServerConfig
from fleet_server.db import AuditEntry, Database, Device
from fleet_server.flood_alarm import FloodAlarm
from fleet_server.identity.quarantine import FLOOD_ACTOR, Quarantines, quarantine_seconds
from fleet_server.identity.service import IdentityService
from fleet_server.identity.settings import EnrollmentSettings
from fleet_server.identity.tables import DeviceQuarantine
from fleet_server.identity.tokens import EnrollmentRefused
from fleet_server.report_budget import FloodWatch
from fleet_server.rollouts.driver import live_view
from hil import postgres
from tests.support.console_client import console, csrf_of, operator_token
from tests.support.enrolled_fleet import Client, EnrolledFleet, start_enrolled_fleet
from tests.support.rollout_rig import MODEL, api, publish, relabeled

NOT_AUTHORIZED = 135  # MQTT v5 reason code: the broker's ACL refused the publish
GOOD_EVENTS = 40  # a healthy device's OTA events sent during the flood


# --- the pure rules ----------------------------------------------------------------------

def test_a_device_is_marked_flooding_once_per_run() -> None:
    watch = FloodWatch(reports=3, min_span_s=10, max_gap_s=5)
    assert [watch.shed("evil", 100.0 + 4 * i) for i in range(5)] == [False, False, False,
                                                                     True, False]
    assert not watch.shed("pump-07", 101.0)  # its own count
    # A pause longer than max_gap_s ends the run; the next one is counted afresh.
    assert [watch.shed("evil", 200.0 + 4 * i) for i in range(5)] == [False, False, False,
                                                                     True, False]
    # Slower than one in max_gap_s: never.
    slow = FloodWatch(reports=3, min_span_s=10, max_gap_s=5)
    assert not any(slow.shed("pump-08", 6.0 * i) for i in range(20))


def test_a_burst_is_not_a_flood() -> None:
    """An agent back from a long outage sends its spooled alerts as fast as the broker takes
    them: thousands shed in seconds, then nothing, then a few now and then. Not
    quarantined; shedding that goes on for min_span_s is."""
    watch = FloodWatch(reports=1000, min_span_s=30, max_gap_s=5)
    assert not any(watch.shed("pump-07", 100.0 + i / 1000) for i in range(20_000))  # 20 s
    assert not any(watch.shed("pump-07", t) for t in (126.0, 131.5, 137.0, 159.0))
    flood = [watch.shed("evil", 100.0 + i / 1000) for i in range(31_000)]
    assert flood.index(True) == 30_000 and flood.count(True) == 1


def test_a_flood_alarm_says_it_once_and_hands_the_device_on(
        caplog: pytest.LogCaptureFixture) -> None:
    """The reaction both readers share (the report bridge and the artifact stream): one
    error line naming the device and what it floods, and the id handed to on_flood, once
    per run of drops."""
    alarm = FloodAlarm(3, 0.0, logging.getLogger("test.flood"), " the artifact stream",
                       "requests")
    told: list[str] = []
    alarm.on_flood = told.append
    with caplog.at_level(logging.ERROR, logger="test.flood"):
        found = [alarm.dropped("evil") for _ in range(10)]
    assert found == [False, False, True] + [False] * 7 and told == ["evil"]
    assert [r.getMessage() for r in caplog.records] == [
        "device 'evil' is flooding the artifact stream: 3 or more of its requests dropped "
        "unread, for 0 s without a pause"]


def test_a_repeat_flooder_is_kept_out_longer() -> None:
    now = 1_000_000.0
    assert quarantine_seconds(900, [], now) == 900
    assert quarantine_seconds(900, [now - 3600], now) == 1800
    assert quarantine_seconds(900, [now - 3600, now - 600], now) == 3600
    assert quarantine_seconds(900, [now - 90_000], now) == 900  # more than a day ago
    assert quarantine_seconds(900, [now - 600 * i for i in range(1, 40)], now) == 86400  # cap


def test_one_flood_two_replicas_found_counts_once() -> None:
    """Two replicas that find the same flood each write a quarantine a moment apart: the
    device's next flood doubles once for it, not twice."""
    now = 1_000_000.0
    assert quarantine_seconds(900, [now - 3600, now - 3599.2], now) == 1800
    assert quarantine_seconds(900, [now - 3600, now - 3599.2, now - 600], now) == 3600
    # quarantines a minute or more apart are floods of their own
    assert quarantine_seconds(900, [now - 3600, now - 3500], now) == 3600


def test_the_acl_denies_quarantined_devices_like_revoked_ones() -> None:
    acl = render_acl(["dev-r"], ["dev-q", "dev-r"])
    assert "user dev-r\ntopic deny #" in acl and "user dev-q\ntopic deny #" in acl
    assert acl.count("user dev-r") == 1  # revoked and quarantined: one entry
    assert "quarantined devices" in acl
    assert "user" not in render_acl([], [])


# --- the shell: database, ACL file, reload command, keeper thread ------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def quarantines(request: pytest.FixtureRequest,
                tmp_path: Path) -> Iterator[tuple[Quarantines, Path]]:
    """The shell on each database the server runs on (PostgreSQL: several replicas)."""
    reloads = tmp_path / "reloads"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/fleet.db"
    else:
        server: postgres.Postgres = request.getfixturevalue("pg")  # tests/conftest.py
        url = server.new_database()
    config = ServerConfig(data_dir=tmp_path, database_url=url, enrollment=EnrollmentSettings(
        broker_reload_command=["/bin/sh", "-c", f"echo reload >> {reloads}"]))
    identity = IdentityService(config, Database(url))
    q = Quarantines(identity, flood_quarantine_s=900)
    q.start()
    try:
        yield q, reloads
    finally:
        q.stop()
        identity.db.dispose()


def _reloads(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _denied(q: Quarantines, device: str) -> bool:
    return f"user {device}\ntopic deny #" in Path(q.registry.acl_path).read_text()


def test_an_operator_quarantines_and_releases_a_device(
        quarantines: tuple[Quarantines, Path]) -> None:
    q, reloads = quarantines
    before = time.time()
    change = q.quarantine("pump-07", 3600, "sends garbage", "ops")
    assert change["broker_reloaded"] and _reloads(reloads) == 1
    assert _denied(q, "pump-07") and not _denied(q, "pump-08")
    assert before + 3600 <= change["until"] <= time.time() + 3600
    assert [v["device_id"] for v in q.active()] == ["pump-07"]
    assert q.of_device("pump-07")["reason"] == "sends garbage"  # type: ignore[index]
    released = q.release("pump-07", "ops")
    assert released["released_by"] == "ops" and _reloads(reloads) == 2
    assert not _denied(q, "pump-07") and q.active() == [] and q.of_device("pump-07") is None
    with pytest.raises(EnrollmentRefused) as refused:
        q.release("pump-07", "ops")
    assert refused.value.code == "not-quarantined"
    with q.db.session() as session:
        actions = [e.action for e in session.query(AuditEntry).order_by(AuditEntry.id)]
    assert actions[-2:] == ["device.quarantine", "device.release"]
    with pytest.raises(ValueError):
        q.quarantine("../etc", 60, "a path, not a device id", "ops")


def test_a_release_ends_every_quarantine_in_force(
        quarantines: tuple[Quarantines, Path]) -> None:
    """Two replicas that find the same flood at once each write one: a release that ended
    only the latest left the device denied."""
    q, _ = quarantines
    q.quarantine("evil", 600, "flood (replica a)", FLOOD_ACTOR)
    with q.db.session() as session:
        session.add(DeviceQuarantine(device_id="evil", since=time.time(),
                                     until=time.time() + 900, reason="flood (replica b)",
                                     created_by=FLOOD_ACTOR))
    q.release("evil", "ops")
    assert q.of_device("evil") is None and not _denied(q, "evil")


def test_a_quarantine_ends_by_itself_and_the_broker_is_told(
        quarantines: tuple[Quarantines, Path]) -> None:
    q, reloads = quarantines
    q.quarantine("pump-07", 1.0, "a short one", "ops")
    assert _denied(q, "pump-07") and _reloads(reloads) == 1
    deadline = time.monotonic() + 10
    while _denied(q, "pump-07") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _denied(q, "pump-07"), "the ACL still denies it 10 s after its end"
    assert _reloads(reloads) == 2  # the keeper rewrote the ACL and reloaded the broker


def test_a_flood_quarantines_its_device_and_a_second_flood_doubles(
        quarantines: tuple[Quarantines, Path]) -> None:
    q, _ = quarantines
    q.flooding("evil")
    # The keeper thread commits the row, then writes the ACL: wait for both (checking the
    # ACL as soon as the row showed failed one run in a few hundred).
    deadline = time.monotonic() + 10
    while (q.of_device("evil") is None or not _denied(q, "evil")) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    first = q.of_device("evil")
    assert first is not None and first["created_by"] == FLOOD_ACTOR
    assert 899 <= first["until"] - first["since"] <= 901 and _denied(q, "evil")
    q.flooding("evil")  # reports that reached the server before the broker reloaded
    time.sleep(0.5)
    assert q.of_device("evil") == first
    q.release("evil", "ops")
    q.flooding("evil")  # it floods again as soon as it is let back
    deadline = time.monotonic() + 10
    while q.of_device("evil") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = q.of_device("evil")
    assert second is not None and 1799 <= second["until"] - second["since"] <= 1801


def test_no_automatic_quarantine_when_switched_off(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fleet.db"
    identity = IdentityService(ServerConfig(data_dir=tmp_path, database_url=url), Database(url))
    q = Quarantines(identity, flood_quarantine_s=0)
    q.start()
    try:
        q.flooding("evil")
        time.sleep(0.5)
        assert q.of_device("evil") is None and not _denied(q, "evil")
    finally:
        q.stop()
        identity.db.dispose()


def test_a_rollout_waits_for_a_quarantined_device_as_for_an_offline_one(
        quarantines: tuple[Quarantines, Path]) -> None:
    """Online in the inventory (its connection stays open), but the broker lets it neither
    receive its desired state nor report: to the rollout policy it is offline, so it waits
    instead of timing out as a failure that could halt the rollout."""
    q, _ = quarantines
    with q.db.session() as session:
        session.add_all([Device(device_id=d, state="online", online_since=1.0)
                         for d in ("pump-07", "pump-08")])
    q.quarantine("pump-07", 3600, "floods", "ops")
    with q.db.session() as session:
        live = live_view(session, ["pump-07", "pump-08"], "nano-logs")
    assert not live["pump-07"].online and live["pump-08"].online
    q.release("pump-07", "ops")
    with q.db.session() as session:
        assert live_view(session, ["pump-07"], "nano-logs")["pump-07"].online


# --- end to end: a real broker from broker-config, the server, enrolled devices -----------

@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnrolledFleet]:
    # A flood is found once it went on for flood_min_s (30 s by default): 3 s here.
    f = start_enrolled_fleet(tmp_path_factory.mktemp("quarantine"), {"flood_min_s": 3.0})
    try:
        for device in ("evil", "good-1", "good-2"):
            f.enroll(device)
        yield f
    finally:
        f.stop()


def _status(device: str, seq: int) -> bytes:
    return Status(seq=seq, device_id=device, state="online",
                  agent_version="1").model_dump_json().encode()


def _until_refused(client: Client, device: str, refused: bool, timeout: float = 15.0) -> None:
    """Publish a status until the broker's answer says the ACL (re-read after a reload)
    refuses the device, or lets it through. Not counting the broker's reloads: two SIGHUPs
    close together are one reload (Mosquitto handles the signal in its main loop)."""
    deadline = time.monotonic() + timeout
    seq = 2_000_000
    while True:
        seq += 1
        answer = client.publish(topics.status(device), _status(device, seq))
        if (answer.value == NOT_AUTHORIZED) == refused and (refused or not answer.is_failure):
            return
        assert time.monotonic() < deadline, f"{device}: still {answer} after {timeout} s"
        time.sleep(0.1)


def _quarantined(fleet: EnrolledFleet) -> list[str]:
    listed = _api(fleet, "/api/v1/quarantines")["quarantines"]
    assert isinstance(listed, list)
    return [q["device_id"] for q in listed]


def _events(fleet: EnrolledFleet, device: str) -> list[object]:
    events = _api(fleet, f"/api/v1/devices/{device}?events=1000")["events"]
    assert isinstance(events, list)
    return events


def _api(fleet: EnrolledFleet, path: str) -> dict[str, object]:
    answer = httpx.get(f"{fleet.url}{path}", timeout=10, headers={
        "Authorization": f"Bearer {fleet.setup.token}"})
    assert answer.status_code == 200, answer.text
    result: dict[str, object] = answer.json()
    return result


def test_a_status_flood_gets_its_device_quarantined_and_the_fleet_is_heard(
        fleet: EnrolledFleet) -> None:
    """One enrolled device floods its own status topic (the lane every device's statuses
    and OTA events share) as fast as it can: the server finds it flooding, quarantines it
    at the broker, the broker refuses its publishes from then on, and the other devices'
    statuses are stored. An operator sees why and lets it back."""
    evil = Client(fleet.tls_port, fleet.device_tls("evil"))
    stop = threading.Event()

    def flood() -> None:  # QoS 0: no PUBACK to wait for, the broker takes all it can
        seq = 0
        while not stop.is_set():
            seq += 1
            if evil.client.publish(topics.status("evil"), _status("evil", seq)).rc != 0:
                time.sleep(0.002)

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        deadline = time.monotonic() + 60
        while not _api(fleet, "/api/v1/quarantines")["quarantines"]:
            assert time.monotonic() < deadline, "no quarantine after 60 s of flood: " + \
                json.dumps(_api(fleet, "/api/v1/health/detail")["mqtt"])
            time.sleep(0.2)
        # The flood goes on, refused at the broker: the other devices are heard meanwhile.
        # Without the quarantine the broker drops the status lane's overflow for as long as
        # the flood lasts ("Outgoing messages are being dropped for client ..."): OTA events
        # (that lane, and each one stored) sent then were lost.
        good = Client(fleet.tls_port, fleet.device_tls("good-1"))
        try:
            for seq in range(1, GOOD_EVENTS + 1):
                event = OtaEvent(seq=seq, device_id="good-1", slot="logs", state="downloading",
                                 to_version=seq)
                assert not good.publish(topics.ota("good-1"),
                                        event.model_dump_json()).is_failure
                time.sleep(0.05)
        finally:
            good.close()
        deadline = time.monotonic() + 20
        while len(stored := _events(fleet, "good-1")) < GOOD_EVENTS and \
                time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(stored) == GOOD_EVENTS, f"{len(stored)} of {GOOD_EVENTS} stored"
    finally:
        stop.set()
        flooder.join(10)
    quarantined = _api(fleet, "/api/v1/quarantines")["quarantines"]
    assert isinstance(quarantined, list) and [q["device_id"] for q in quarantined] == ["evil"]
    assert quarantined[0]["created_by"] == "server" and "flood" in quarantined[0]["reason"]
    # The broker refuses it, on a new connection too (after 65,536 publishes paho's message
    # ids wrap: a fresh client's PUBACKs are not mistaken for the flood's).
    evil.close()
    evil = Client(fleet.tls_port, fleet.device_tls("evil"))
    _until_refused(evil, "evil", refused=True)
    health = _api(fleet, "/api/v1/health/detail")["mqtt"]
    assert isinstance(health, dict) and health["floods"] >= 1 and health["shed"] >= 1000
    # The operator's view: the device page, the list, the server log naming it.
    code, out, err = fleet.nanofleet("devices", "show", "evil")
    assert code == 0 and "QUARANTINE until" in out and "by server" in out, out + err
    code, out, err = fleet.nanofleet("devices", "quarantined")
    assert code == 0 and out.startswith("evil quarantined until"), out + err
    assert "device 'evil' is flooding" in fleet.server.log()
    # Released, it is heard again (the broker re-read the ACL at once).
    code, out, err = fleet.nanofleet("devices", "release", "evil")
    assert code == 0 and "evil released" in out and "next: none" in out, out + err
    _until_refused(evil, "evil", refused=False)
    evil.close()
    code, out, _ = fleet.nanofleet("devices", "quarantined")
    assert code == 0 and out.strip() == "no device is quarantined"


def test_an_operator_quarantines_a_device_from_the_cli(fleet: EnrolledFleet,
                                                     tmp_path: Path) -> None:
    device = Client(fleet.tls_port, fleet.device_tls("good-2"), [topics.desired("good-2")])
    try:
        code, out, err = fleet.nanofleet("devices", "quarantine", "good-2", "--for", "2h",
                                         "--reason", "sends a stolen model's results")
        assert code == 0, err
        assert out.startswith("good-2 quarantined until") and "by operator" in out, out
        _until_refused(device, "good-2", refused=True)
        # A deployment meanwhile: its retained desired state is not delivered to it...
        publish(fleet.setup, relabeled(2, tmp_path / "v2.nfb"))
        deployed = api(fleet.setup, "POST", "/api/v1/deployments", json={
            "model": MODEL, "version": 2, "devices": ["good-2"]})
        assert deployed.status_code == 200, deployed.text
        time.sleep(1.0)
        assert device.on(topics.desired("good-2")) == []
        code, out, _ = fleet.nanofleet("devices", "list")
        row = next(line for line in out.splitlines() if line.startswith("good-2 "))
        assert row.split()[1] == "quarantined", out  # not "online": its session is open
        code, out, _ = fleet.nanofleet("devices", "quarantined", "--json")
        (only,) = json.loads(out)["quarantines"]
        assert only["device_id"] == "good-2" and 7199 <= only["until"] - only["since"] <= 7201
        identity = _api(fleet, "/api/v1/devices/good-2/identity")
        assert isinstance(identity["quarantine"], dict)
        url = "/console/devices/good-2"
        with console(fleet.setup, operator_token(fleet.setup, "reader", "read"), url) as c:
            page = c.get(url)
            listed = c.get("/console/fleet", params={"state": "quarantined"})
            refused = c.post(f"{url}/release", data={"csrf": csrf_of(page.text)})
        assert listed.status_code == 200 and "good-2" in listed.text
        assert 'class="badge s-quarantined"' in listed.text, listed.text
        assert page.status_code == 200
        assert "denied every topic at the broker" in page.text
        assert "sends a stolen model&#39;s results" in page.text, page.text
        assert "release now" not in page.text  # a reader is not offered it...
        assert refused.status_code == 403 and _api(fleet, "/api/v1/quarantines")[
            "quarantines"]  # ...and cannot
        with console(fleet.setup, operator_token(fleet.setup, "boss", "admin"), url) as c:
            page = c.get(url)
            assert '/release" class="release">' in page.text
            released = c.post(f"{url}/release", data={"csrf": csrf_of(page.text)})
        assert released.status_code in (200, 303), released.text
        assert _api(fleet, "/api/v1/quarantines")["quarantines"] == []
        code, _, err = fleet.nanofleet("devices", "quarantine", "good-2", "--for", "2h")
        assert code == 0, err  # again, for the CLI's release below
        _until_refused(device, "good-2", refused=True)
        code, _, err = fleet.nanofleet("devices", "quarantine", "good-2", "--for", "40d")
        assert code != 0 and "for_s" in err, err  # at most 30 days: the field is named
        code, out, err = fleet.nanofleet("devices", "release", "good-2")
        assert code == 0, err
        _until_refused(device, "good-2", refused=False)
        # ...and once it is let back the server sends it again, on the same session (a
        # quarantine ends no connection, so no new subscription would bring it).
        desired = json.loads(device.wait_topic(topics.desired("good-2")).payload)
        assert desired["slots"]["logs"]["version"] == 2
        code, _, err = fleet.nanofleet("devices", "release", "good-2")
        assert code != 0 and "not quarantined" in err, err
    finally:
        device.close()


def test_a_flood_of_artifact_requests_gets_its_device_quarantined(
        fleet: EnrolledFleet) -> None:
    """The artifact stream drops a device's requests over its rate before reading them, but
    a device that sends them faster than the stream reads overflows the broker's queue for
    the stream's session (other devices' requests are lost there): quarantined too."""
    evil = Client(fleet.tls_port, fleet.device_tls("evil"))
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            if evil.client.publish(topics.artifact_requests("evil"), b"{}").rc != 0:
                time.sleep(0.002)

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        deadline = time.monotonic() + 60
        while "evil" not in _quarantined(fleet):
            assert time.monotonic() < deadline, "no quarantine after 60 s of flood: " + \
                json.dumps(_api(fleet, "/api/v1/health/detail")["artifacts"])
            time.sleep(0.2)
    finally:
        stop.set()
        flooder.join(10)
        evil.close()
    listed = _api(fleet, "/api/v1/quarantines")["quarantines"]
    assert isinstance(listed, list)
    (ours,) = [q for q in listed if q["device_id"] == "evil"]
    assert ours["created_by"] == "server"
    artifacts = _api(fleet, "/api/v1/health/detail")["artifacts"]
    assert isinstance(artifacts, dict) and artifacts["floods"] >= 1 and artifacts["dropped"] > 0
    assert "device 'evil' is flooding the artifact stream" in fleet.server.log()
    code, _, err = fleet.nanofleet("devices", "release", "evil")
    assert code == 0, err
