"""The level a line's own text states (agent.text_levels): the reader, the switch on file
and MQTT sources, and the real agent (followed files, a real Mosquitto, the shipped model in
ONNX Runtime) weighing it in as a journal line's level on the source that asks only; the
classify query and ``nanofleet model eval --alerts --text-levels`` scoring the same way."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from agent import default_bundle_path
from agent.config import ConfigError, load_config
from agent.level_evidence import LevelEvidenceConfig
from agent.model import LoadedModel
from agent.sources.base import Line
from agent.text_levels import SCAN_CHARS, level_in_text, read_text_levels
from contract.bundle import load_bundle
from nanomodel.cli import main as nanofleet_model
from tests.support.file_agent import agent_over_two_files

DEV = "gw-text-levels"
ROOT = f"nanofleet/v1/dev/{DEV}"
# A Java application's log4j file: the model has never read it; the level is in the text.
STALLED = "2026-05-01 12:00:00,123 ERROR [main] c.acme.Pump - pump 3 stalled, retrying"
CYCLE = "2026-05-01 12:00:01,456 INFO  [main] c.acme.Pump - cycle 44 took 12 ms"


@pytest.mark.parametrize(("line", "level"), [
    (STALLED, 3),
    (CYCLE, 6),
    ("2015-07-29 17:41:44,747 - WARN  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:"
     "QuorumCnxManager@401] - Cannot open channel to 3", 4),  # ZooKeeper's log4j
    ("2025-03-04 10:11:12,345 [myid:1] - INFO  [main:QuorumPeerMain@12] - Starting", 6),
    ("ERROR:root:pump stalled", 3),  # Python logging's default
    ("2026-05-01 12:00:00 - pump - CRITICAL - pressure lost", 2),
    ("[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6", 3),
    ("[Wed Oct 11 14:32:52.000 2023] [core:warn] [pid 123] AH00045: child process", 4),
    ("2025/03/01 12:00:00 [crit] 123#123: *1 open() failed", 2),  # nginx
    ('ts=2026-05-01T12:00:00Z level=warn msg="queue 80 % full"', 4),  # logfmt
    ('{"time":"2026-05-01T12:00:00Z","level":"error","msg":"disk gone"}', 3),
    ('{"level": "DEBUG", "msg": "tick"}', 7),
    ("Mar  3 10:15:02 gw-7 pumpd[3]: FATAL pump 3 lost", 2),  # after the syslog head
    # No level stated: an ordinary word, a value, a word inside another, past the start.
    ("pumpctl[3]: error: the disk is gone", None),
    ("pumpctl: status=OK ERROR=0", None),
    ("ERRORS counted: 3", None),
    ("java.lang.NullPointerException: Info missing", None),
    ("x" * SCAN_CHARS + " ERROR late", None),
    ("x" * (SCAN_CHARS - 4) + " ERRORS", None),  # cut by the window: ERR is no word
    ("INFO", 6),
    ("", None),
])
def test_the_level_a_line_states(line: str, level: int | None) -> None:
    assert level_in_text(line) == level


def test_only_the_asking_sources_lines_without_a_level_are_read() -> None:
    lines = [Line("app", STALLED, 0.0), Line("other", STALLED, 0.0),
             Line("app", CYCLE, 0.0, level=2), Line("app", "no level here", 0.0)]
    read_text_levels(lines, frozenset({"app"}))
    assert [ln.level for ln in lines] == [3, None, 2, None]


def test_reading_is_bounded_and_linear() -> None:
    """A hostile line (the writer chooses its text) is read in its first characters only."""
    import time

    worst = "[" * 60_000 + "level=" * 10_000
    t0 = time.perf_counter()
    assert level_in_text(worst) is None
    assert time.perf_counter() - t0 < 0.05


@pytest.mark.parametrize("kind", ["file", "mqtt"])
def test_a_bad_switch_names_the_field(tmp_path: Path, kind: str) -> None:
    source = (f'kind = "file"\npath = "{tmp_path}/a.log"\n' if kind == "file"
              else 'kind = "mqtt"\ntopics = ["sensors/#"]\n')
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'device_id = "d1"\nstate_dir = "{tmp_path}"\n[mqtt]\nhost = "127.0.0.1"\n'
                   f'[[sources]]\n{source}text_levels = "sometimes"\n')
    with pytest.raises(ConfigError, match=r"sources\[0\]\.text_levels: .*use true or false"):
        load_config(cfg, secrets=False)


def _shifted(p: float, by: float) -> float:
    return 1.0 / (1.0 + math.exp(-(math.log(p / (1.0 - p)) + by)))


def test_the_agent_weighs_a_stated_level_on_the_source_that_asks(tmp_path: Path,
                                                                 broker) -> None:
    offsets = LevelEvidenceConfig().for_bundle(
        load_bundle(default_bundle_path()).manifest.level_offsets).offsets
    model = LoadedModel.load(default_bundle_path())
    _, raw = model.classify([STALLED, CYCLE])
    model.close()
    stalled, cycle = (float(x) for x in raw)
    # The words alone leave the fault below the alert thresholds; its level sends it.
    assert stalled < 0.95 and _shifted(stalled, offsets.err) >= 0.95, stalled
    with agent_over_two_files(tmp_path, broker.port, DEV, [STALLED, CYCLE], "text_levels",
                              results=4) as (agent, sub, seen):
        assert seen[("app", STALLED)] == pytest.approx(_shifted(stalled, offsets.err), abs=2e-3)
        assert seen[("app", CYCLE)] == pytest.approx(_shifted(cycle, offsets.info), abs=2e-3)
        assert seen[("plain", STALLED)] == pytest.approx(stalled, abs=2e-3)
        assert seen[("plain", CYCLE)] == pytest.approx(cycle, abs=2e-3)
        alerts = [json.loads(m.payload) for m in
                  sub.wait_for(lambda ms: any(m.topic == f"{ROOT}/alerts" for m in ms))
                  if m.topic == f"{ROOT}/alerts"]
        assert [(a["item"]["source"], a["item"]["text"]) for a in alerts] == [("app", STALLED)]
        assert "(logged at err)" in alerts[0]["reason"]
        assert agent.query("metrics")["result"]["counters"].get("lines_level_weighed") == 2
        described = {d["name"]: d["text_levels"] for d in agent.query("sources")["result"]}
        assert described == {"app": True, "plain": False}
        # A technician asks how the lines score, as the source that reads levels would.
        asked = agent.query("classify", text=[STALLED, "no level here"],
                            text_levels=True)["result"]
        assert asked[0]["level"] == "err" and "level" not in asked[1]
        assert asked[0]["anomaly"] == pytest.approx(_shifted(stalled, offsets.err), abs=2e-3)
        assert asked[0]["words_anomaly"] == pytest.approx(stalled, abs=2e-3)
        plain_ask = agent.query("classify", text=STALLED)["result"][0]
        assert "level" not in plain_ask
        assert plain_ask["anomaly"] == pytest.approx(stalled, abs=2e-3)
        # A level the query gives wins over the one the text states.
        given = agent.query("classify", text=STALLED, text_levels=True, level="info")
        assert given["result"][0]["level"] == "info"


def test_eval_alerts_reads_the_stated_levels(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"text": STALLED, "label": "alert"}, {"text": CYCLE, "label": "ok"},
            {"text": "pump 3 stalled, retrying", "label": "alert"},
            {"text": "2026-05-01 12:00:02,000 WARN [main] c.acme.Pump - slow", "label": "ok",
             "level": "info"}]  # a level column's value wins over the text's
    data = tmp_path / "site.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["model", "eval", "--alerts", "--data", str(data), "--bundle",
            str(default_bundle_path()), "--normal-label", "ok", "--json"]
    assert nanofleet_model(args) == 0
    before = json.loads(capsys.readouterr().out)
    assert nanofleet_model([*args, "--text-levels"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert before["levels_weighed"] == 1 and after["levels_weighed"] == 3
    assert nanofleet_model(["model", "eval", "--data", str(data), "--bundle",
                            str(default_bundle_path()), "--text-levels"]) != 0
    assert "--text-levels only apply to alert figures" in capsys.readouterr().err
    assert np.isfinite(after["overall"]["model"]["f1"])


@pytest.mark.parametrize("trusted", [True, False])
def test_a_services_stdout_states_its_level_in_a_trusted_journal(tmp_path: Path, broker,
                                                                 trusted: bool) -> None:
    """The usual home of a device's own application: a service printing log4j lines to
    stdout, which journald stores at info (a level that says nothing, so not weighed). With
    text_levels its ERROR is weighed in — for a system user's lines, in a journal whose
    fields are trusted; an ordinary user's line stating ERROR is left to its words, as its
    PRIORITY would be, and in a journal whose writer is not trusted nothing is read."""
    from tests.support.journal import JournalWriter
    from tests.support.journal_agent import agent_over_journal

    offsets = LevelEvidenceConfig().for_bundle(
        load_bundle(default_bundle_path()).manifest.level_offsets).offsets
    by_user = STALLED.replace("pump 3", "pump 4")
    model = LoadedModel.load(default_bundle_path())
    _, raw = model.classify([STALLED, by_user])
    model.close()
    stalled, user = (float(x) for x in raw)
    journal = tmp_path / "j" / "app.journal"
    journal.parent.mkdir()
    stdout = {"PRIORITY": "6", "_TRANSPORT": "stdout", "SYSLOG_IDENTIFIER": "java"}
    JournalWriter(journal).append([{"MESSAGE": STALLED, **stdout, "_UID": "998"},
                                   {"MESSAGE": by_user, **stdout, "_UID": "1000"}])
    with agent_over_journal(tmp_path, broker.port, journal, DEV, "", results=2,
                            source_extra="text_levels = true\n", trust=trusted) as (
            agent, _, items):
        seen = {i["text"]: i["anomaly"] for i in items}
        counters = agent.query("metrics")["result"]["counters"]
        described = agent.query("sources")["result"][0]["text_levels"]
    expected = _shifted(stalled, offsets.err) if trusted else stalled
    assert seen[STALLED] == pytest.approx(expected, abs=2e-3)
    assert seen[by_user] == pytest.approx(user, abs=2e-3)
    assert counters.get("lines_level_weighed", 0) == (1 if trusted else 0)
    assert described is trusted
