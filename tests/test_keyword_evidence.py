"""The keywords as evidence for sources of software the model has never read
(agent.keyword_evidence): the pure shift, its config, and the real agent (two followed
files, a real Mosquitto, the shipped model in ONNX Runtime) applying it to the source that
asks for it only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from agent import default_bundle_path
from agent.config import ConfigError, load_config
from agent.keyword_evidence import (
    KeywordEvidenceConfig,
    apply_keyword_evidence,
    program_of,
    weigh_keywords,
)
from agent.model import LoadedModel
from tests.support.agent_proc import AgentProcess, result_batches, write_config
from tests.support.file_agent import agent_over_two_files
from tests.support.mqtt_client import Collector

DEV = "gw-keywords"
ROOT = f"nanofleet/v1/dev/{DEV}"
# An application's lines the shipped model has never read. Its tag names a program the
# model was not trained on, so every source weighs the keywords in by default: scored by
# the words alone at about 0.74 with its label below 0.8 (no alert), with the keyword's
# +2.4 about 0.97, an alert. The same application's lines without a tag (its own file,
# stdout) are weighed only on a source that asks.
KEYWORD_LINE = "pumpctl: driver error, stopping"
TAGLESS = "pump driver error, stopping"
HEALTHY = "pumpctl: cycle 44 took 12 ms"


def shifted(anomaly: float, offset: float) -> float:
    return 1 / (1 + math.exp(-(math.log(anomaly / (1 - anomaly)) + offset)))


def test_only_the_asked_rows_move_and_the_labels_keep_their_shares() -> None:
    cfg = KeywordEvidenceConfig()
    probs = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]], dtype=np.float32)
    anomaly = np.array([0.5, 0.5, 0.5], dtype=np.float32)
    texts = ["disk ERROR on sda", "disk slow on sda", "disk error on sda"]
    out_p, out_a = apply_keyword_evidence(probs, anomaly, texts, [True, True, False], cfg, 0)
    assert out_a[0] == pytest.approx(shifted(0.5, 2.4), abs=1e-6)  # case-insensitive
    assert out_a[1] == pytest.approx(shifted(0.5, -0.6), abs=1e-6)
    assert out_a[2] == anomaly[2] and (out_p[2] == probs[2]).all()  # bit for bit
    for row, a in zip(out_p[:2], out_a[:2], strict=True):
        assert row[0] == pytest.approx(1 - a, abs=1e-6)
        assert row[1] / row[2] == pytest.approx(1.5, rel=1e-5)  # 0.3 : 0.2 kept
    assert probs[0, 0] == np.float32(0.5) and anomaly[0] == np.float32(0.5)  # not modified
    same_p, same_a = apply_keyword_evidence(probs, anomaly, texts, [False] * 3, cfg, 0)
    assert same_p is probs and same_a is anomaly
    with pytest.raises(ValueError, match="2 texts"):
        apply_keyword_evidence(probs, anomaly, texts[:2], [True] * 3, cfg, 0)


def test_a_line_with_its_level_is_left_to_the_level() -> None:
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], dtype=np.float32)
    anomaly = np.array([0.5, 0.5, 0.5], dtype=np.float32)
    texts = ["fan error", "fan error", "fan error"]
    cfg = KeywordEvidenceConfig()
    _, out, n = weigh_keywords(probs, anomaly, texts, [True, True, False], [None, 3, None],
                               cfg, 0)
    assert n == 1 and out[0] == pytest.approx(shifted(0.5, 2.4), abs=1e-6)
    assert out[1] == anomaly[1] and out[2] == anomaly[2]
    assert weigh_keywords(probs, anomaly, None, None, [None] * 3, cfg, 0)[2] == 0


@pytest.mark.parametrize(("line", "program"), [
    ("pumpctl[311]: driver error", "pumpctl"),
    ("Mar  4 11:00:02 hmi-2 pumpctl[311]: driver error", "pumpctl"),
    ("2025-05-19T13:02:44+0000 hmi-2 postfix/smtpd[9]: connect from x", "postfix"),
    ("Mar  4 11:00:02 hmi-2 sshd(pam_unix)[3]: session opened", "sshd"),
    ("kernel: usb 1-1: new device", "kernel"),
    ("error: the disk is gone", None),  # a level word names no program
    ("WARNING: low battery", None),
    ("driver error, stopping", None),
    ("", None),
])
def test_the_program_a_line_names(line: str, program: str | None) -> None:
    assert program_of(line) == program


def test_known_programs_are_left_to_the_words_unless_configured_otherwise() -> None:
    probs = np.array([[0.5, 0.5]] * 3, dtype=np.float32)
    anomaly = np.array([0.5, 0.5, 0.5], dtype=np.float32)
    texts = ["sshd[4]: fatal: out of memory", "pumpctl[4]: fatal: out of memory",
             "fatal: out of memory"]
    cfg = KeywordEvidenceConfig()
    _, out, n = weigh_keywords(probs, anomaly, texts, None, [None] * 3, cfg, 0)
    assert n == 1 and out[1] == pytest.approx(shifted(0.5, 2.4), abs=1e-6)
    assert out[0] == anomaly[0] and out[2] == anomaly[2]
    off = cfg.model_copy(update={"unknown_programs": False})
    assert weigh_keywords(probs, anomaly, texts, None, [None] * 3, off, 0)[2] == 0
    mine = KeywordEvidenceConfig(known_programs=[*cfg.programs(), "PumpCtl"])
    assert weigh_keywords(probs, anomaly, texts, None, [None] * 3, mine, 0)[2] == 0
    # An MQTT topic's prefix (sensors/pump1: ...) or a journal MESSAGE is no syslog tag:
    # such sources' lines are weighed only where the source asks.
    sensor = ["sensors/pump1: fatal: out of memory"] * 3
    assert cfg.unknown(sensor[0])  # it would read as a program ...
    assert weigh_keywords(probs, anomaly, sensor, None, [None] * 3, cfg, 0,
                          tagged=[False] * 3)[2] == 0  # ... but the source says it is none
    assert weigh_keywords(probs, anomaly, sensor, [True, False, False], [None] * 3, cfg, 0,
                          tagged=[False] * 3)[2] == 1


def test_the_known_programs_are_the_operators_else_the_bundles_else_the_agents() -> None:
    shipped = KeywordEvidenceConfig()
    assert shipped.known_programs is None and "sshd" in shipped.programs()
    # A bundle naming its own: a site fine-tune that read pumpctl and (say) not sshd.
    site = shipped.for_bundle(["pumpctl", "telegraf"])
    assert site.programs() == ("pumpctl", "telegraf")
    assert not site.unknown("pumpctl[4]: fatal: out of memory")
    assert site.unknown("sshd[4]: fatal: out of memory")
    # A bundle naming none (older ones, format 1): the agent's shipped list.
    assert shipped.for_bundle(None) is shipped
    # The operator's list wins over any bundle's, whole.
    mine = KeywordEvidenceConfig(known_programs=["sshd"])
    assert mine.for_bundle(["pumpctl"]).programs() == ("sshd",)
    assert mine.for_bundle(["pumpctl"]).unknown("pumpctl[4]: error")


def test_the_shipped_bundle_names_the_programs_it_was_trained_on() -> None:
    """The default build writes the training data's programs into the manifest, the same
    list the agent keeps for bundles that name none."""
    from contract.bundle import load_bundle
    from nanomodel import default_bundle_path
    from nanomodel.known_programs import trained_programs

    manifest = load_bundle(default_bundle_path()).manifest
    assert manifest.known_programs == trained_programs() == list(KeywordEvidenceConfig().programs())


def test_a_fine_tune_records_the_programs_its_lines_name_as_a_manifest_can_carry() -> None:
    from nanomodel.known_programs import programs_named

    lines = ["pumpctl[3]: cycle done", "pumpctl[3]: cycle done", "Mar  3 10:15:02 gw-7 "
             "valvectl: open", "sshd[4]: Accepted key", "PÜMPCTL[3]: ok", "no tag here",
             "Fanctl: spin"]
    assert programs_named(lines, known={"sshd"}) == ["fanctl", "pumpctl", "valvectl"]
    # A tag in other letters cannot be carried (its lines stay weighed as unknown), and a
    # manifest's room is kept: the most often named first.
    assert programs_named(lines, known={"sshd"}, room=1) == ["pumpctl"]
    assert programs_named(lines, room=0) == []


def test_the_known_programs_are_the_training_datas() -> None:
    """The agent's list is written from nanomodel.realtext.PROGRAMS: a source added to
    training is added to it in the same change (python -m nanomodel.known_programs)."""
    from agent.keyword_evidence import KNOWN_PROGRAMS_PATH
    from nanomodel.known_programs import document

    assert KNOWN_PROGRAMS_PATH.read_text() == document(), \
        "run python -m nanomodel.known_programs"


def test_words_are_plain_text_never_a_pattern() -> None:
    cfg = KeywordEvidenceConfig(words=["(a+)+$", "E!"])
    # A pattern that backtracks exponentially as a regex is only its literal characters
    # here: a long line of "a" does not match it (and takes linear time to say so).
    assert cfg.found("a" * 60_000 + "!") is None
    assert cfg.found("telegraf: e! [outputs.mqtt] dial tcp: timeout") == "E!"
    assert cfg.found("got (a+)+$ in the input") == "(a+)+$"
    assert KeywordEvidenceConfig().found("Disk FAILED") == "fail"


@pytest.mark.parametrize(("text", "field"), [
    ('[model.keyword_evidence]\nwords = [""]\n', "model.keyword_evidence.words"),
    ('[model.keyword_evidence]\nwords = []\n', "model.keyword_evidence.words"),
    ('[model.keyword_evidence]\nmatched = 40\n', "model.keyword_evidence.matched"),
    ('[model.keyword_evidence]\nwordz = ["x"]\n', "model.keyword_evidence.wordz"),
])
def test_bad_config_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(_valid(tmp_path) + text)
    load_config(_write(tmp_path / "good.toml", _valid(tmp_path)), secrets=False)
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as err:
        load_config(cfg, secrets=False)
    assert "mqtt" not in str(err.value)  # only the field at fault is named


def _valid(tmp_path: Path) -> str:
    return (f'device_id = "d1"\nstate_dir = "{tmp_path}"\n[mqtt]\nhost = "127.0.0.1"\n'
            f'[[sources]]\nkind = "file"\npath = "{tmp_path}/a.log"\n')


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_source_flag_that_is_not_a_boolean_is_refused(tmp_path: Path) -> None:
    text = _valid(tmp_path).replace('.log"\n', '.log"\nkeyword_evidence = "sometimes"\n')
    with pytest.raises(ConfigError, match=r"sources\[0\]\.keyword_evidence: .*use true or false"):
        load_config(_write(tmp_path / "agent.toml", text), secrets=False)


def test_the_agent_weighs_keywords_for_unknown_programs_and_sources_that_ask(
        tmp_path: Path, broker) -> None:
    model = LoadedModel.load(default_bundle_path())
    probs, raw = model.classify([KEYWORD_LINE, TAGLESS, HEALTHY])
    labels = model.manifest.labels
    model.close()
    k, t = float(raw[0]), float(raw[1])
    # A retrain moves such lines a long way: pick new words if these fail (docs/model.md).
    assert 0.68 < k < 0.9 and float(probs[0].max()) < 0.8, \
        f"the keyword line no longer sits below the alert thresholds: {k}, {labels}"
    assert 0.1 < t < 0.9, t

    with agent_over_two_files(tmp_path, broker.port, DEV, [KEYWORD_LINE, TAGLESS, HEALTHY],
                              "keyword_evidence", results=6) as (agent, sub, seen):
        # A program the model has not read: weighed on every source.
        for source in ("app", "plain"):
            assert seen[(source, KEYWORD_LINE)] == pytest.approx(shifted(k, 2.4), abs=2e-3)
        # No tag: weighed only where the source asks.
        assert seen[("app", TAGLESS)] == pytest.approx(shifted(t, 2.4), abs=2e-3)
        assert seen[("plain", TAGLESS)] == pytest.approx(t, abs=2e-3)
        alerts = [json.loads(m.payload) for m in
                  sub.wait_for(lambda ms: sum(m.topic == f"{ROOT}/alerts" for m in ms) >= 2)
                  if m.topic == f"{ROOT}/alerts"]
        assert sorted((a["item"]["source"], a["item"]["text"]) for a in alerts) == \
            [("app", KEYWORD_LINE), ("plain", KEYWORD_LINE)]
        assert all("(keyword 'error' weighed in)" in a["reason"] for a in alerts), alerts
        counters = agent.query("metrics")["result"]["counters"]
        assert counters.get("lines_keyword_weighed") == 5  # app's 3, plain's 2 tagged
        described = {d["name"]: d["keyword_evidence"] for d in agent.query("sources")["result"]}
        assert described == {"app": True, "plain": False}
        # A technician asks how a line scores: as a line of any source, then as one of a
        # source that asks.
        plain_ask = agent.query("classify", text=[KEYWORD_LINE, TAGLESS])["result"]
        assert plain_ask[0]["keywords"] == "matched 'error'" and "keywords" not in plain_ask[1]
        assert plain_ask[0]["anomaly"] == pytest.approx(shifted(k, 2.4), abs=2e-3)
        assert plain_ask[0]["words_anomaly"] == pytest.approx(k, abs=2e-3)
        assert plain_ask[1]["anomaly"] == pytest.approx(t, abs=2e-3)
        asked = agent.query("classify", text=[TAGLESS, HEALTHY], keywords=True)["result"]
        assert asked[0]["keywords"] == "matched 'error'" and asked[1]["keywords"] == "none matched"
        assert asked[0]["anomaly"] == pytest.approx(shifted(t, 2.4), abs=2e-3)
        as_journal = agent.query("classify", text=KEYWORD_LINE, keywords=True, level="info")
        assert "keywords" not in as_journal["result"][0]  # the level decides such a line


@pytest.mark.parametrize(("asks", "levels_on"), [(False, True), (True, True), (False, False)])
def test_a_services_stdout_in_the_journal_is_weighed_and_a_levelled_line_is_not(
        tmp_path: Path, broker, asks: bool, levels_on: bool) -> None:
    """The usual home of a device's own application: a systemd service printing to stdout,
    which journald stores at info — a level that says nothing. By default its line is
    weighed when its SYSLOG_IDENTIFIER names a program the model has not read (not by a
    tag-like start of the MESSAGE); on a source that asks, every such line is. The same
    words logged by a root daemon at err are left to the level either way — while the
    level is weighed in: with [model.level_evidence] off, its identifier decides too."""
    from agent.level_evidence import LevelOffsets
    from tests.support.journal import JournalWriter
    from tests.support.journal_agent import agent_over_journal

    again = KEYWORD_LINE + " again"
    model = LoadedModel.load(default_bundle_path())
    _, raw = model.classify([KEYWORD_LINE, TAGLESS, again])
    model.close()
    k, t, k2 = (float(x) for x in raw)
    journal = tmp_path / "j" / "app.journal"
    journal.parent.mkdir()
    stdout = {"PRIORITY": "6", "_TRANSPORT": "stdout", "_UID": "998"}
    JournalWriter(journal).append([
        {"MESSAGE": KEYWORD_LINE, **stdout, "SYSLOG_IDENTIFIER": "pumpctl"},
        # Known to the model by its identifier, whatever its message starts with.
        {"MESSAGE": TAGLESS, **stdout, "SYSLOG_IDENTIFIER": "dhcpcd"},
        {"MESSAGE": again, "PRIORITY": "3", "_TRANSPORT": "syslog", "_UID": "0",
         "SYSLOG_IDENTIFIER": "pumpd"}])
    extra = "" if levels_on else "[model.level_evidence]\nenabled = false\n"
    with agent_over_journal(tmp_path, broker.port, journal, DEV, extra, results=3,
                            source_extra="keyword_evidence = true\n" if asks else "") as (
            agent, _, items):
        seen = {i["text"]: i["anomaly"] for i in items}
        counters = agent.query("metrics")["result"]["counters"]
    assert seen[KEYWORD_LINE] == pytest.approx(shifted(k, 2.4), abs=2e-3)
    assert seen[TAGLESS] == pytest.approx(shifted(t, 2.4) if asks else t, abs=2e-3)
    assert seen[again] == pytest.approx(
        shifted(k2, LevelOffsets().err if levels_on else 2.4), abs=2e-3)
    assert counters.get("lines_keyword_weighed") == (2 if asks or not levels_on else 1)
    assert counters.get("lines_level_weighed", 0) == (1 if levels_on else 0)


def test_a_bundle_that_read_the_program_leaves_its_lines_to_the_words(
        tmp_path: Path, broker) -> None:
    """A site fine-tune that read pumpctl's lines names pumpctl in its manifest's
    known_programs: the agent running it leaves those lines to the model's words (no
    keyword shift, no alert on the keyword alone), while another program it has not read
    is still weighed. Here the shipped bundle repacked with pumpctl added stands for it."""
    from contract.bundle import pack_bundle, read_bundle

    bundle = read_bundle(default_bundle_path().read_bytes())
    read = [*(bundle.manifest.known_programs or []), "pumpctl"]
    site = tmp_path / "site.nfb"
    site.write_bytes(pack_bundle(bundle.manifest.model_copy(
        update={"version": 2, "known_programs": read}), bundle.files))
    other = KEYWORD_LINE.replace("pumpctl", "fanctl")  # 0.91 by its words, 0.99 weighed
    model = LoadedModel.load(default_bundle_path())
    _, raw = model.classify([KEYWORD_LINE, other])
    model.close()
    k, o = (float(x) for x in raw)
    log = tmp_path / "app.log"
    log.write_text(f"{KEYWORD_LINE}\n{other}\n")
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "agent.toml", DEV, state, broker.port,
                       f'[[sources]]\nkind = "file"\npath = "{log}"\nstart_at = "beginning"\n',
                       extra=f'[model]\nbundle = "{site}"\n',
                       mqtt_extra="[alerts]\nexplain = false\n")
    sub = Collector(broker.port, f"{ROOT}/#")
    agent = AgentProcess(cfg, state).start()
    try:
        batches = result_batches(sub, 2)
        seen = {i["text"]: i for d in batches for i in d["items"]}
        assert {d["model_version"] for d in batches} == {2}
        assert seen[KEYWORD_LINE]["anomaly"] == pytest.approx(k, abs=2e-3)  # read: its words
        assert seen[other]["anomaly"] == pytest.approx(shifted(o, 2.4), abs=2e-3)
        alerts = [json.loads(m.payload) for m in
                  sub.wait_for(lambda ms: any(m.topic == f"{ROOT}/alerts" for m in ms))
                  if m.topic == f"{ROOT}/alerts"]
        assert [a["item"]["text"] for a in alerts] == [other]
        assert agent.query("metrics")["result"]["counters"].get("lines_keyword_weighed") == 1
        asked = agent.query("classify", text=[KEYWORD_LINE, other])["result"]
        assert "keywords" not in asked[0] and asked[1]["keywords"] == "matched 'error'"
    finally:
        agent.stop()
        sub.close()
