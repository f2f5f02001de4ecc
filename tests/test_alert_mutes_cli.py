"""`nanofleet alerts mute`, `nanofleet mutes list|delete` against a real `nanofleet server
run` process and a real Mosquitto: a device sends alerts over MQTT, the operator mutes
them, lists the mutes and lifts one, all through the CLI; the device's retained list
follows."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

from agent.metrics import Counters
from agent.mute_inbox import MuteInbox
from agent.mutes import MuteSet
from contract.mutes import AlertMute, MuteList, message_shape, mutes_topic, prefix_shape
from fleet_server.cli.mutes import render_mutes
from fleet_server.mute_lists import encode_mute_list
from hil.fleet import FleetSetup
from tests.support.alert_fleet import alert, alert_fleet, api, send_alerts, wait_alerts
from tests.support.alert_lines import CLOSED, USB
from tests.support.fleet_cli import nf
from tests.support.json_log import WRITE
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector

DEVICE = "gw-cli"
ESCAPED = "login banner \x1b[31mred\x1b[0m\tend"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FleetSetup, Mosquitto]]:
    with alert_fleet(tmp_path_factory.mktemp("mute-cli")) as running:
        yield running


def client_args(setup: FleetSetup, token: str | None = None) -> list[str]:
    return ["--server", setup.url, "--token", token or setup.token]


def columns(line: str) -> list[str]:
    return re.split(r" {2,}", line.rstrip())


def until(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def retained(broker: Mosquitto, device: str) -> MuteList:
    reader = Collector(broker.port, [mutes_topic(device)])
    try:
        return MuteList.model_validate_json(reader.wait_for(bool)[0].payload)
    finally:
        reader.close()


def test_mute_list_and_lift_from_the_command_line(fleet: tuple[FleetSetup, Mosquitto],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    setup, broker = fleet
    send_alerts(broker, [alert(DEVICE, f"{DEVICE}-{i}", i, source, text, "security")
                         for i, (source, text) in enumerate(
                             [("sshd", CLOSED), ("kernel", USB), ("motd", ESCAPED)], 1)])
    ids = {a["text"]: a["id"] for a in wait_alerts(setup, 3, DEVICE)}
    assert len(ids) == 3

    # A reader may list but not mute or lift; the server's reason is printed, exit 1.
    viewer = api(setup, "POST", "/api/v1/tokens",
                 json={"name": "viewer", "scopes": ["read"]}).json()["token"]
    code, out, err = nf("alerts", "mute", str(ids[CLOSED]), *client_args(setup, viewer))
    assert code == 1 and out == "" and "needs 'deploy'" in err
    code, out, err = nf("mutes", "list", *client_args(setup, viewer))
    assert (code, out) == (0, "(no active mutes)\n"), err

    # Refused by the server, its words: nothing stored.
    for days in ("0", "91"):
        code, out, err = nf("alerts", "mute", str(ids[CLOSED]), "--days", days,
                            *client_args(setup))
        assert code == 1 and out == "" and err.startswith("error: days: Input should be"), err
    code, _, err = nf("alerts", "mute", str(ids[CLOSED]), "--reason", "r" * 201,
                      *client_args(setup))
    assert code == 1 and "reason" in err
    code, _, err = nf("alerts", "mute", "999999", *client_args(setup))
    assert code == 1 and "no alert 999999" in err
    assert api(setup, "GET", "/api/v1/mutes").json() == {"mutes": []}

    code, out, err = nf("alerts", "mute", str(ids[CLOSED]), "--reason", "scanner on the LAN",
                        *client_args(setup))
    assert code == 0, err
    [made] = api(setup, "GET", "/api/v1/mutes").json()["mutes"]
    assert out == (f"muted: {message_shape(CLOSED)}\n"
                   f"  mute {made['id']} on {DEVICE}, source sshd, until "
                   f"{until(made['expires_at'])}\n"
                   "  reason: scanner on the LAN\n")
    assert retained(broker, DEVICE).mutes[0].id == made["id"]
    code, out, err = nf("alerts", "mute", str(ids[CLOSED]), "--days", "2", *client_args(setup))
    assert code == 0 and out.startswith(f"already muted: {message_shape(CLOSED)}\n"), err

    code, out, err = nf("alerts", "mute", str(ids[USB]), "--days", "3", "--all-devices",
                        "--any-source", "--json", *client_args(setup))
    assert code == 0, err
    usb = json.loads(out)
    assert (usb["outcome"], usb["device_id"], usb["source"], usb["published"]) == (
        "created", None, None, True)
    assert usb["expires_at"] - usb["created_at"] == 3 * 86_400
    # A device chooses its lines: the shape of this one carries an escape sequence.
    code, out, err = nf("alerts", "mute", str(ids[ESCAPED]), "--reason", "bell\x07 here",
                        *client_args(setup))
    assert code == 0 and "\x1b" not in out and "\x07" not in out, err
    assert out.startswith("muted: login banner ?[#mred?[#m end\n")
    assert "  reason: bell? here\n" in out
    escaped = api(setup, "GET", "/api/v1/mutes").json()["mutes"][0]
    assert [m.id for m in retained(broker, DEVICE).mutes] == [escaped["id"], usb["id"],
                                                              made["id"]]

    code, out, err = nf("mutes", "list", "--json", *client_args(setup))
    assert code == 0 and json.loads(out) == api(setup, "GET", "/api/v1/mutes").json(), err
    monkeypatch.setenv("COLUMNS", "150")
    code, out, err = nf("mutes", "list", *client_args(setup))
    assert code == 0, err
    lines = out.splitlines()
    assert columns(lines[0]) == ["ID", "EXPIRES", "DEVICE", "SOURCE", "BY", "REASON", "MATCH",
                                 "SHAPE"]
    assert [columns(x)[0] for x in lines[1:]] == [escaped["id"], usb["id"], made["id"]]
    assert columns(lines[2])[1:] == [until(usb["expires_at"]), "(every)", "(any)",
                                     "operator", "-", "whole", message_shape(USB)]
    assert columns(lines[3])[2:7] == [DEVICE, "sshd", "operator", "scanner on the LAN", "whole"]
    assert columns(lines[1])[-1] == "login banner ?[#mred?[#m end"
    assert "\x1b" not in out and all(len(x) <= 150 for x in lines)
    assert len({len(x) - len(columns(x)[-1]) for x in lines}) == 1  # one column start
    code, out, err = nf("mutes", "list", "--device", "gw-other", *client_args(setup))
    assert code == 0 and [columns(x)[0] for x in out.splitlines()[1:]] == [usb["id"]], err

    # Lifting: a reader may not; a wrong id never reaches the URL; an unknown one is named.
    code, out, err = nf("mutes", "delete", made["id"], *client_args(setup, viewer))
    assert code == 1 and out == "" and "needs 'deploy'" in err
    with pytest.raises(SystemExit) as exc:
        nf("mutes", "delete", "../tokens/viewer", *client_args(setup))
    assert exc.value.code == 2
    before = retained(broker, DEVICE).revision
    code, out, err = nf("mutes", "delete", made["id"], *client_args(setup))
    assert (code, out) == (0, f"lifted mute {made['id']}\n"), err
    after = retained(broker, DEVICE)
    assert after.revision > before and made["id"] not in {m.id for m in after.mutes}
    code, out, err = nf("mutes", "delete", made["id"], *client_args(setup))
    assert code == 1 and out == "" and f"no mute '{made['id']}'" in err
    code, out, err = nf("mutes", "delete", usb["id"], "--json", *client_args(setup))
    assert code == 0 and json.loads(out) == {"lifted": usb["id"]}, err
    actions = [e["action"] for e in api(setup, "GET", "/api/v1/audit").json()["entries"]]
    assert actions.count("alert-mute") == 4 and actions.count("alert-unmute") == 2


def test_a_cut_line_is_muted_by_its_start_from_the_command_line(
        fleet: tuple[FleetSetup, Mosquitto], monkeypatch: pytest.MonkeyPatch) -> None:
    setup, broker = fleet
    device = "gw-cli-json"
    send_alerts(broker, [alert(device, f"{device}-1", 1, "app", WRITE, "storage")])
    [listed] = wait_alerts(setup, 1, device)
    code, out, err = nf("alerts", "mute", str(listed["id"]), *client_args(setup))
    assert code == 0, err
    [made] = api(setup, "GET", "/api/v1/mutes", params={"device": device}).json()["mutes"]
    start = prefix_shape(WRITE[:500])
    assert (made["shape"], made["prefix"]) == (start, True)
    assert out == (f"muted: {start}…\n"
                   f"  mute {made['id']} on {device}, source app, until "
                   f"{until(made['expires_at'])}\n"
                   "  the server kept the line cut: lines whose shape starts with this are "
                   "muted\n")
    assert retained(broker, device).mutes[0].prefix
    monkeypatch.setenv("COLUMNS", "150")
    code, out, err = nf("mutes", "list", "--device", device, *client_args(setup))
    assert code == 0 and columns(out.splitlines()[1])[6] == "start", out + err
    code, out, err = nf("mutes", "list", "--device", device, "--json", *client_args(setup))
    assert code == 0 and json.loads(out)["mutes"][0]["prefix"] is True, err
    assert nf("mutes", "delete", made["id"], *client_args(setup))[0] == 0


def test_mutes_table_layout_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        base = {"created_at": 0.0, "expires_at": 1_800_000_000.0, "created_by": "op",
                "alert_id": 1}
        rows = [
            {**base, "id": "0123456789abcdef", "device_id": None, "source": None,
             "shape": message_shape(USB), "prefix": False, "reason": ""},
            {**base, "id": "fedcba9876543210", "device_id": "gw-03", "source": "sshd",
             "shape": message_shape(CLOSED), "prefix": False, "reason": "a scanner on the LAN, "
             "every night at two"},
        ]
        assert render_mutes(rows, 120) == [
            "ID                EXPIRES              DEVICE   SOURCE  BY  REASON              "
            "            MATCH  SHAPE",
            "0123456789abcdef  2027-01-15 08:00:00  (every)  (any)   op  -                   "
            "            whole  usb #-#.#: device de…",
            "fedcba9876543210  2027-01-15 08:00:00  gw-03    sshd    op  a scanner on the LAN"
            ", every n…  whole  # # # gw sshd[#]: co…",
        ]
        # The start of a cut line's shape says so: MATCH start.
        start = {**rows[0], "id": "00000000feedface", "shape": prefix_shape(WRITE[:500]),
                 "prefix": True}
        assert render_mutes([start], 100)[1] == (
            "00000000feedface  2027-01-15 08:00:00  (every)  (any)   op  -       start  "
            '{"ts": "#", "level": "er…')
        # Not a terminal: nothing is cut.
        assert render_mutes(rows, None)[2].endswith(
            "a scanner on the LAN, every night at two  whole  " + message_shape(CLOSED))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_forged_list_numbered_past_the_server_is_undone_by_resend_reset(
        fleet: tuple[FleetSetup, Mosquitto]) -> None:
    """A list a stolen server identity published with revision 2^31-1 (review, December
    2026: before, the device ignored every later list of the server's until 2094, and said
    nothing). The device says so and counts it; `nanofleet mutes resend --reset` sends the
    server's list marked reset, which the device applies whatever it holds."""
    setup, broker = fleet
    device = "gw-forged"
    send_alerts(broker, [alert(device, f"{device}-1", 1, "sshd", CLOSED, "security")])
    alert_id = wait_alerts(setup, 1, device)[0]["id"]
    code, out, err = nf("alerts", "mute", str(alert_id), *client_args(setup))
    assert code == 0, err
    servers = retained(broker, device)
    forged = MuteList(revision=2**31 - 1, mutes=[AlertMute(
        id="f" * 32, shape=message_shape("Failed password for root"),
        expires=time.time() + 90 * 86_400, reason="forged")])
    counters, mutes = Counters(), MuteSet()
    inbox = MuteInbox(mutes, counters, device)  # the agent's inbox, as a device feeds it
    assert inbox.submit(encode_mute_list(forged))
    assert not inbox.submit(encode_mute_list(servers))  # the server's: numbered lower
    assert counters.get("mute_lists_stale") == 1 and mutes.revision == 2**31 - 1

    # Only an admin may resend; a deploy token is refused and nothing is sent.
    deployer = api(setup, "POST", "/api/v1/tokens",
                   json={"name": "deployer", "scopes": ["deploy"]}).json()["token"]
    code, out, err = nf("mutes", "resend", "--device", device, "--reset",
                        *client_args(setup, deployer))
    assert code == 1 and "needs 'admin'" in err
    code, out, err = nf("mutes", "resend", "--device", device, "--reset", *client_args(setup))
    assert code == 0, err
    assert out.strip() == "sent 1 mute lists marked reset, 1 acknowledged by the broker"
    reset = retained(broker, device)
    assert reset.reset and reset.mutes == servers.mutes
    assert inbox.submit(encode_mute_list(reset))  # applied below the forged revision
    assert mutes.revision == reset.revision and [
        a["id"] for a in mutes.active(time.time(), time.monotonic())] == [
        m.id for m in servers.mutes]
    assert not inbox.submit(encode_mute_list(reset))  # the same list again: a replay
    # a plain resend (the default) is not marked, and the audit log keeps both
    code, out, err = nf("mutes", "resend", "--json", *client_args(setup))
    assert code == 0 and json.loads(out)["reset"] is False
    entries = [e for e in api(setup, "GET", "/api/v1/audit").json()["entries"]
               if e["action"] == "mutes-resend"]
    assert [e["detail"]["reset"] for e in entries] == [False, True]
