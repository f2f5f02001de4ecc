"""An alert of a very long line (``max_line_bytes`` may be up to 1 MiB) reaches the fleet
server: the alert carries at most MAX_ALERT_TEXT_CHARS of the line, marked truncated
(review, December 2026: control characters, 6 bytes each in JSON, made a 43 KB line an
alert over the server's 256 KiB report limit; the broker took it and the server refused
it, lost with nothing counted). A real agent process and a real Mosquitto; the server's
own report parser reads what was published."""

from __future__ import annotations

import json
import time
from pathlib import Path

from contract.limits import MAX_ALERT_TEXT_CHARS
from fleet_server.device_reports import parse_report
from tests.support.agent_proc import AgentProcess, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector

DEV = "gate-11"
ROOT = f"nanofleet/v1/dev/{DEV}"
LINE = "sshd[311]: Failed password for root from 203.0.113.9 port 4242 ssh2 " + "\x01" * 60_000


def test_an_alert_of_a_long_line_is_cut_and_the_server_takes_it(tmp_path: Path,
                                                                 broker: Mosquitto) -> None:
    log = tmp_path / "auth.log"
    log.write_text("")
    state = tmp_path / "state"
    src = f'[[sources]]\nkind = "file"\nname = "auth"\npath = "{log}"\nstart_at = "beginning"\n'
    cfg = write_config(tmp_path / "agent.toml", DEV, state, broker.port, src,
                       "[alerts]\nexplain = false\n[pipeline]\nmax_line_bytes = 100000\n")
    alerts = Collector(broker.port, f"{ROOT}/alerts")
    agent = AgentProcess(cfg, state).start()
    try:
        with open(log, "a") as f:
            f.write(LINE + "\n")
        [msg] = alerts.wait_for(lambda ms: len(ms) >= 1, timeout=30)
        doc = json.loads(msg.payload)
        assert doc["item"]["text"] == LINE[:MAX_ALERT_TEXT_CHARS] and doc["item"]["truncated"]
        report = parse_report(msg.topic, bytes(msg.payload), time.time())
        assert report.kind == "alerts" and report.device_id == DEV
    finally:
        alerts.close()
        agent.stop()
