"""Alert mutes, fleet-server side, end to end: a real `nanofleet server run` process, a real
Mosquitto, alerts sent over MQTT, mutes made and lifted over HTTP, and each device's
retained mute list read by a real MQTT client on its `dev/{id}/mutes` topic, as the agent
reads it. Then the decisions on their own (the list's bounds, a refused mute)."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import func, select

from contract.mutes import (
    MAX_MUTES,
    MIN_PREFIX_SHAPE_CHARS,
    MUTE_ID_PATTERN,
    AlertMute,
    MuteList,
    message_shape,
    mutes_topic,
    ordinary_user_note,
    prefix_shape,
)
from fleet_server.db import AuditEntry, Database
from fleet_server.metrics_store import ALERT_TEXT_CHARS, DeviceAlertRow
from fleet_server.mute_lists import build_mute_list, encode_mute_list, room_refusal
from fleet_server.mute_publisher import MutePublisher
from fleet_server.mute_rules import (
    MuteRefused,
    MuteShape,
    UnknownAlert,
    WideMuteRefused,
    covers,
    mute_shape,
)
from fleet_server.mutes import (
    MAX_DEPLOY_MUTED_DEVICES,
    MAX_DEPLOY_MUTES_PER_DAY,
    AlertMuteRow,
    current_revision,
    mute_alert,
    unmute,
)
from fleet_server.revisions import revision_clock
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
from tests.support.alert_rows import stored_alert
from tests.support.json_log import READ, WRITE, WRITE_AGAIN
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector

FAILED = "sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2"
# A long line whose kept start leaves a few words only: a 600-character base64 payload.
BLOB = "upload failed: payload=" + "QUJDRA" * 100
DAY = 86_400.0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FleetSetup, Mosquitto]]:
    with alert_fleet(tmp_path_factory.mktemp("mutes")) as running:
        yield running


def alerts_of(setup: FleetSetup, broker: Mosquitto, device: str,
              lines: list[tuple[str, str]]) -> dict[str, int]:
    """Publish (source, text) alerts as ``device``; their ids on the server, by text."""
    send_alerts(broker, [alert(device, f"{device}-{i}", i, source, text, "security")
                         for i, (source, text) in enumerate(lines, 1)])
    listed = wait_alerts(setup, len(lines), device)
    assert len(listed) == len(lines), listed
    return {a["text"]: a["id"] for a in listed}


def lists_on(messages: list[mqtt.MQTTMessage], device: str) -> list[MuteList]:
    return [MuteList.model_validate_json(m.payload) for m in messages
            if m.topic == mutes_topic(device)]


def no_retained(broker: Mosquitto, device: str) -> bool:
    with pytest.raises(TimeoutError):
        retained(broker, device, timeout=1.0)
    return True


def wait_list(watch: Collector, device: str, newer_than: int) -> MuteList:
    """The first list of ``device`` with a revision above ``newer_than``."""
    got = watch.wait_for(lambda ms: any(x.revision > newer_than for x in lists_on(ms, device)))
    return next(x for x in lists_on(got, device) if x.revision > newer_than)


def audit(setup: FleetSetup, action: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = api(setup, "GET", "/api/v1/audit").json()["entries"]
    return [e for e in entries if e["action"] == action]


def never_older(lists: list[MuteList]) -> bool:
    """Revisions as a device receives them only go up (a list sent again, on a reconnect,
    keeps its revision)."""
    return all(a.revision <= b.revision for a, b in itertools.pairwise(lists))


def test_a_mute_reaches_its_device_and_a_refused_one_changes_nothing(
        fleet: tuple[FleetSetup, Mosquitto]) -> None:
    setup, broker = fleet
    device, other = "gw-mute", "gw-bystander"
    ids = alerts_of(setup, broker, device, [("sshd", CLOSED), ("sshd", FAILED),
                                            ("nginx", "x" * 600)])
    alerts_of(setup, broker, other, [("sshd", CLOSED)])
    watch = Collector(broker.port, ["nanofleet/v1/dev/+/mutes"])
    try:
        viewer = api(setup, "POST", "/api/v1/tokens",
                     json={"name": "mute-viewer", "scopes": ["read"]}).json()["token"]
        closed = ids[CLOSED]
        # Refused, each named; none stores a mute, writes the audit log or takes a revision.
        r = api(setup, "POST", f"/api/v1/alerts/{closed}/mute", viewer, json={})
        assert r.status_code == 403 and "needs 'deploy'" in r.json()["error"]["message"]
        for days in (0, 91):
            r = api(setup, "POST", f"/api/v1/alerts/{closed}/mute", json={"days": days})
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "invalid-request"
            assert r.json()["error"]["message"].startswith("days: Input should be")
        for body in ({"days": "7"}, {"days": 7.5}, {"all_devices": 1}, {"reason": "r" * 201},
                     {"devices": ["x"]}):
            r = api(setup, "POST", f"/api/v1/alerts/{closed}/mute", json=body)
            assert r.status_code == 422, (body, r.text)
        r = api(setup, "POST", "/api/v1/alerts/999999/mute", json={})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown-alert"
        r = api(setup, "POST", f"/api/v1/alerts/{ids['x' * 500]}/mute", json={})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid-mute"
        assert "probably cut" in r.json()["error"]["message"]
        assert "start has 0 characters here, fewer than the 200" in r.json()["error"]["message"]
        assert api(setup, "GET", "/api/v1/mutes").json() == {"mutes": []}
        assert audit(setup, "alert-mute") == []

        before = time.time()
        r = api(setup, "POST", f"/api/v1/alerts/{closed}/mute",
                json={"reason": "scanner on the LAN"})
        assert r.status_code == 201, r.text
        made = r.json()
        assert (made["outcome"], made["published"]) == ("created", True)
        assert (made["device_id"], made["source"], made["shape"], made["alert_id"]) == (
            device, "sshd", message_shape(CLOSED), closed)
        assert before + 7 * DAY <= made["expires_at"] <= time.time() + 7 * DAY
        assert made["created_by"] == "operator"

        # What a device that subscribes now reads: its one mute, under one new revision
        # (the refusals took none), and the shape covers the same message from another
        # address and day.
        held = retained(broker, device)
        assert revision_clock(before) <= held.revision <= revision_clock(time.time())
        assert held.mutes == [AlertMute(id=made["id"], shape=message_shape(CLOSED),
                                        source="sshd", expires=made["expires_at"],
                                        reason="scanner on the LAN")]
        assert held.mutes[0].matches("sshd", message_shape(CLOSED_AGAIN))
        assert not held.mutes[0].matches("sshd", message_shape(FAILED))
        assert not held.mutes[0].matches("journal", message_shape(CLOSED))
        assert no_retained(broker, other)  # a device's own mute: only its list changed

        # The same mute again: kept when it already lasts as long, else extended.
        r = api(setup, "POST", f"/api/v1/alerts/{closed}/mute", json={"days": 3})
        assert r.status_code == 200 and r.json()["outcome"] == "unchanged"
        assert (r.json()["id"], r.json()["expires_at"]) == (made["id"], made["expires_at"])
        r = api(setup, "POST", f"/api/v1/alerts/{closed}/mute", json={"days": 30})
        assert r.status_code == 200 and r.json()["outcome"] == "extended"
        assert r.json()["id"] == made["id"] and r.json()["reason"] == "scanner on the LAN"
        extended = wait_list(watch, device, held.revision)
        assert extended.mutes[0].expires == r.json()["expires_at"]
        # "unchanged" took no revision and sent nothing: two lists so far
        assert sorted({x.revision for x in lists_on(watch.messages, device)}) == [
            held.revision, extended.revision]

        listed = api(setup, "GET", "/api/v1/mutes", viewer).json()["mutes"]
        assert [(m["id"], m["expires_at"]) for m in listed] == [
            (made["id"], r.json()["expires_at"])]
        assert api(setup, "GET", f"/api/v1/mutes?device={other}").json() == {"mutes": []}
        entries = audit(setup, "alert-mute")
        assert [e["detail"]["outcome"] for e in entries] == [
            "extended", "unchanged", "created"]
        assert {e["subject"] for e in entries} == {device}

        # Lifting: deploy scope; the device gets a newer list without it.
        r = api(setup, "DELETE", f"/api/v1/mutes/{made['id']}", viewer)
        assert r.status_code == 403
        r = api(setup, "DELETE", f"/api/v1/mutes/{made['id']}")
        assert (r.status_code, r.content) == (204, b"")
        lifted = wait_list(watch, device, extended.revision)
        assert lifted.mutes == []
        assert retained(broker, device) == lifted
        r = api(setup, "DELETE", f"/api/v1/mutes/{made['id']}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown-mute"
        assert api(setup, "DELETE", "/api/v1/mutes/..%2Fetc").status_code in (404, 422)
        assert api(setup, "DELETE", "/api/v1/mutes/NOT-HEX-AT-ALL").status_code == 422
        assert [e["detail"]["mute"] for e in audit(setup, "alert-unmute")] == [made["id"]]
        assert never_older(lists_on(watch.messages, device))
    finally:
        watch.close()


def test_a_cut_line_gets_a_prefix_mute_that_reaches_its_device(
        fleet: tuple[FleetSetup, Mosquitto]) -> None:
    """A 900-character JSON log line: the server keeps its first 500 characters, so the mute
    names the start of its shape, and the device's list says so (``prefix: true``). A cut
    line whose sure start is too short to be specific is still refused, saying why."""
    setup, broker = fleet
    device = "gw-json"
    ids = alerts_of(setup, broker, device, [("app", WRITE), ("app", BLOB)])
    cut = {text[:ALERT_TEXT_CHARS]: alert_id for text, alert_id in ids.items()}
    watch = Collector(broker.port, [mutes_topic(device)])
    try:
        r = api(setup, "POST", f"/api/v1/alerts/{cut[BLOB[:ALERT_TEXT_CHARS]]}/mute", json={})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid-mute"
        message = r.json()["error"]["message"]
        assert "it was probably cut, so a mute can name only the start of its shape" in message
        assert f"That start has {len('upload failed:')} characters here, fewer than the " \
               f"{MIN_PREFIX_SHAPE_CHARS}" in message and "cannot be muted" in message
        assert api(setup, "GET", f"/api/v1/mutes?device={device}").json() == {"mutes": []}

        r = api(setup, "POST", f"/api/v1/alerts/{cut[WRITE[:ALERT_TEXT_CHARS]]}/mute",
                json={"reason": "collector retries on its own"})
        assert r.status_code == 201, r.text
        made = r.json()
        start = prefix_shape(WRITE[:ALERT_TEXT_CHARS])
        assert (made["shape"], made["prefix"], made["source"]) == (start, True, "app")
        assert len(start) >= MIN_PREFIX_SHAPE_CHARS and message_shape(WRITE).startswith(start)
        assert api(setup, "GET", "/api/v1/mutes",
                   params={"device": device}).json()["mutes"][0]["prefix"] is True
        assert audit(setup, "alert-mute")[0]["detail"]["prefix"] is True

        # What the device reads: the raw payload says prefix, and the mute covers the same
        # message with other values, not another message that begins alike.
        got = watch.wait_for(lambda ms: any(json.loads(m.payload)["mutes"] for m in ms))
        doc = next(json.loads(m.payload) for m in got if json.loads(m.payload)["mutes"])
        assert [(m["shape"], m["prefix"]) for m in doc["mutes"]] == [(start, True)]
        held = retained(broker, device)
        assert held.mutes[0].prefix and held.mutes[0].matches("app", message_shape(WRITE_AGAIN))
        assert not held.mutes[0].matches("app", message_shape(READ))

        # The same cut line again: the same mute (a prefix mute is its own identity).
        r = api(setup, "POST", f"/api/v1/alerts/{cut[WRITE[:ALERT_TEXT_CHARS]]}/mute",
                json={"days": 1})
        assert r.status_code == 200 and (r.json()["id"], r.json()["outcome"]) == (
            made["id"], "unchanged")
        assert api(setup, "DELETE", f"/api/v1/mutes/{made['id']}").status_code == 204
    finally:
        watch.close()


def test_a_deploy_token_cannot_mute_a_message_device_after_device(
        fleet: tuple[FleetSetup, Mosquitto]) -> None:
    """The API side of the rule above: the (limit+1)th device's mute by a deploy-only
    token is 403 forbidden, saying what to do, and nothing is muted or published."""
    setup, broker = fleet
    devices = [f"relay-{n}" for n in range(MAX_DEPLOY_MUTED_DEVICES + 1)]
    line = "sshd[1]: Connection closed by 198.51.100.9 port 4711 [preauth] relay"
    ids = [alerts_of(setup, broker, d, [("sshd", line)])[line] for d in devices]
    token = api(setup, "POST", "/api/v1/tokens", json={"name": "relay-ci",
                                                     "scopes": ["deploy"]}).json()["token"]
    for alert_id in ids[:-1]:
        r = api(setup, "POST", f"/api/v1/alerts/{alert_id}/mute", token=token,
                json={"any_source": True})
        assert r.status_code == 201, r.text
    before = api(setup, "GET", "/api/v1/mutes").json()["mutes"]
    r = api(setup, "POST", f"/api/v1/alerts/{ids[-1]}/mute", token=token,
            json={"any_source": True})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    assert "needs a token with admin" in r.json()["error"]["message"]
    assert api(setup, "GET", "/api/v1/mutes").json()["mutes"] == before
    r = api(setup, "POST", f"/api/v1/alerts/{ids[-1]}/mute", json={"any_source": True})
    assert r.status_code == 201, r.text  # the suite's token holds admin
    for mute in api(setup, "GET", "/api/v1/mutes").json()["mutes"]:
        if mute["device_id"] in devices:
            assert api(setup, "DELETE", f"/api/v1/mutes/{mute['id']}").status_code == 204


def test_an_every_device_mute_reaches_every_device_and_lifting_it_too(
        fleet: tuple[FleetSetup, Mosquitto]) -> None:
    setup, broker = fleet
    a, b, c, late = "pump-a", "pump-b", "pump-c", "pump-late"
    ids = alerts_of(setup, broker, a, [("kernel", USB), ("sshd", FAILED)])
    alerts_of(setup, broker, b, [("kernel", USB)])
    # c is in the inventory but never sent an alert (added by an operator, say).
    r = api(setup, "PATCH", "/api/v1/devices", json={"devices": [c], "group": "pumps",
                                                     "create": True})
    assert r.status_code == 200, r.text
    watch = Collector(broker.port, ["nanofleet/v1/dev/+/mutes"])
    try:
        start = api(setup, "GET", "/api/v1/mutes").json()["mutes"]
        # Not with a deploy token (review, December 2026: a leaked CI token could quiet an
        # attack's message on the whole fleet); on the alert's own device it may.
        r = api(setup, "POST", "/api/v1/tokens", json={"name": "ci-deploy",
                                                     "scopes": ["deploy"]})
        deploy = r.json()["token"]
        r = api(setup, "POST", f"/api/v1/alerts/{ids[USB]}/mute", token=deploy,
                json={"all_devices": True, "days": 2})
        assert r.status_code == 403 and "muting an alert on every device" in r.text, r.text
        assert r.json()["error"]["code"] == "forbidden"
        assert "needs 'admin'" in r.json()["error"]["message"]
        assert api(setup, "GET", "/api/v1/mutes").json()["mutes"] == start
        r = api(setup, "POST", f"/api/v1/alerts/{ids[USB]}/mute",
                json={"all_devices": True, "any_source": True, "days": 2})
        assert r.status_code == 201 and r.json()["published"], r.text
        everywhere = r.json()
        assert (everywhere["device_id"], everywhere["source"]) == (None, None)
        assert audit(setup, "alert-mute")[0]["subject"] == "every device"
        for device in (a, b, c):
            held = retained(broker, device)
            assert [(m.id, m.source, m.shape) for m in held.mutes] == [
                (everywhere["id"], None, message_shape(USB))]
            # the same message from another bus and with another error number
            assert held.mutes[0].matches("journal", message_shape(
                "USB 3-2.4:  device descriptor read/64,   error -110"))
        revision = retained(broker, a).revision

        # A device's own mute comes first in its list (newest first), and only its list
        # changes.
        r = api(setup, "POST", f"/api/v1/alerts/{ids[FAILED]}/mute", json={})
        own = r.json()
        held = wait_list(watch, a, revision)
        assert [m.id for m in held.mutes] == [own["id"], everywhere["id"]]
        assert retained(broker, b).revision == revision
        listed = api(setup, "GET", f"/api/v1/mutes?device={a}").json()["mutes"]
        assert [m["id"] for m in listed] == [own["id"], everywhere["id"]]
        listed = api(setup, "GET", f"/api/v1/mutes?device={b}").json()["mutes"]
        assert [m["id"] for m in listed] == [everywhere["id"]]
        assert len(api(setup, "GET", "/api/v1/mutes").json()["mutes"]) == len(start) + 2

        # A device that joins later gets the every-device mute with its first report.
        alerts_of(setup, broker, late, [("kernel", FAILED)])
        assert [m.id for m in wait_list(watch, late, 0).mutes] == [everywhere["id"]]

        lifted_from = max(x.revision for x in lists_on(watch.messages, a))
        r = api(setup, "DELETE", f"/api/v1/mutes/{everywhere['id']}")
        assert r.status_code == 204
        for device in (a, b, c, late):
            after = wait_list(watch, device, lifted_from)
            assert [m.id for m in after.mutes] == ([own["id"]] if device == a else [])
            assert never_older(lists_on(watch.messages, device))
            assert retained(broker, device) == after
    finally:
        watch.close()


def test_lists_come_back_after_a_broker_restart_and_a_server_restart(tmp_path: Path) -> None:
    """Retained messages die with a broker that keeps none; the server sends every list
    again when it reconnects, at the same revision: nothing changed. A server that starts
    sends them under a new revision (its database may be a restored backup): here the
    database *is* restored, and the device's list goes back to the backup's mutes under a
    revision above every one it was sent before — not ignored as older."""
    with alert_fleet_processes(tmp_path) as (setup, broker, server):
        device = "gw-restart"
        ids = alerts_of(setup, broker, device, [("sshd", CLOSED), ("kernel", USB)])
        made = api(setup, "POST", f"/api/v1/alerts/{ids[CLOSED]}/mute", json={}).json()
        held = retained(broker, device)

        broker.restart()
        server.wait_mqtt(timeout=60)
        again = retained(broker, device, timeout=30)
        assert again == held

        # While the broker is away a mute is stored, not sent; it arrives on reconnect.
        broker.stop()
        r = api(setup, "POST", f"/api/v1/alerts/{ids[USB]}/mute", json={"any_source": True})
        assert r.status_code == 201 and r.json()["published"] is False, r.text
        broker.start()
        server.wait_mqtt(timeout=60)
        watch = Collector(broker.port, [mutes_topic(device)])
        try:
            later = wait_list(watch, device, held.revision)
        finally:
            watch.close()
        assert [m.id for m in later.mutes] == [r.json()["id"], made["id"]]

        server.stop()
        backup = (setup.config.data_dir / "fleet.db").read_bytes()  # holds `later`'s mutes
        broker.restart()
        assert no_retained(broker, device)
        server.start()
        renewed = retained(broker, device, timeout=30)
        assert renewed.mutes == later.mutes and renewed.revision > later.revision
        assert "re-published 1 alert mute lists" in server.log()

        # After the backup: the USB mute lifted, then the database restored from it.
        watch = Collector(broker.port, [mutes_topic(device)])
        try:
            assert api(setup, "DELETE", f"/api/v1/mutes/{r.json()['id']}").status_code == 204
            lifted = wait_list(watch, device, renewed.revision)
            assert [m.id for m in lifted.mutes] == [made["id"]]
            server.stop()
            (setup.config.data_dir / "fleet.db").write_bytes(backup)
            # A restore takes longer than the seconds a burst of changes can run ahead of
            # the clock (fleet_server.revisions); this one is quick, so let the clock pass.
            while revision_clock(time.time()) <= lifted.revision:
                time.sleep(0.1)
            server.start()
            restored = wait_list(watch, device, lifted.revision)
            assert never_older(lists_on(watch.messages, device))
        finally:
            watch.close()
        assert restored.mutes == later.mutes  # the backup's two mutes, taken by the device
        assert retained(broker, device) == restored


# --- the decisions, in process -----------------------------------------------------------------

def counts(db: Database) -> tuple[int, int, int]:
    with db.session() as session:
        return (session.scalar(select(func.count()).select_from(AlertMuteRow)) or 0,
                session.scalar(select(func.count()).select_from(AuditEntry)) or 0,
                current_revision(session))


def test_a_refused_mute_changes_nothing_even_when_the_caller_commits(db: Database) -> None:
    alert_id = stored_alert(db, CLOSED)
    blank = stored_alert(db, " \t ")
    with db.session() as session:
        mute_alert(session, alert_id, days=1, all_devices=False, any_source=False, reason="",
                   actor="alice", now=1000.0)
    before = counts(db)
    assert before == (1, 1, 1)
    refusals: list[tuple[int, dict[str, object], str]] = [
        (alert_id, {"days": 0}, "days must be a whole number from 1 to 90"),
        (alert_id, {"days": 91}, "from 1 to 90"),
        (alert_id, {"days": True}, "days must be"),
        (alert_id, {"reason": "r" * 201}, "at most 200"),
        (blank, {}, "no shape to mute"),
    ]
    for target, change, message in refusals:
        args: dict[str, Any] = {"days": 7, "all_devices": False, "any_source": False,
                                "reason": "", **change}
        # the refusal caught, the session committed
        with db.session() as session, pytest.raises(MuteRefused, match=message):
            mute_alert(session, target, actor="bob", now=2000.0, **args)
        assert counts(db) == before
    with db.session() as session, pytest.raises(UnknownAlert, match="no alert 424242"):
        mute_alert(session, 424242, days=1, all_devices=True, any_source=True, reason="",
                   actor="bob")
    assert counts(db) == before


def test_without_admin_a_message_is_muted_on_a_few_devices_at_most(db: Database) -> None:
    """Review, December 2026: with every-device mutes needing admin, a deploy-only token
    muted the same message device after device (any source, 90 days). Past
    MAX_DEPLOY_MUTED_DEVICES other devices it is refused (an API answers 403); an admin
    (deploy_only False) may, and extending a mute that exists is no new device."""
    limit = MAX_DEPLOY_MUTED_DEVICES
    ids = [stored_alert(db, CLOSED, device=f"gw-{n}") for n in range(limit + 2)]
    for alert_id in ids[:limit]:
        with db.session() as session:
            mute_alert(session, alert_id, days=90, all_devices=False, any_source=True,
                       reason="", actor="ci", now=1000.0, deploy_only=True)
    before = counts(db)
    with db.session() as session, pytest.raises(WideMuteRefused, match=(
            f"muted on {limit} other devices already; muting it on more needs a token "
            "with admin")):
        mute_alert(session, ids[limit], days=90, all_devices=False, any_source=True,
                   reason="", actor="ci", now=1001.0, deploy_only=True)
    assert counts(db) == before
    with db.session() as session:  # the same device again: extended, not a new device
        change = mute_alert(session, ids[0], days=90, all_devices=False, any_source=True,
                            reason="", actor="ci", now=2000.0, deploy_only=True)
    assert change.outcome == "extended"
    with db.session() as session:  # an admin
        change = mute_alert(session, ids[limit], days=90, all_devices=False, any_source=True,
                            reason="", actor="root", now=2001.0)
    assert change.outcome == "created"
    # expired mutes do not count
    with db.session() as session:
        change = mute_alert(session, ids[limit + 1], days=1, all_devices=False,
                            any_source=True, reason="", actor="ci", now=1000.0 + 91 * DAY,
                            deploy_only=True)
    assert change.outcome == "created"


def test_without_admin_an_actor_makes_a_bounded_number_of_mutes_a_day(db: Database) -> None:
    """Second review: the per-message limit counts one exact shape, and a line that names
    its user or its device's host differs per device, so a deploy-only token muted every
    device one shape at a time. It makes MAX_DEPLOY_MUTES_PER_DAY new mutes a day at most."""
    ids = [stored_alert(db, f"sshd[1]: Failed password for user{n} from 192.0.2.1 port 22",
                        device=f"site-{n}") for n in range(MAX_DEPLOY_MUTES_PER_DAY + 1)]
    for n, alert_id in enumerate(ids[:-1]):
        with db.session() as session:
            mute_alert(session, alert_id, days=1, all_devices=False, any_source=False,
                       reason="", actor="ci", now=10_000.0 + n, deploy_only=True)
    with db.session() as session, pytest.raises(WideMuteRefused, match=(
            f"'ci' made {MAX_DEPLOY_MUTES_PER_DAY} mutes in the last day")):
        mute_alert(session, ids[-1], days=1, all_devices=False, any_source=False, reason="",
                   actor="ci", now=10_100.0, deploy_only=True)
    with db.session() as session:  # another actor, and the same one a day later
        mute_alert(session, ids[-1], days=1, all_devices=False, any_source=False, reason="",
                   actor="night-shift", now=10_100.0, deploy_only=True)
        mute_alert(session, ids[-1], days=2, all_devices=False, any_source=True, reason="",
                   actor="ci", now=10_000.0 + DAY + 40, deploy_only=True)


def test_a_cut_line_is_muted_by_its_start_and_the_kind_is_part_of_the_mute(
        db: Database) -> None:
    cut = stored_alert(db, WRITE[:ALERT_TEXT_CHARS], source="app")
    start = prefix_shape(WRITE[:ALERT_TEXT_CHARS])
    assert mute_shape(WRITE[:ALERT_TEXT_CHARS]) == (start, True)
    assert mute_shape(CLOSED) == (message_shape(CLOSED), False)
    assert mute_shape(WRITE[:ALERT_TEXT_CHARS - 1]) == (
        message_shape(WRITE[:ALERT_TEXT_CHARS - 1]), False)  # shorter: kept whole
    # A mute of the whole shape that reads the same is another mute: not a duplicate.
    with db.session() as session:
        session.add(AlertMuteRow(id="00000000000e4ac7", device_id="gw-1", source="app",
                                 shape=start, prefix=False, reason="", created_by="op",
                                 created_at=900.0, expires_at=1000.0 + 30 * DAY))
    with db.session() as session:
        made = mute_alert(session, cut, days=7, all_devices=False, any_source=False,
                          reason="", actor="alice", now=1000.0)
        assert made.outcome == "created" and (made.mute.shape, made.mute.prefix) == (start, True)
        again = mute_alert(session, cut, days=1, all_devices=False, any_source=False,
                           reason="", actor="alice", now=1000.0)
        assert (again.outcome, again.mute.id) == ("unchanged", made.mute.id)
        rows = list(session.scalars(select(AlertMuteRow)))
    doc, _ = build_mute_list(rows, 1, 1000.0)
    assert [(m.shape, m.prefix) for m in doc.mutes] == [(start, True), (start, False)]
    assert doc.mutes[0].matches("app", message_shape(WRITE_AGAIN))
    assert not doc.mutes[1].matches("app", message_shape(WRITE_AGAIN))
    assert MuteList.model_validate_json(encode_mute_list(doc)) == doc
    # Refused, and nothing stored: a cut line whose sure start is too short.
    blob = stored_alert(db, BLOB[:ALERT_TEXT_CHARS])
    before = counts(db)
    with db.session() as session, pytest.raises(MuteRefused, match="fewer than the 200"):
        mute_alert(session, blob, days=7, all_devices=False, any_source=False, reason="",
                   actor="bob", now=1000.0)
    assert counts(db) == before


def test_what_a_mute_covers_of_a_cut_line_is_what_the_server_can_tell() -> None:
    """The console's "muted" tag. Of a line it kept cut the server knows the start of the
    shape only: a prefix mute covers it when that start begins with the mute's shape; a
    mute of a whole shape cannot be judged against a start (the device's shape of the whole
    line is longer), unless the start is already as long as any shape (512)."""
    def prefix_of(text: str) -> AlertMute:
        return AlertMute(id="0123456789ab", shape=prefix_shape(text[:ALERT_TEXT_CHARS]),
                         prefix=True, expires=1.0)

    again = mute_shape(WRITE_AGAIN[:ALERT_TEXT_CHARS])
    write = mute_shape(WRITE[:ALERT_TEXT_CHARS])
    assert covers(prefix_of(WRITE), "app", again)  # its start goes further: covered
    assert covers(prefix_of(WRITE), "app", write)
    assert not covers(prefix_of(READ), "app", write)
    # Its start stops short of the mute's: the device may well mute it; the server can't say.
    assert len(write.shape) < len(again.shape) and not covers(prefix_of(WRITE_AGAIN), "app",
                                                              write)
    whole = AlertMute(id="0123456789ab", shape=write.shape, expires=1.0)
    assert not covers(whole, "app", write)
    # A whole line: the agent's rule, for both kinds of mute.
    assert covers(whole, "app", MuteShape(write.shape, False))
    assert covers(prefix_of(WRITE), "app", MuteShape(message_shape(WRITE_AGAIN), False))
    # A start as long as any shape is the whole shape (the agent cuts there too).
    long = "İ" * 300 + " " + "x" * 300  # lower-cased, "İ" is two characters
    known = mute_shape(long[:ALERT_TEXT_CHARS])
    assert known.prefix and known.shape == message_shape(long)
    assert covers(AlertMute(id="0123456789ab", shape=message_shape(long), expires=1.0), "app",
                  known)


def test_expired_mutes_are_cleared_and_a_new_one_made(db: Database) -> None:
    alert_id = stored_alert(db, CLOSED)
    with db.session() as session:
        first = mute_alert(session, alert_id, days=1, all_devices=False, any_source=False,
                           reason="", actor="alice", now=1000.0).mute.id
    with db.session() as session:
        second = mute_alert(session, alert_id, days=1, all_devices=False, any_source=False,
                            reason="", actor="alice", now=1000.0 + 2 * DAY)
        assert second.outcome == "created" and second.mute.id != first
        assert session.get(AlertMuteRow, first) is None  # expired: gone
        # Lifting the one left; every change took its own revision.
        unmute(session, second.mute.id, "alice", now=1000.0 + 2 * DAY)
        assert current_revision(session) == 3


def row(i: int, created: float, expires: float, device: str | None = "gw-1",
        shape: str = "s", reason: str = "") -> AlertMuteRow:
    return AlertMuteRow(id=f"{i:016x}", device_id=device, source=None, shape=shape, prefix=False,
                        reason=reason, created_by="op", created_at=created, expires_at=expires)


def test_a_list_keeps_the_newest_live_mutes_within_its_bounds() -> None:
    now = 10_000.0
    rows = [row(1, 1.0, now - 1), row(2, 2.0, now + 10), row(3, 3.0, now + 10),
            row(4, 4.0, now + 5, device=None)]
    doc, left_out = build_mute_list(rows, 7, now)
    assert (doc.revision, [m.id for m in doc.mutes], left_out) == (7, [f"{4:016x}",
                                                                       f"{3:016x}",
                                                                       f"{2:016x}"], 0)
    assert doc.mutes[0].expires == now + 5

    many = [row(i, float(i), now + 10) for i in range(MAX_MUTES + 40)]
    doc, left_out = build_mute_list(many, 1, now)
    assert len(doc.mutes) == MAX_MUTES and left_out == 40
    assert doc.mutes[0].id == f"{MAX_MUTES + 39:016x}"  # the newest kept

    # A list the agent's packet limit would drop is cut, oldest out, to fit it.
    wide = [row(i, float(i), now + 10, shape="é" * 512, reason="ü" * 200)
            for i in range(MAX_MUTES)]
    doc, left_out = build_mute_list(wide, 1, now, max_bytes=64 * 1024)
    assert 0 < len(doc.mutes) < MAX_MUTES and left_out == MAX_MUTES - len(doc.mutes)
    assert len(encode_mute_list(doc)) <= 64 * 1024
    assert doc.mutes[0].id == f"{MAX_MUTES - 1:016x}"
    assert MuteList.model_validate_json(encode_mute_list(doc)) == doc
    assert all(re.fullmatch(MUTE_ID_PATTERN, m.id) for m in doc.mutes)


def test_a_mute_that_would_not_reach_its_devices_is_refused(db: Database) -> None:
    """Review, December 2026: the 257th mute of a device was accepted and the device's list
    silently left the oldest out, which the server still listed as in force; a source name
    the server kept cut made a mute that never matched on the device."""
    now = 10_000.0
    with db.session() as session:
        session.add_all([row(i, float(i), now + DAY) for i in range(MAX_MUTES - 1)])
        session.add(row(MAX_MUTES, 1.0, now + DAY, device="gw-2"))
    alert_id = stored_alert(db, CLOSED)
    with db.session() as session:  # the 256th of gw-1 still fits
        assert mute_alert(session, alert_id, days=1, all_devices=False, any_source=False,
                          reason="", actor="op", now=now).outcome == "created"
    before = counts(db)
    for everywhere in (False, True):  # gw-1's list is full, and so is every device's
        with db.session() as session, pytest.raises(MuteRefused, match="device gw-1 is full"):
            mute_alert(session, stored_alert(db, USB), days=1, all_devices=everywhere,
                       any_source=False, reason="", actor="op", now=now)
        assert counts(db) == before
    with db.session() as session:  # gw-2 has room
        assert mute_alert(session, stored_alert(db, USB, device="gw-2"), days=1,
                          all_devices=False, any_source=False, reason="", actor="op",
                          now=now).outcome == "created"
    # By bytes too: the same count in wide non-ASCII mutes passes the list's byte bound.
    wide = [row(i, float(i), now + DAY, device="gw-3", shape="é" * 512, reason="ü" * 200)
            for i in range(200)]
    assert room_refusal(wide, row(999, 2.0, now + DAY, device="gw-3"), now) is not None
    assert room_refusal(wide[:100], row(999, 2.0, now + DAY, device="gw-3"), now) is None

    long_source = stored_alert(db, CLOSED, device="gw-2",
                               source=("journald:" + ",".join(f"unit-{i}.service"
                                                              for i in range(12)))[:128])
    with db.session() as session, pytest.raises(MuteRefused, match="mute it on any source"):
        mute_alert(session, long_source, days=1, all_devices=False, any_source=False,
                   reason="", actor="op", now=now)
    with db.session() as session:
        assert mute_alert(session, long_source, days=1, all_devices=False, any_source=True,
                          reason="", actor="op", now=now).mute.source is None


def test_a_line_an_ordinary_user_logged_is_not_muted(db: Database) -> None:
    """Review, December 2026: ``logger "Failed password for root ..."`` by uid 1000, muted
    as a false alarm, hid 1,740 real sshd failures in an hour: same text, same shape."""
    with db.session() as session:
        row_ = DeviceAlertRow(msg_id="m-forged", device_id="gw-1", ts=1.0, device_ts=1.0,
                              slot="logs", model_version=1, label="security", score=0.9,
                              reason="label security >= 0.80" + ordinary_user_note(1000),
                              source="journald", text=CLOSED, repeats=0)
        session.add(row_)
        session.flush()
        forged = row_.id
    before = counts(db)
    with db.session() as session, pytest.raises(MuteRefused, match="uid 1000, an ordinary"):
        mute_alert(session, forged, days=1, all_devices=False, any_source=True, reason="",
                   actor="op", now=1000.0)
    assert counts(db) == before


def test_resend_before_any_mute_sends_nothing_and_says_so(db: Database) -> None:
    """Review, December 2026: with no mute ever made, a resend reported every list sent
    and acknowledged and published nothing."""
    sent: list[list[tuple[str, bytes]]] = []

    class Recorder:
        def publish_retained_many(self, messages: list[tuple[str, bytes]],
                                  timeout: float) -> list[bool]:
            sent.append(messages)
            return [True] * len(messages)

    publisher = MutePublisher(db, Recorder())  # type: ignore[arg-type]
    assert publisher.resend("gw-1", reset=False) == (0, 0) and sent == []
    assert publisher.resend("gw-1", reset=True) == (1, 1)  # empty lists marked reset go
    assert MuteList.model_validate_json(sent[0][0][1]).reset
