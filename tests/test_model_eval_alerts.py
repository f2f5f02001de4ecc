"""``nanofleet model eval --alerts``: a site's own labelled lines, alert / no alert, the
model beside its grep — counted exactly as the real-log evaluation counts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from agent.keyword_evidence import KeywordEvidenceConfig, apply_keyword_evidence, weigh_keywords
from agent.level_evidence import LevelOffsets, apply_levels, level_of
from agent.model import LoadedModel
from nanomodel import default_bundle_path
from nanomodel.cli import main
from nanomodel.realeval import AlertFigures
from nanomodel.realtext import load_samples

BUNDLE = str(default_bundle_path())


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def site() -> list[dict[str, str]]:
    """Real lines of other people's systems, relabelled the way a site might: ok / alert."""
    return [{"text": c.text, "label": "ok" if c.label == "normal" else "alert",
             "source": c.source} for c in load_samples()]


@pytest.fixture(scope="module")
def scored(site: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    model = LoadedModel.load(default_bundle_path())
    try:
        probs, anomaly = model.classify([r["text"] for r in site])
        return np.asarray(probs), np.asarray(anomaly)
    finally:
        model.close()


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _as_agent(rows: list[dict[str, str]], scored: tuple[np.ndarray, np.ndarray],
              levels: list[int | None] | None = None) -> np.ndarray:
    """The anomaly the agent gives these lines by default: the level where a line has one,
    else the keywords where its tag names a program the model has not read."""
    probs, anomaly = scored
    levels = levels or [None] * len(rows)
    probs, anomaly = apply_levels(probs, anomaly, levels, LevelOffsets(), 0)
    return weigh_keywords(probs, anomaly, [r["text"] for r in rows], None, levels,
                          KeywordEvidenceConfig(), 0)[1]


def _expected(rows: list[dict[str, str]], flagged: np.ndarray) -> AlertFigures:
    return AlertFigures.of(np.array([r["label"] != "ok" for r in rows]), flagged)


def test_figures_are_the_runtime_scores_counted_against_the_sites_labels(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], site: list[dict[str, str]],
        scored: tuple[np.ndarray, np.ndarray]) -> None:
    data = _write(tmp_path / "site.jsonl", site)
    code, out, err = _run(capsys, "model", "eval", "--alerts", "--data", str(data),
                          "--bundle", BUNDLE, "--normal-label", "ok", "--json")
    assert code == 0, err
    result = json.loads(out)
    anomaly = _as_agent(site, scored)
    assert 0 < result["keywords_weighed"] < len(site)  # the lines of programs it has not read
    model = _expected(site, anomaly > 0.5)
    grep = _expected(site, np.array([re.search("fatal|fail|error|panic|critical", r["text"],
                                               re.I) is not None for r in site]))
    assert result["lines"] == len(site) and result["alerts"] == model.alerts
    assert result["overall"]["model"]["f1"] == pytest.approx(model.f1)
    assert result["overall"]["model"]["false_alarm_rate"] == pytest.approx(
        model.false_alarm_rate)
    assert result["overall"]["keyword"]["recall"] == pytest.approx(grep.recall)
    assert result["model_beats_keyword"] == (model.f1 > grep.f1)
    # The agent sends fewer alerts than it flags at 0.5: its defaults are stricter.
    assert result["overall"]["sent"]["false_alarm_rate"] < model.false_alarm_rate
    # Per source, and the sources add up to the whole.
    openssh = [r for r, a in zip(site, anomaly, strict=True) if r["source"] == "openssh"]
    assert result["sources"]["openssh"]["model"]["lines"] == len(openssh)
    assert sum(s["model"]["lines"] for s in result["sources"].values()) == len(site)
    assert result["sources_won"] == sum(s["model_beats_keyword"]
                                        for s in result["sources"].values())
    assert result["levels_weighed"] == 0

    code, out, _ = _run(capsys, "model", "eval", "--alerts", "--data", str(data),
                        "--bundle", BUNDLE, "--normal-label", "ok", "--runtime", "litert")
    assert code == 0
    assert f"{model.f1:.3f}" in out and "alerts the agent sends" in out
    assert "runtime litert" in out and "per source (the model beats the rule on" in out


def test_a_sites_own_rule_and_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        site: list[dict[str, str]],
                                        scored: tuple[np.ndarray, np.ndarray]) -> None:
    rows = [{"text": r["text"], "label": r["label"]} for r in site]
    data = _write(tmp_path / "nosource.jsonl", rows)
    code, out, err = _run(capsys, "model", "eval", "--alerts", "--data", str(data),
                          "--bundle", BUNDLE, "--normal-label", "ok", "--keyword",
                          "denied|invalid user", "--threshold", "0.8", "--json")
    assert code == 0, err
    result = json.loads(out)
    grep = _expected(rows, np.array([re.search("denied|invalid user", r["text"], re.I)
                                     is not None for r in rows]))
    assert result["overall"]["keyword"]["f1"] == pytest.approx(grep.f1)
    assert result["overall"]["model"]["recall"] == pytest.approx(
        _expected(rows, _as_agent(site, scored) > 0.8).recall)
    assert "sources" not in result and result["keyword_rule"] == "denied|invalid user"


def test_a_level_column_is_weighed_as_the_agent_weighs_journal_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], site: list[dict[str, str]],
        scored: tuple[np.ndarray, np.ndarray]) -> None:
    names = ["err", "warning", "info", "", "3", "ERROR", "notice", "crit"]
    rows = [r | {"level": names[i % len(names)]} for i, r in enumerate(site)]
    data = _write(tmp_path / "levels.jsonl", rows)
    code, out, err = _run(capsys, "model", "eval", "--alerts", "--data", str(data),
                          "--bundle", BUNDLE, "--normal-label", "ok", "--json")
    assert code == 0, err
    result = json.loads(out)
    levels = [level_of(r["level"]) for r in rows]
    _, anomaly = scored
    weighed = _as_agent(rows, scored, levels)
    assert result["levels_weighed"] == sum(lv is not None for lv in levels)
    assert result["overall"]["model"]["f1"] == pytest.approx(
        _expected(rows, weighed > 0.5).f1)
    assert result["overall"]["model"]["f1"] != pytest.approx(
        _expected(rows, anomaly > 0.5).f1)
    code, out, _ = _run(capsys, "model", "eval", "--alerts", "--data", str(data),
                        "--bundle", BUNDLE, "--normal-label", "ok", "--json", "--no-levels")
    assert json.loads(out)["overall"]["model"]["f1"] == pytest.approx(
        _expected(rows, anomaly > 0.5).f1)
    assert json.loads(out)["levels_weighed"] == 0 == json.loads(out)["keywords_weighed"]


def test_keywords_weigh_the_lines_without_a_level_as_a_keyword_source_would(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], site: list[dict[str, str]],
        scored: tuple[np.ndarray, np.ndarray]) -> None:
    rows = [r | {"level": "err" if i % 3 == 0 else ""} for i, r in enumerate(site)]
    data = _write(tmp_path / "keywords.jsonl", rows)
    levels = [level_of(r["level"]) for r in rows]
    probs, anomaly = scored
    p1, a1 = apply_levels(probs, anomaly, levels, LevelOffsets(), 0)
    _, expected = apply_keyword_evidence(p1, a1, [r["text"] for r in rows],
                                         [lv is None for lv in levels],
                                         KeywordEvidenceConfig(), 0)
    code, out, err = _run(capsys, "model", "eval", "--alerts", "--data", str(data),
                          "--bundle", BUNDLE, "--normal-label", "ok", "--json", "--keywords")
    assert code == 0, err
    result = json.loads(out)
    assert result["keywords_weighed"] == sum(lv is None for lv in levels)
    assert result["overall"]["model"]["f1"] == pytest.approx(_expected(rows, expected > 0.5).f1)
    assert result["overall"]["model"]["f1"] != pytest.approx(_expected(rows, a1 > 0.5).f1)
    # An operator's own words and offsets, from the agent's config.
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'device_id = "d1"\nstate_dir = "{tmp_path}"\n[mqtt]\nhost = "127.0.0.1"\n'
                   f'[[sources]]\nkind = "file"\npath = "{tmp_path}/x.log"\n'
                   '[model.keyword_evidence]\nwords = ["denied"]\nmatched = 5.0\n'
                   'unmatched = 0.0\n')
    code, out, err = _run(capsys, "model", "eval", "--alerts", "--data", str(data), "--bundle",
                          BUNDLE, "--normal-label", "ok", "--keywords", "--agent-config", str(cfg))
    assert code == 0, err
    assert "weighed with the keywords, as a source with keyword_evidence = true" in out
    _, own = apply_keyword_evidence(p1, a1, [r["text"] for r in rows],
                                    [lv is None for lv in levels],
                                    KeywordEvidenceConfig(words=["denied"], matched=5.0,
                                                          unmatched=0.0), 0)
    code, out, _ = _run(capsys, "model", "eval", "--alerts", "--data", str(data), "--bundle",
                        BUNDLE, "--normal-label", "ok", "--keywords", "--agent-config", str(cfg),
                        "--json")
    assert json.loads(out)["overall"]["model"]["f1"] == pytest.approx(
        _expected(rows, own > 0.5).f1)
    # Levels ignored (--no-levels, as an agent with [model.level_evidence] off): a line
    # with a level is no longer left to it, so every line of the keyword source is weighed.
    code, out, _ = _run(capsys, "model", "eval", "--alerts", "--data", str(data), "--bundle",
                        BUNDLE, "--normal-label", "ok", "--keywords", "--no-levels", "--json")
    _, every = apply_keyword_evidence(probs, anomaly, [r["text"] for r in rows],
                                      [True] * len(rows), KeywordEvidenceConfig(), 0)
    assert json.loads(out)["keywords_weighed"] == len(rows)
    assert json.loads(out)["levels_weighed"] == 0
    assert json.loads(out)["overall"]["model"]["f1"] == pytest.approx(
        _expected(rows, every > 0.5).f1)


def test_a_journal_export_with_catalog_ids_is_weighed_as_the_agent_weighs_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A site's journal export (text, level, MESSAGE_ID): the alerts the agent would send
    with systemd's catalog weighed in, as on the device (agent.journal_catalog). On the
    booted systemd's journal captured here: measured 0.919 / 1.8 % / 93.9 % sent, and the
    same without the ids (the five-epoch model: 0.945 / 0.3 % / 90.9 %, and 0.619 / 0.3 % /
    45.5 % without them: the December 2026 model reads the unit failures' words itself)."""
    from nanomodel.realtext import load_journal

    rows = [{"text": c.text, "label": "ok" if c.label == "normal" else "alert",
             "level": c.level, "message_id": c.message_id or ""} for c in load_journal()]
    data = _write(tmp_path / "journal.jsonl", rows)
    code, out, err = _run(capsys, "model", "eval", "--alerts", "--data", str(data),
                          "--bundle", BUNDLE, "--normal-label", "ok", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["catalog_weighed"] >= 35
    sent = result["overall"]["sent"]
    assert sent["recall"] >= 0.8 and sent["false_alarm_rate"] <= 0.02
    config = tmp_path / "agent.toml"
    config.write_text(f'device_id = "d1"\nstate_dir = "{tmp_path}"\n[mqtt]\n'
                      f'host = "127.0.0.1"\n[[sources]]\nkind = "file"\npath = "{tmp_path}/x"\n'
                      "[model.catalog_evidence]\nenabled = false\n")
    code, out, _ = _run(capsys, "model", "eval", "--alerts", "--data", str(data), "--bundle",
                        BUNDLE, "--normal-label", "ok", "--json", "--agent-config", str(config))
    off = json.loads(out)
    assert off["catalog_weighed"] == 0
    assert off["overall"]["sent"]["recall"] <= sent["recall"]
    assert off["levels_weighed"] == result["levels_weighed"] > 0
    code, out, _ = _run(capsys, "model", "eval", "--alerts", "--data", str(data),
                        "--bundle", BUNDLE, "--normal-label", "ok", "--json", "--no-levels")
    words = json.loads(out)
    assert words["catalog_weighed"] == 0 and words["levels_weighed"] == 0


def test_fitting_the_level_offsets_to_a_sites_labels(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], site: list[dict[str, str]],
        scored: tuple[np.ndarray, np.ndarray]) -> None:
    # A site whose programs log every line it wants to hear about at err and the rest at
    # info (or not at all): the fit learns that err means alert here.
    rows = [r | {"level": "err" if r["label"] == "alert" else ("info" if i % 2 else "")}
            for i, r in enumerate(site)]
    data = _write(tmp_path / "fit.jsonl", rows)
    code, out, err = _run(capsys, "model", "eval", "--alerts", "--data", str(data),
                          "--bundle", BUNDLE, "--normal-label", "ok", "--json",
                          "--fit-levels", "--no-levels")
    assert code == 0, err
    result = json.loads(out)
    fitted = result["fitted_level_offsets"]
    assert fitted["err"] > LevelOffsets().err and fitted["info"] < LevelOffsets().info
    # levels no line carries keep the config's offsets
    assert fitted["crit"] == LevelOffsets().crit and fitted["debug"] == LevelOffsets().debug
    words_alone = result["overall"]["model"]
    assert result["levels_weighed"] == 0 and words_alone["f1"] == pytest.approx(
        _expected(rows, scored[1] > 0.5).f1)
    assert result["with_fitted_levels"]["f1"] > words_alone["f1"] + 0.1
    assert result["with_fitted_levels_unseen_half"]["f1"] > words_alone["f1"] + 0.1
    # the same fit, by hand
    probs, anomaly = scored
    levels = [level_of(r["level"]) for r in rows]
    _, shifted = apply_levels(probs, anomaly, levels, LevelOffsets(**fitted), 0)
    assert result["with_fitted_levels"]["f1"] == pytest.approx(_expected(rows, shifted > 0.5).f1)
    code, out, _ = _run(capsys, "model", "eval", "--alerts", "--data", str(data), "--bundle",
                        BUNDLE, "--normal-label", "ok", "--fit-levels")
    assert "[model.level_evidence.offsets]" in out and f"err = {fitted['err']:.2f}" in out
    # too few lines with a level to fit, and --fit-levels without --alerts
    few = _write(tmp_path / "few.jsonl", [r for r in rows if r["label"] == "ok"][:30]
                 + [r for r in rows if r["label"] == "alert"][:30])
    code, _, err = _run(capsys, "model", "eval", "--alerts", "--data", str(few), "--bundle",
                        BUNDLE, "--normal-label", "ok", "--fit-levels")
    assert code == 2 and "--fit-levels needs at least 50 lines with a level" in err
    code, _, err = _run(capsys, "model", "eval", "--data", str(few), "--bundle", BUNDLE,
                        "--fit-levels")
    assert code == 2 and "--fit-levels only apply to alert figures" in err


def test_the_agents_own_alert_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     site: list[dict[str, str]]) -> None:
    data = _write(tmp_path / "site.jsonl", site)
    cfg = tmp_path / "agent.toml"
    base = (f'device_id = "d1"\nstate_dir = "{tmp_path}"\n[mqtt]\nhost = "127.0.0.1"\n'
            f'[[sources]]\nkind = "file"\npath = "{tmp_path}/x.log"\n')
    cfg.write_text(base + "[alerts]\nanomaly_threshold = 0.5\ndefault_min_score = 0.99\n")
    args = ["model", "eval", "--alerts", "--data", str(data), "--bundle", BUNDLE,
            "--normal-label", "ok", "--json"]
    _, out, _ = _run(capsys, *args)
    default = json.loads(out)["overall"]
    code, out, err = _run(capsys, *args, "--agent-config", str(cfg))
    assert code == 0, err
    loud = json.loads(out)["overall"]
    assert json.loads(out)["policy"] == str(cfg)
    # anomaly >= 0.5 is sent: about as many alerts as the 0.5 flag, more than the defaults
    assert loud["sent"]["recall"] > default["sent"]["recall"]
    assert loud["sent"]["recall"] >= loud["model"]["recall"]
    code, out, _ = _run(capsys, *args[:-1], "--agent-config", str(cfg))
    assert code == 0 and "alerts the agent sends (agent.toml)" in out
    cfg.write_text(base + "[alerts]\nanomaly_treshold = 0.5\n")
    code, _, err = _run(capsys, *args, "--agent-config", str(cfg))
    assert code == 2 and "alerts.anomaly_treshold" in err


@pytest.mark.parametrize(("body", "extra", "message"), [
    ('{"text": "a", "label": "ok", "level": "loud"}\n', [],
     "x.jsonl:1: 'level' 'loud' is not a syslog level"),
    ('{"text": "a", "label": "ok", "host": "h"}\n', [],
     "unknown fields ['host'] (expected exactly text, label and optionally source, level, "
     "message_id)"),
    ('{"text": "a", "label": "ok", "message_id": "be02"}\n', [],
     "x.jsonl:1: 'message_id' 'be02' is not a journal catalog id"),
    ('{"text": "a", "label": "ok", "source": 7.5}\n', [], "'source' must be a string"),
    ('{"text": "a", "label": "fine"}\n', [], "no line is labelled 'ok'"),
    ('{"text": "a", "label": "ok"}\n', ["--keyword", "(unclosed"],
     "--keyword '(unclosed' is not a regular expression"),
    ('{"text": "a", "label": "ok"}\n', ["--threshold", "1.5"], "must be between 0 and 1"),
])
def test_bad_input_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str,
                            extra: list[str], message: str) -> None:
    data = tmp_path / "x.jsonl"
    data.write_text(body, encoding="utf-8")
    code, _, err = _run(capsys, "model", "eval", "--alerts", "--data", str(data), "--bundle",
                        BUNDLE, "--normal-label", "ok", *extra)
    assert code == 2 and message in err, err


def test_csv_columns_and_what_needs_alerts(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "x.csv"
    data.write_text("level,text,label,source\nerr,disk full,alert,a\n,link up,normal,b\n"
                    "bogus,x,normal,b\n", encoding="utf-8")
    code, _, err = _run(capsys, "model", "eval", "--alerts", "--data", str(data), "--bundle",
                        BUNDLE)
    assert code == 2 and "x.csv:4: 'level' 'bogus'" in err
    data.write_text("level,text,label,source\nerr,disk full,alert,a\n,link up,normal,b\n"
                    "info,started,normal,overall\n", encoding="utf-8")
    code, out, err = _run(capsys, "model", "eval", "--alerts", "--data", str(data), "--bundle",
                          BUNDLE, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["levels_weighed"] == 2 and result["lines"] == 3
    # a source that happens to be called "overall" does not stand in for the whole
    assert sorted(result["sources"]) == ["a", "b", "overall (a source)"]
    # Alert-only options without --alerts, and the optional columns outside it, are refused.
    code, _, err = _run(capsys, "model", "eval", "--data", str(data), "--bundle", BUNDLE,
                        "--keyword", "x")
    assert code == 2 and "--keyword only apply to alert figures: add --alerts" in err
    code, _, err = _run(capsys, "model", "eval", "--data", str(data), "--bundle", BUNDLE)
    assert code == 2 and "unknown columns ['level', 'source']" in err
    code, _, err = _run(capsys, "model", "train", "--data", str(data), "--out",
                        str(tmp_path / "m.nfb"), "--quiet")
    assert code == 2 and "must name exactly text, label as columns" in err
    plain = tmp_path / "p.jsonl"
    plain.write_text('{"text": "x", "label": "fine"}\n', encoding="utf-8")
    code, _, err = _run(capsys, "model", "eval", "--data", str(plain), "--bundle", BUNDLE)
    assert code == 2 and "(for alert / no-alert figures on any labels: --alerts)" in err


def test_a_devices_escape_codes_in_its_sources_do_not_reach_the_terminal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Judged lines come from devices through `nanofleet alerts export`: a source that
    carries OSC 52 (write the clipboard), an erase-line or a bidi override is shown as
    `?`, not obeyed (review, December 2026)."""
    hostile = "sshd\x1b]52;c;Y3VybCBldmlsfHNo\x07\r\x1b[2K\u202e"
    rows = [{"text": "Failed password for root from 203.0.113.7 port 22 ssh2",
             "label": "alert", "source": hostile},
            {"text": "Accepted publickey for pi from 10.0.0.7 port 51234 ssh2",
             "label": "ok", "source": hostile}]
    data = _write(tmp_path / "judged.jsonl", rows)
    code, out, err = _run(capsys, "model", "eval", "--alerts", "--data", str(data),
                          "--bundle", BUNDLE, "--normal-label", "ok")
    assert code == 0, err
    assert "sshd?]52;c;Y3VybCBldmlsfHNo? ?[2K?" in out
    assert all(c.isprintable() for line in out.split("\n") for c in line), repr(out)
