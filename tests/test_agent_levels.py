"""End to end: the journal's PRIORITY weighed in by the real agent process (real journal
file, real Mosquitto, the shipped model in ONNX Runtime)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from agent import default_bundle_path
from agent.level_evidence import LevelOffsets
from agent.model import LoadedModel
from contract.bundle import pack_bundle, read_bundle
from tests.support.agent_proc import AgentProcess, write_config
from tests.support.journal import JournalWriter
from tests.support.journal_agent import agent_over_journal
from tests.support.mqtt_client import Collector

DEV = "gw-levels"
ROOT = f"nanofleet/v1/dev/{DEV}"
# Words the shipped model reads as a storage fault at about 0.88 (the label at 0.63), below
# the default alert thresholds (a label at 0.8, anomaly at 0.95): the level decides. (One
# word moves such lines a long way, and every retrain moves them: these words were the
# test's before the warning and notice reviews were applied, then `sda: bad sector 7`
# (0.66 on rule 6's model), and before the model dropped lines' heads `very slow block 7`;
# docs/model.md.)
CRIT = "sda: crc mismatch on block 7"
INFO = "sda: crc mismatch on block 8"   # the same features (digits are masked)


def shifted(anomaly: float, offset: float) -> float:
    return 1 / (1 + math.exp(-(math.log(anomaly / (1 - anomaly)) + offset)))


def run(tmp_path: Path, port: int, extra: str,
        alerts_expected: int) -> tuple[dict[str, float], list[dict], dict]:
    """(anomaly per text as published, alerts, a technician's classify at crit) of one
    agent run over the journal file."""
    journal = tmp_path / "j" / "levels.journal"
    journal.parent.mkdir(exist_ok=True)
    if not journal.exists():
        JournalWriter(journal).append([{"MESSAGE": CRIT, "PRIORITY": "2"},
                                       {"MESSAGE": INFO, "PRIORITY": "6"}])
    with agent_over_journal(tmp_path, port, journal, DEV, extra, results=2) as (
            agent, sub, items):
        # A batch's alerts are committed with its results and sent right after them.
        if alerts_expected:
            sub.wait_for(lambda ms: any(m.topic == f"{ROOT}/alerts" for m in ms))
        else:
            time.sleep(1.0)
        alerts = [json.loads(m.payload) for m in sub.on(f"{ROOT}/alerts")]
        asked = agent.query("classify", text=CRIT, level="crit")
        weighed = agent.query("metrics")["result"]["counters"].get("lines_level_weighed", 0)
        assert weighed == (0 if "enabled = false" in extra else 2)
        assert agent.query("classify", text=CRIT, level="loud")["ok"] is False
    return {i["text"]: i["anomaly"] for i in items}, alerts, asked["result"][0]


def test_the_level_moves_the_anomaly_and_decides_the_alert(tmp_path: Path, broker) -> None:
    model = LoadedModel.load(default_bundle_path())
    _, raw = model.classify([CRIT])
    model.close()
    a = float(raw[0])
    assert 0.8 < a < 0.95, "the test's words no longer sit below the alert thresholds"
    off = LevelOffsets()

    seen, alerts, asked = run(tmp_path, broker.port, "", alerts_expected=1)
    assert seen[CRIT] == pytest.approx(shifted(a, off.crit), abs=2e-3)
    assert seen[INFO] == pytest.approx(shifted(a, off.info), abs=2e-3)
    assert [al["item"]["text"] for al in alerts] == [CRIT]
    reason = alerts[0]["reason"]
    assert "(logged at crit); why: " in reason, reason
    # The words that pushed the line towards an alert, as classify --explain names them.
    why = reason.split("; why: ")[1].split(", ")
    assert 1 <= len(why) <= 3 and all(w.split()[0] in CRIT and float(w.split()[1]) > 0
                                       for w in why), why
    assert alerts[0]["item"]["label"] == "storage"
    # A technician asks what the agent makes of the line at crit: the same as the pipeline.
    assert asked["anomaly"] == pytest.approx(seen[CRIT], abs=2e-4)
    assert asked["words_anomaly"] == pytest.approx(a, abs=2e-4) and asked["level"] == "crit"

    # Switched off, the words alone decide: the same score for both, and no alert.
    seen, alerts, asked = run(tmp_path, broker.port,
                       "\n[model.level_evidence]\nenabled = false\n", alerts_expected=0)
    assert seen[CRIT] == pytest.approx(a, abs=2e-3) and seen[INFO] == seen[CRIT]
    assert alerts == []
    assert asked["anomaly"] == asked["words_anomaly"] and "is off" in asked["level"]


def test_a_bundle_brings_its_own_offsets_and_the_operators_still_win(
        tmp_path: Path, broker) -> None:
    """The model's own calibration travels in its manifest (contract.bundle_features): the
    agent scores with the bundle's offsets where its config sets none, and with the
    operator's where it does. The shipped bundle with other offsets: info +5 (the info
    line becomes an alert), crit -5, and the operator's `crit = 3.79` in the config."""
    bundle = read_bundle(default_bundle_path().read_bytes())
    ours = bundle.manifest.level_offsets
    assert ours is not None
    mine = ours.model_copy(update={"info": 5.0, "crit": -5.0})
    manifest = bundle.manifest.model_copy(update={"version": 2, "level_offsets": mine})
    path = tmp_path / "calibrated.nfb"
    path.write_bytes(pack_bundle(manifest, bundle.files))
    model = LoadedModel.load(default_bundle_path())
    _, raw = model.classify([CRIT])
    model.close()
    a = float(raw[0])
    seen, alerts, asked = run(tmp_path, broker.port, f'\n[model]\nbundle = "{path}"\n'
                              "[model.level_evidence.offsets]\ncrit = 3.79\n",
                              alerts_expected=1)
    assert seen[INFO] == pytest.approx(shifted(a, 5.0), abs=2e-3)  # the bundle's
    assert seen[CRIT] == pytest.approx(shifted(a, 3.79), abs=2e-3)  # the operator's
    assert alerts and alerts[0]["model_version"] == 2
    assert asked["anomaly"] == pytest.approx(seen[CRIT], abs=2e-4)  # classify agrees


def test_an_ordinary_users_line_does_not_stand_in_for_roots_alerts(
        tmp_path: Path, broker) -> None:
    """Alerts group repeats per (source, label, uid): an ordinary user's `logger -t sshd`
    line, first in the window, no longer goes out as the alert with the real sshd's
    alerts of that window folded into its "and N more" (review, December 2026); its
    reason says who logged it."""
    forged = "Failed password for root from 203.0.113.7 port 4242 ssh2"
    real = "Failed password for invalid user admin from 203.0.113.9 port 5151 ssh2"
    journal = tmp_path / "j" / "auth.journal"
    journal.parent.mkdir()
    JournalWriter(journal).append([
        {"MESSAGE": forged, "SYSLOG_IDENTIFIER": "sshd", "_UID": "1000", "PRIORITY": "6"},
        {"MESSAGE": real, "SYSLOG_IDENTIFIER": "sshd", "_UID": "0", "PRIORITY": "6"},
        {"MESSAGE": real.replace("5151", "5152"), "SYSLOG_IDENTIFIER": "sshd", "_UID": "0",
         "PRIORITY": "6"},
    ])
    state = tmp_path / "state"
    source = (f'[[sources]]\nkind = "journald"\nfiles = ["{journal}"]\n'
              'start_at = "beginning"\ntrust_fields = true\n')
    cfg = write_config(tmp_path / "agent.toml", DEV, state, broker.port, source)
    sub = Collector(broker.port, f"{ROOT}/#")
    agent = AgentProcess(cfg, state).start()
    try:
        sub.wait_for(lambda ms: sum(m.topic == f"{ROOT}/alerts" for m in ms) >= 2,
                     timeout=30)
        time.sleep(0.5)  # the third (root's repeat) is grouped, not sent
        alerts = [json.loads(m.payload) for m in sub.on(f"{ROOT}/alerts")]
        grouped = agent.query("metrics")["result"]["counters"].get("alerts_grouped", 0)
    finally:
        agent.stop()
        sub.close()
    assert [a["item"]["text"] for a in alerts] == [forged, real]
    assert "(logged by uid 1000, not a system user)" in alerts[0]["reason"]
    assert "logged by uid" not in alerts[1]["reason"]
    assert grouped == 1
