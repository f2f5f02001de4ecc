"""`GET /api/v1/alert-shapes` and `nanofleet alerts shapes` against a real `nanofleet server
run` process and a real Mosquitto: devices send alerts over MQTT (one message with other
values, repeats the agent held back, a 900-character line the server keeps cut, a line
with an escape sequence), a reader ranks them, an operator judges and mutes the top ones
from the command line and the ranking follows; then the table's layout exactly."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from contract.mutes import message_shape, prefix_shape
from fleet_server.cli.alerts import render_shapes
from hil.fleet import FleetSetup
from tests.support.alert_fleet import alert, alert_fleet, api, send_alerts, wait_alerts
from tests.support.alert_lines import CLOSED, CLOSED_AGAIN, FAILED, FAILED_AGAIN, USB
from tests.support.fleet_cli import nf
from tests.support.json_log import WRITE
from tests.support.mosquitto import Mosquitto

GW, GW2 = "gw-shapes", "gw-shapes-2"
ESCAPED = "login banner \x1b[31mred\x1b[0m\tend"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FleetSetup, Mosquitto]]:
    with alert_fleet(tmp_path_factory.mktemp("shapes")) as running:
        yield running


def client_args(setup: FleetSetup, token: str | None = None) -> list[str]:
    return ["--server", setup.url, "--token", token or setup.token]


def columns(line: str) -> list[str]:
    return re.split(r" {2,}", line.rstrip())


def shapes(setup: FleetSetup, token: str | None = None, **params: Any) -> dict[str, Any]:
    r = api(setup, "GET", "/api/v1/alert-shapes", token, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_rank_judge_and_mute_the_top_shapes(fleet: tuple[FleetSetup, Mosquitto],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    setup, broker = fleet
    sent = [(GW, "sshd", CLOSED, "security", 0), (GW, "sshd", CLOSED_AGAIN, "security", 6),
            (GW, "sshd", CLOSED, "security", 0), (GW, "sshd", FAILED, "security", 0),
            (GW, "sshd", FAILED_AGAIN, "auth", 0), (GW, "kernel", USB, "hardware", 0),
            (GW, "app", WRITE, "storage", 0), (GW, "motd", ESCAPED, "security", 0),
            (GW2, "sshd", FAILED, "security", 2), (GW2, "sshd", CLOSED, "security", 0)]
    send_alerts(broker, [alert(device, f"{device}-{i}", i, source, text, label)
                         .model_copy(update={"repeats": repeats})
                         for i, (device, source, text, label, repeats) in enumerate(sent, 1)])
    listed = wait_alerts(setup, 8, GW) + wait_alerts(setup, 2, GW2)
    assert len(listed) == 10, listed
    newest = {}  # (device, text) -> the newest alert id
    for a in sorted(listed, key=lambda a: a["id"]):
        newest[(a["device_id"], message_shape(a["text"]), a["source"])] = a["id"]

    # A reader may rank; without a token, nothing.
    viewer = api(setup, "POST", "/api/v1/tokens",
                 json={"name": "shapes-viewer", "scopes": ["read"]}).json()["token"]
    assert api(setup, "GET", "/api/v1/alert-shapes", token="wrong").status_code == 401
    here = shapes(setup, viewer, device=GW)
    assert (here["total_shapes"], here["alerts_read"], here["complete"]) == (5, 8, True)
    top = [(g["source"], g["shape"], g["count"], g["alerts"], g["repeats"])
           for g in here["shapes"][:2]]
    assert top == [("sshd", message_shape(CLOSED), 9, 3, 6),
                   ("sshd", message_shape(FAILED), 2, 2, 0)]
    closed, failed = here["shapes"][:2]
    assert closed["alert_id"] == newest[(GW, message_shape(CLOSED), "sshd")]
    assert failed["labels"] == {"auth": 1, "security": 1}
    assert (closed["devices"], closed["device_ids"], closed["muted"], closed["false_alarms"]) \
        == (1, [GW], False, 0)
    cut = next(g for g in here["shapes"] if g["source"] == "app")
    assert (cut["shape"], cut["prefix"], cut["mutable"]) == (prefix_shape(WRITE[:500]), True,
                                                             True)
    fleetwide = shapes(setup, viewer)
    assert [(g["shape"], g["count"], g["devices"], g["device_ids"])
            for g in fleetwide["shapes"][:2]] == [
        (message_shape(CLOSED), 10, 2, [GW, GW2]), (message_shape(FAILED), 5, 2, [GW2, GW])]
    assert shapes(setup, viewer, limit=1)["shapes"] == fleetwide["shapes"][:1]
    assert shapes(setup, since=time.time() + 3600)["shapes"] == []
    for bad in ({"limit": 0}, {"limit": 201}, {"device": "../x"}, {"since": "nan"}):
        r = api(setup, "GET", "/api/v1/alert-shapes", params=bad)
        assert r.status_code == 422, (bad, r.text)

    # The table, read with the reader's token: the most alerting first, the shape last.
    monkeypatch.setenv("COLUMNS", "160")
    code, out, err = nf("alerts", "shapes", "--device", GW, *client_args(setup, viewer))
    assert code == 0, err
    lines = out.splitlines()
    assert columns(lines[0]) == ["COUNT", "LABELS", "SOURCE", "DEVICES", "JUDGED", "MUTED",
                                 "ALERT", "SHAPE"]
    assert columns(lines[1]) == ["9", "security 9", "sshd", GW, "-", "no",
                                 str(closed["alert_id"]), message_shape(CLOSED)]
    assert columns(lines[2])[:3] == ["2", "auth 1, security 1", "sshd"]
    assert "login banner ?[#mred?[#m end" in out and "\x1b" not in out
    assert any(x.endswith("…") and columns(x)[2] == "app" for x in lines)
    assert all(len(x) <= 160 for x in lines) and len(lines) == 6
    code, out, err = nf("alerts", "shapes", "--device", GW, "--json",
                        *client_args(setup, viewer))
    assert code == 0 and json.loads(out) == here, err
    code, out, err = nf("alerts", "shapes", "--since", "1h", "--limit", "1", "--json",
                        *client_args(setup, viewer))
    assert code == 0 and json.loads(out)["shapes"] == fleetwide["shapes"][:1], err
    code, out, err = nf("alerts", "shapes", "--limit", "0", *client_args(setup))
    assert code == 1 and out == "" and "limit" in err

    # The workflow: judge the top row, mute it; the ranking says so, --unjudged leaves it out.
    code, _, err = nf("alerts", "verdict", str(closed["alert_id"]), "false-alarm",
                      *client_args(setup))
    assert code == 0, err
    code, _, err = nf("alerts", "mute", str(closed["alert_id"]), *client_args(setup))
    assert code == 0, err
    code, _, err = nf("alerts", "verdict", str(failed["alert_id"]), "right",
                      *client_args(setup))
    assert code == 0, err
    code, out, err = nf("alerts", "shapes", "--device", GW, *client_args(setup, viewer))
    assert code == 0, err
    rows = [columns(x) for x in out.splitlines()[1:3]]
    assert [r[4:6] for r in rows] == [["false alarm 1", "yes"], ["right 1", "no"]]
    code, out, err = nf("alerts", "shapes", "--device", GW, "--unjudged", "--json",
                        *client_args(setup, viewer))
    assert code == 0, err
    left = json.loads(out)
    assert sorted(g["source"] for g in left["shapes"]) == ["app", "kernel", "motd"]
    assert left["total_shapes"] == 5
    # Fleet-wide, the mute of GW alone covers that shape on one of its two devices.
    both = shapes(setup)["shapes"][0]
    assert (both["shape"], both["muted"], both["muted_devices"], both["devices"]) == (
        message_shape(CLOSED), False, 1, 2)
    code, out, err = nf("alerts", "shapes", *client_args(setup))
    assert code == 0 and columns(out.splitlines()[1])[3:6] == ["2", "false alarm 1", "1/2"]
    code, out, err = nf("alerts", "shapes", "--device", "gw-none", *client_args(setup))
    assert (code, out) == (0, "(no alerts from gw-none on the server)\n"), err


def test_shapes_table_layout_exactly() -> None:
    base = {"prefix": False, "mutable": True, "repeats": 0, "first_received_at": 1.0,
            "last_received_at": 2.0, "false_alarms": 0, "right": 0, "muted": False,
            "muted_devices": 0}
    rows = [
        {**base, "shape": message_shape(CLOSED), "source": "sshd", "count": 412, "alerts": 12,
         "repeats": 400, "labels": {"security": 400, "auth": 12}, "devices": 1,
         "device_ids": ["gw-03"], "alert_id": 9031, "false_alarms": 2, "muted": True,
         "muted_devices": 1},
        {**base, "shape": prefix_shape(WRITE[:500]), "prefix": True, "source": "app",
         "count": 7, "alerts": 7, "labels": {"storage": 7}, "devices": 5,
         "device_ids": ["a", "b", "c", "d", "e"], "alert_id": 88, "right": 1,
         "muted_devices": 2},
        {**base, "shape": "", "mutable": False, "source": "motd\x1b", "count": 1,
         "alerts": 1, "labels": {"x": 1}, "devices": 1, "device_ids": ["gw-03"],
         "alert_id": 7},
    ]
    assert render_shapes(rows, 110) == [
        "COUNT  LABELS                 SOURCE  DEVICES  JUDGED         MUTED  ALERT  SHAPE",
        "412    security 400, auth 12  sshd    gw-03    false alarm 2  yes    9031   "
        "# # # gw sshd[#]: connection clos…",
        "7      storage 7              app     5        right 1        2/5    88     "
        '{"ts": "#", "level": "error", "lo…',
        "1      x 1                    motd?   gw-03    -              can't  7      "
        "(blank line)",
    ]
    # Not a terminal: nothing cut; the start of a cut line's shape ends in "…".
    assert render_shapes(rows[1:2], None)[1].endswith(prefix_shape(WRITE[:500]) + "…")
