"""End to end: systemd's journal catalog ids weighed in by the real agent process (real
journal file, real Mosquitto, the shipped model in ONNX Runtime; agent.journal_catalog)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from agent import default_bundle_path
from agent.level_evidence import LevelOffsets
from agent.model import LoadedModel
from tests.support.journal import JournalWriter
from tests.support.journal_agent import agent_over_journal
from tests.test_agent_levels import shifted

DEV = "gw-catalog"
ROOT = f"nanofleet/v1/dev/{DEV}"
FAILED_ID = "be02cf6855d2428ba40df7e9d022f03d"   # A start job for a unit has failed
STARTED_ID = "39f53479d3a045ac8e11786248231fbf"  # ... has finished successfully: routine
# A unit that failed to start, as systemd 252 logs it: its unit and description's words
# pull the shipped model's alert labels apart (anomaly ~0.55, no label near 0.8; at err
# ~0.93), so no alert goes out for it without the catalog (docs/model.md, "A device's own
# journal"). The model reads 355 of 400 such unit and description pairs as alerts itself
# (`Failed to start uploader.service - GPS logger.` 0.98; the model before rule 6's: 103
# of 156): these words were picked from the few that sit below the thresholds with the
# labels split (the words before, `uploader.service - GPS logger.`, until rule 6).
FAILED = "Failed to start cloud-push.service - GPS logger."
# A unit that started, whose description reads like trouble (anomaly ~0.81): routine ids
# never lower a line (they could hide "Reached target Emergency Mode.").
STARTED = "Started fault-monitor.service - Disk failure alarm."
# A system user's (www-data's) line with systemd's failure id: not the service manager's,
# so the id is the logger's claim and the words decide (anomaly ~0.45, ~0.90 at err).
FORGED = "Failed to start cloud-push.service - Kiosk display."
# A crash as systemd-coredump reports it (always at crit), of an ordinary user's program: the
# words score ~0.00; the id counts from the core dump service whatever the level.
CORE_ID = "fc2e22bc6ee647b6b90729ab34a250b1"
CORE = "Process 4242 (meter-cli) of user 1000 dumped core."


def run(tmp_path: Path, port: int, extra: str, alerts_expected: int
        ) -> tuple[dict[str, float], list[dict], dict, int]:
    """(anomaly per text as published, alerts, a technician's classify of FAILED with its
    id at err, lines_catalog_weighed) of one agent run over the journal file."""
    journal = tmp_path / "j" / "catalog.journal"
    journal.parent.mkdir(exist_ok=True)
    if not journal.exists():
        JournalWriter(journal).append([
            {"MESSAGE": FAILED, "PRIORITY": "3", "_UID": "0", "_PID": "1",
             "MESSAGE_ID": FAILED_ID, "SYSLOG_IDENTIFIER": "systemd"},
            {"MESSAGE": STARTED, "PRIORITY": "6", "_UID": "0", "_PID": "1",
             "MESSAGE_ID": STARTED_ID, "SYSLOG_IDENTIFIER": "systemd"},
            {"MESSAGE": FORGED, "PRIORITY": "3", "_UID": "33", "_PID": "4242",
             "MESSAGE_ID": FAILED_ID, "SYSLOG_IDENTIFIER": "systemd"},
            {"MESSAGE": CORE, "PRIORITY": "2", "_UID": "1000", "_PID": "4250",
             "MESSAGE_ID": CORE_ID, "SYSLOG_IDENTIFIER": "systemd-coredump",
             "_SYSTEMD_UNIT": "systemd-coredump@0-4250-0.service"},
        ])
    with agent_over_journal(tmp_path, port, journal, DEV, extra, results=4) as (
            agent, sub, items):
        sub.wait_for(lambda ms: sum(m.topic == f"{ROOT}/alerts" for m in ms)
                     >= alerts_expected)
        time.sleep(0.5)  # nothing more is coming
        alerts = [json.loads(m.payload) for m in sub.on(f"{ROOT}/alerts")]
        asked = agent.query("classify", text=FAILED, level="err", message_id=FAILED_ID.upper())
        weighed = agent.query("metrics")["result"]["counters"].get("lines_catalog_weighed", 0)
        assert agent.query("classify", text=FAILED, message_id="not-an-id")["ok"] is False
    return {i["text"]: i["anomaly"] for i in items}, alerts, asked["result"][0], weighed


def test_the_catalog_sends_a_failed_unit_and_a_crash_and_only_from_their_owners(
        tmp_path: Path, broker) -> None:
    model = LoadedModel.load(default_bundle_path())
    probs, raw = model.classify([FAILED, STARTED, FORGED, CORE])
    model.close()
    assert raw[3] < 0.5, "a core dump's words alone now read as trouble"
    levelled = {t: a for t, a in zip((FAILED, FORGED), run_levels(raw), strict=True)}
    assert raw[0] > 0.5 and max(probs[0][1:]) < 0.8 and max(levelled.values()) < 0.95, \
        "the failed units' words and level no longer sit below the alert thresholds"
    assert raw[1] > 0.5, "the started unit's words alone no longer read as trouble"

    seen, alerts, asked, weighed = run(tmp_path, broker.port, "", alerts_expected=2)
    assert seen[FAILED] >= 0.97 - 1e-4 and seen[CORE] >= 0.97 - 1e-4
    # The routine id and www-data's forged failure id change nothing: the words and the
    # level decide (err for the forgery: www-data is a system user).
    assert seen[STARTED] == pytest.approx(shifted_info(float(raw[1])), abs=2e-3)
    assert seen[FORGED] == pytest.approx(levelled[FORGED], abs=2e-3)
    assert weighed == 2
    assert [a["item"]["text"] for a in alerts] == [FAILED, CORE]
    assert "(journal catalog: A start job for a unit has failed)" in alerts[0]["reason"]
    assert "(journal catalog: Process dumped core)" in alerts[1]["reason"]
    # A technician's classify with the id and level answers as the pipeline scored it.
    assert asked["anomaly"] == pytest.approx(seen[FAILED], abs=2e-4)
    assert asked["catalog"] == "A start job for a unit has failed: an alert"
    assert asked["words_anomaly"] == pytest.approx(float(raw[0]), abs=2e-4)

    # Switched off, the words and the level decide: the failed unit is not sent.
    seen, alerts, asked, weighed = run(tmp_path, broker.port,
                                       "\n[model.catalog_evidence]\nenabled = false\n",
                                       alerts_expected=0)
    assert weighed == 0 and seen[FAILED] == pytest.approx(levelled[FAILED], abs=2e-3)
    assert seen[CORE] == pytest.approx(float(raw[3]), abs=2e-3)  # no level: a user's
    assert alerts == []
    assert "is off" in asked["catalog"]


def run_levels(raw: object) -> list[float]:
    """The two err lines' anomaly with the level weighed in (agent defaults)."""
    err = LevelOffsets().err
    return [shifted(float(raw[i]), err) for i in (0, 2)]  # type: ignore[index]


def shifted_info(anomaly: float) -> float:
    return shifted(anomaly, LevelOffsets().info)
