"""`nanofleet alerts list|verdict|export` against a real `nanofleet server run` process and
a real Mosquitto: a device sends alerts over MQTT, the operator lists them, judges them
and exports the judged lines, all through the CLI. Each test has its own device, so none
depends on another's verdicts."""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleet_server.cli.alerts import render_table
from hil.fleet import FleetSetup
from tests.support.alert_fleet import alert, alert_fleet, api, wait_alerts
from tests.support.alert_fleet import send_alerts as publish
from tests.support.fleet_cli import nf
from tests.support.mosquitto import Mosquitto

SSH = "Failed password for root from 203.0.113.9 port 52144 ssh2"
EXT4 = ("EXT4-fs error (device mmcblk0p2): ext4_find_entry:1455: inode #2: comm systemd: "
        "reading directory lblock 0")
KEX = "error: kex_exchange_identification: Connection closed by remote host"
CRON = "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"
LONG = ("nginx: 2026/12/03 11:35:26 [error] 15895#15895: *10 open() \"/var/www/html/.env\" "
        "failed (2: No such file or directory), client: 10.77.0.34, server: _, request: "
        "\"GET /.env HTTP/1.1\", host: \"gw-03.example\", referrer: \"-\" " + "x" * 120)
ESCAPED = "login banner \x1b[31mred\x1b[0m\tend"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FleetSetup, Mosquitto]]:
    with alert_fleet(tmp_path_factory.mktemp("verdict-cli")) as running:
        yield running


def client_args(setup: FleetSetup, token: str | None = None) -> list[str]:
    return ["--server", setup.url, "--token", token or setup.token]


def send_alerts(setup: FleetSetup, broker: Mosquitto, device: str,
                lines: list[tuple[str, str, str]]) -> dict[str, dict[str, Any]]:
    """Publish (source, text, label) alerts as `device`; the server's views by text once
    it lists them all."""
    publish(broker, [alert(device, f"{device}-{i}", i, source, text, label)
                     for i, (source, text, label) in enumerate(lines, 1)])
    listed = wait_alerts(setup, len(lines), device)
    assert len(listed) == len(lines), listed
    return {a["text"]: a for a in listed}


def columns(line: str) -> list[str]:
    return re.split(r" {2,}", line.rstrip())


def when(alert: dict[str, Any]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(alert["received_at"]))


def test_list_prints_a_table_cut_to_the_terminal_and_the_apis_json(
        fleet: tuple[FleetSetup, Mosquitto], monkeypatch: pytest.MonkeyPatch) -> None:
    setup, broker = fleet
    device = "gw-list"
    by_text = send_alerts(setup, broker, device, [
        ("sshd", SSH, "security"), ("nginx", LONG, "security"), ("motd", ESCAPED, "security")])

    code, out, err = nf("alerts", "list", "--device", device, "--json", *client_args(setup))
    assert code == 0, err
    assert json.loads(out) == api(setup, "GET", "/api/v1/alerts",
                                  params={"device": device}).json()

    monkeypatch.setenv("COLUMNS", "140")
    code, out, err = nf("alerts", "list", "--device", device, *client_args(setup))
    assert code == 0, err
    lines = out.splitlines()
    assert columns(lines[0]) == ["ID", "RECEIVED", "DEVICE", "LABEL", "SCORE", "VERDICT",
                                 "SOURCE", "TEXT"]
    # Newest first, as the API lists them; every column starts at the same place.
    ssh, long, escaped = by_text[SSH], by_text[LONG], by_text[ESCAPED]
    assert [int(columns(x)[0]) for x in lines[1:]] == [escaped["id"], long["id"], ssh["id"]]
    assert len({len(x) - len(columns(x)[-1]) for x in lines}) == 1
    assert columns(lines[3]) == [str(ssh["id"]), when(ssh), device, "security", "0.90", "-",
                                 "sshd", SSH]
    cut = columns(lines[2])
    assert cut[:-1] == [str(long["id"]), when(long), device, "security", "0.90", "-", "nginx"]
    assert len(lines[2]) == 140 and cut[-1] == LONG[:len(cut[-1]) - 1] + "…"
    # A device's escape sequences never reach the operator's terminal.
    assert columns(lines[1])[-1] == "login banner ?[31mred?[0m end"
    assert "\x1b" not in out and all(len(x) <= 140 for x in lines)

    # Server and token from the environment, as every other command takes them.
    monkeypatch.setenv("NANOFLEET_SERVER", setup.url)
    monkeypatch.setenv("NANOFLEET_TOKEN", setup.token)
    code, out2, err = nf("alerts", "list", "--device", device)
    assert code == 0 and out2 == out, err
    code, out, err = nf("alerts", "list", "--device", "gw-none", *client_args(setup))
    assert (code, out) == (0, "(no alerts from gw-none on the server)\n"), err
    code, _, err = nf("alerts", "list", "--limit", "0", *client_args(setup))
    assert code == 1 and err.startswith("error: ") and "limit" in err


def test_table_layout_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        base = {"device_id": "gw-03", "received_at": 1_800_000_000.0, "score": 0.875,
                "source": "kernel", "slot": "logs", "model_version": 1, "reason": "",
                "repeats": 0}
        rows = [
            {**base, "id": 7, "label": "hardware", "text": EXT4,
             "verdict": {"verdict": "right", "label": "storage", "by": "op", "at": 0.0}},
            {**base, "id": 12, "label": "security", "text": KEX, "source": "sshd",
             "verdict": {"verdict": "false_alarm", "label": "normal", "by": "op", "at": 0.0}},
            {**base, "id": 130, "label": "security", "text": CRON, "source": "cron",
             "verdict": {"verdict": "right", "label": "security", "by": "op", "at": 0.0}},
            {**base, "id": 131, "label": "security", "text": CRON, "source": "cron",
             "verdict": None},
        ]
        head = "ID   RECEIVED             DEVICE  LABEL     SCORE  VERDICT         SOURCE  "
        assert render_table(rows, 100) == [
            head + "TEXT",
            "7    2027-01-15 08:00:00  gw-03   hardware  0.88   right: storage  kernel  "
            "EXT4-fs error (device mm…",
            "12   2027-01-15 08:00:00  gw-03   security  0.88   false alarm     sshd    "
            "error: kex_exchange_iden…",
            "130  2027-01-15 08:00:00  gw-03   security  0.88   right           cron    "
            "pam_unix(cron:session): …",
            "131  2027-01-15 08:00:00  gw-03   security  0.88   -               cron    "
            "pam_unix(cron:session): …",
        ]
        assert {len(line) for line in render_table(rows, 100)[1:]} == {100}
        # Not a terminal (no width): nothing is cut.
        assert render_table(rows[:1], None)[1].endswith(EXT4)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_verdicts_from_the_command_line(fleet: tuple[FleetSetup, Mosquitto]) -> None:
    setup, broker = fleet
    device = "gw-verdict"
    by_text = send_alerts(setup, broker, device, [
        ("sshd", KEX, "security"), ("kernel", EXT4, "hardware"), ("sshd", SSH, "security"),
        ("cron", CRON, "security")])
    kex, ext4, ssh, cron = (by_text[t]["id"] for t in (KEX, EXT4, SSH, CRON))

    # A reader may list but not judge; the server's reason is printed, exit 1.
    viewer = api(setup, "POST", "/api/v1/tokens",
                 json={"name": "viewer", "scopes": ["read"]}).json()["token"]
    code, _, err = nf("alerts", "list", "--device", device, *client_args(setup, viewer))
    assert code == 0, err
    code, out, err = nf("alerts", "verdict", str(cron), "right", *client_args(setup, viewer))
    assert code == 1 and out == "" and err.startswith("error: ") and "needs 'deploy'" in err

    code, out, err = nf("alerts", "verdict", str(kex), "false-alarm", *client_args(setup))
    assert (code, out) == (0, f"alert {kex} ({device}): false alarm, kept as normal\n"), err
    code, out, err = nf("alerts", "verdict", str(ssh), "right", *client_args(setup))
    assert (code, out) == (0, f"alert {ssh} ({device}): right, kept as security\n"), err
    code, out, err = nf("alerts", "verdict", str(ext4), "right", "--label", "storage",
                        *client_args(setup))
    assert (code, out) == (0, f"alert {ext4} ({device}): right, kept as storage (the model "
                              "said hardware)\n"), err

    # Refused: the server's own message, on stderr, exit 1; nothing stored.
    refused = api(setup, "POST", f"/api/v1/alerts/{cron}/verdict",
                  json={"verdict": "false_alarm", "label": "security"}).json()["error"]
    assert refused["code"] == "invalid-verdict"
    code, out, err = nf("alerts", "verdict", str(cron), "false-alarm", "--label", "security",
                        *client_args(setup))
    assert (code, out, err) == (1, "", f"error: {refused['message']}\n")
    assert "a false alarm is a 'normal' line" in err
    code, _, err = nf("alerts", "verdict", str(cron), "right", "--label", "normal",
                      *client_args(setup))
    assert code == 1 and "use verdict 'false_alarm'" in err
    code, _, err = nf("alerts", "verdict", str(cron), "right", "--label", "Not A Label!",
                      *client_args(setup))
    assert code == 1 and err.startswith("error: ") and "label" in err
    code, out, err = nf("alerts", "verdict", "999999", "right", *client_args(setup))
    assert code == 1 and out == "" and "no alert 999999" in err
    with pytest.raises(SystemExit) as exc:  # argparse: not a verdict word
        nf("alerts", "verdict", str(cron), "maybe", *client_args(setup))
    assert exc.value.code == 2

    code, out, err = nf("alerts", "list", "--device", device, "--json", *client_args(setup))
    assert code == 0, err
    assert {a["id"]: a["verdict"] and (a["verdict"]["verdict"], a["verdict"]["label"],
                                       a["verdict"]["by"])
            for a in json.loads(out)["alerts"]} == {
        kex: ("false_alarm", "normal", "operator"), ext4: ("right", "storage", "operator"),
        ssh: ("right", "security", "operator"), cron: None}
    code, out, err = nf("alerts", "list", "--device", device, *client_args(setup))
    assert {int(columns(x)[0]): columns(x)[5] for x in out.splitlines()[1:]} == {
        kex: "false alarm", ext4: "right: storage", ssh: "right", cron: "-"}

    code, out, err = nf("alerts", "verdict", str(cron), "false-alarm", "--json",
                        *client_args(setup))
    assert code == 0, err
    view = json.loads(out)
    listed = api(setup, "GET", "/api/v1/alerts", params={"device": device}).json()["alerts"]
    assert view == next(a for a in listed if a["id"] == cron)
    assert (view["verdict"]["verdict"], view["verdict"]["label"]) == ("false_alarm", "normal")


def test_export_writes_the_judged_lines(fleet: tuple[FleetSetup, Mosquitto],
                                        tmp_path: Path) -> None:
    setup, broker = fleet
    device = "gw-export"
    by_text = send_alerts(setup, broker, device, [
        ("sshd", SSH, "security"), ("sshd", KEX, "network"), ("cron", CRON, "security"),
        ("kernel", EXT4, "hardware")])
    for text, word in ((SSH, "right"), (KEX, "false-alarm"), (CRON, "false-alarm")):
        code, _, err = nf("alerts", "verdict", str(by_text[text]["id"]), word,
                          *client_args(setup))
        assert code == 0, err
    time.sleep(2.0)  # the last verdict is the only one in the last second
    code, _, err = nf("alerts", "verdict", str(by_text[EXT4]["id"]), "right", "--label",
                      "storage", *client_args(setup))
    assert code == 0, err

    out_file = tmp_path / "exports" / "site.jsonl"
    out_file.parent.mkdir()
    out_file.write_text("an older export\n")
    code, out, err = nf("alerts", "export", "--out", str(out_file), "--device", device,
                        *client_args(setup))
    assert code == 0, err
    assert out == f"wrote 4 lines to {out_file}: normal 2, security 1, storage 1\n"
    body = out_file.read_bytes()
    assert body == api(setup, "GET", "/api/v1/labelled-lines", params={"device": device}).content
    assert [json.loads(x) for x in body.decode().splitlines()] == [
        {"text": SSH, "label": "security"}, {"text": KEX, "label": "normal"},
        {"text": CRON, "label": "normal"}, {"text": EXT4, "label": "storage"}]
    # Replaced in one rename: no temporary file left beside it; the umask's mode.
    assert os.listdir(out_file.parent) == ["site.jsonl"]
    umask = os.umask(0o077)
    os.umask(umask)
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o666 & ~umask

    code, out, err = nf("alerts", "export", "--out", str(out_file), "--device", device,
                        "--with-source", "--since", "1s", *client_args(setup))
    assert code == 0, err
    assert out == f"wrote 1 line to {out_file}: storage 1\n"
    assert [json.loads(x) for x in out_file.read_text().splitlines()] == [
        {"text": EXT4, "label": "storage", "source": "kernel"}]
    code, out, err = nf("alerts", "export", "--out", str(out_file), "--device", device,
                        "--with-source", "--since", "1h", *client_args(setup))
    assert code == 0, err
    assert [(r["source"], r["label"]) for r in map(json.loads, out_file.read_text().splitlines())
            ] == [("sshd", "security"), ("sshd", "normal"), ("cron", "normal"),
                  ("kernel", "storage")]

    # To stdout: the JSONL alone on stdout, the summary on stderr.
    code, out, err = nf("alerts", "export", "--out", "-", "--device", device, "--with-source",
                        *client_args(setup))
    assert code == 0, err
    assert out == api(setup, "GET", "/api/v1/labelled-lines", params={
        "device": device, "with_source": "true"}).text
    assert len(out.splitlines()) == 4
    assert err == "wrote 4 lines to stdout: normal 2, security 1, storage 1\n"
    code, out, err = nf("alerts", "export", "--out", "-", "--device", device, "--json",
                        *client_args(setup))
    assert code == 0 and len(out.splitlines()) == 4
    assert json.loads(err) == {"out": "-", "lines": 4,
                               "labels": {"normal": 2, "security": 1, "storage": 1}}

    empty = tmp_path / "empty.jsonl"
    code, out, err = nf("alerts", "export", "--out", str(empty), "--device", "gw-none",
                        *client_args(setup))
    assert (code, out) == (0, f"wrote 0 lines to {empty} (no verdicts match)\n"), err
    assert empty.read_bytes() == b""
    code, _, err = nf("alerts", "export", "--out", str(empty), "--since", "a week",
                      *client_args(setup))
    assert code == 2 and "invalid duration 'a week'" in err
    code, _, err = nf("alerts", "export", "--out", str(tmp_path), *client_args(setup))
    assert code == 2 and err.startswith(f"error: cannot write {tmp_path}")
