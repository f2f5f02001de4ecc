"""``nanofleet model eval --alerts``: a site's own question, on its own labelled lines —
does the model tell me about the lines I want to be told about, with fewer false alarms
than the grep I would otherwise write?

A line is an *alert* unless its label is the normal one, whatever the label set (``ok`` /
``alert``, the model's categories, a site's own names): the labels need not be the
bundle's. On the same lines, three ways of flagging:

- the model: anomaly > ``threshold`` (0.5: the measure of docs/model.md);
- the alerts the agent would *send* with an ``[alerts]`` table (the agent's defaults
  unless given): what reaches a technician;
- a keyword rule: ``grep -iE 'fatal|fail|error|panic|critical'``, or the site's own.

Beside them, the model's recall at the rule's false-alarm rate (its ranking, whatever
the threshold), and per source when the lines name one. Lines that carry the level
their program logged them at (a ``level`` column, e.g. from ``journalctl -o json``'s
``PRIORITY``) are weighed as the agent weighs journal lines
(:mod:`agent.level_evidence`), and so are those with systemd's catalog id (a
``message_id`` column, ``MESSAGE_ID``; :mod:`agent.journal_catalog`), so the figures are the
device's.

The model runs through the agent's own runtime (:class:`agent.model.LoadedModel`); the
figures are :mod:`nanomodel.realeval`'s, so an operator's evaluation and the real-log
evaluation of docs/model.md count the same way.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import AlertConfig
from agent.journal_catalog import CatalogEvidenceConfig, parse_message_id
from agent.journal_evidence import weigh_journal_evidence
from agent.keyword_evidence import KeywordEvidenceConfig, weigh_keywords
from agent.level_evidence import (
    SYSLOG_LEVELS,
    LevelEvidenceConfig,
    LevelOffsets,
    apply_levels,
    level_of,
)
from agent.model import LoadedModel
from agent.text_levels import level_in_text
from nanomodel.dataio import DataError, LabeledData
from nanomodel.evaluate import score_bundle
from nanomodel.realeval import (
    KEYWORD_RULE,
    OVERALL,
    THRESHOLD,
    AlertFigures,
    beats_keyword,
    recall_at_false_alarms,
    report,
    sent_alerts,
)

# The columns an alert evaluation reads beside text and label.
ALERT_EVAL_FIELDS = ("source", "level", "message_id")
NO_SOURCE = "(no source)"
# Fewer lines with a level than this, or no alert or no healthy line among them, and a
# fit of the level offsets would say more about the sample than about the site.
MIN_FIT_LINES = 50


def keyword_rule(pattern: str | None) -> re.Pattern[str]:
    """The rule to compare with: the default grep, or a site's own regular expression
    (case-insensitive, as ``grep -iE``)."""
    if pattern is None:
        return KEYWORD_RULE
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise DataError(f"--keyword {pattern!r} is not a regular expression: {exc}") from None


def _figures(fig: AlertFigures) -> dict[str, float]:
    return {k: float(v) for k, v in asdict(fig).items()}


def fit_site_levels(anomaly: np.ndarray, levels: list[int | None], is_alert: np.ndarray,
                    start: LevelOffsets) -> LevelOffsets:
    """The offsets that calibrate *this* model's anomaly to the site's labels, level by
    level (:func:`nanomodel.reallevels.fit_level_offsets`: maximum likelihood, the model's
    own log-odds at weight 1). A level no line carries keeps ``start``'s offset."""
    from nanomodel.reallevels import fit_level_offsets

    known = np.array([lv is not None for lv in levels])
    prio = np.array([lv for lv in levels if lv is not None], dtype=np.int64)
    fitted = fit_level_offsets(np.asarray(anomaly)[known], prio, np.asarray(is_alert)[known])
    values = {name: round(float(np.clip(v, -20.0, 20.0)), 2) if not np.isnan(v)
              else getattr(start, name) for name, v in zip(SYSLOG_LEVELS, fitted, strict=True)}
    return LevelOffsets(**values)


def _halves(texts: list[str]) -> np.ndarray:
    """Two halves for a check of the fit on lines it did not see; a line repeated
    verbatim always falls on the same side (its copies would otherwise be seen)."""
    return np.array([zlib.crc32(t.encode("utf-8", "replace")) % 2 == 1 for t in texts])


def check_fit(data: LabeledData, normal_label: str, probs: np.ndarray, anomaly: np.ndarray,
              levels: list[int | None], start: LevelOffsets, normal_index: int,
              threshold: float) -> tuple[LevelOffsets, AlertFigures, AlertFigures]:
    """(offsets fitted on every line, the flag's figures with them on the same lines, and
    with offsets fitted on one half scoring the other, both ways: what to expect on lines
    the fit has not seen)."""
    is_alert = np.array([lab != normal_label for lab in data.labels])
    with_level = [lv is not None for lv in levels]
    n = sum(with_level)
    kinds = {bool(a) for a, w in zip(is_alert, with_level, strict=True) if w}
    if n < MIN_FIT_LINES or kinds != {True, False}:
        raise DataError(f"{data.source}: --fit-levels needs at least {MIN_FIT_LINES} lines "
                        f"with a level, healthy and alerts among them ({n} with a level)")
    fitted = fit_site_levels(anomaly, levels, is_alert, start)
    _, shifted = apply_levels(probs, anomaly, levels, fitted, normal_index)
    seen = AlertFigures.of(is_alert, shifted > threshold)
    half = _halves(list(data.texts))
    by_line = np.array(levels, dtype=object)  # boolean masks pick levels as they pick scores
    has_level = np.array(with_level)
    crossed = np.asarray(anomaly, dtype=np.float64).copy()
    for side in (half, ~half):
        other = ~side
        fit = fit_site_levels(anomaly[other], list(by_line[other]), is_alert[other], start) \
            if has_level[other].any() else start
        _, crossed[side] = apply_levels(probs[side], anomaly[side], list(by_line[side]), fit,
                                        normal_index)
    return fitted, seen, AlertFigures.of(is_alert, crossed > threshold)


def evaluate_alerts(data: LabeledData, bundle: Path, runtime: str = "onnxruntime",
                    normal_label: str = "normal", rule: re.Pattern[str] = KEYWORD_RULE,
                    threshold: float = THRESHOLD,
                    levels: LevelEvidenceConfig | None = None,
                    alerts: AlertConfig | None = None, fit_levels: bool = False,
                    policy: str = "defaults",
                    catalog: CatalogEvidenceConfig | None = None,
                    keywords: KeywordEvidenceConfig | None = None,
                    every_line: bool = False, text_levels: bool = False) -> dict[str, Any]:
    """Alert figures of ``bundle`` on ``data`` (see the module's docstring), JSON-ready.
    ``policy`` names where ``alerts`` and ``levels`` came from (an agent config's path),
    for the report. ``keywords``: how lines without a level weigh the keywords, as the
    agent's ``[model.keyword_evidence]`` (None: its defaults): the lines naming a program
    the model has not read, or with ``every_line`` all, as a source with ``keyword_evidence
    = true``. ``text_levels``: a line without a ``level`` value takes the level its text
    states, as a source with ``text_levels = true`` (agent.text_levels)."""
    if normal_label not in data.labels:
        raise DataError(f"{data.source}: no line is labelled {normal_label!r}, so nothing "
                        f"counts as healthy (labels: {data.label_set()}); say which label "
                        "means 'nothing wrong' with --normal-label")
    if not 0.0 < threshold < 1.0:
        raise DataError(f"--threshold {threshold} must be between 0 and 1")
    levels = levels if levels is not None else LevelEvidenceConfig()
    model = LoadedModel.load(bundle, runtime)
    try:
        manifest = model.manifest
        levels = levels.for_bundle(manifest.level_offsets)  # as the agent scores this bundle
        keywords = (keywords or KeywordEvidenceConfig()).for_bundle(manifest.known_programs)
        probs, anomaly = score_bundle(model, list(data.texts))
        line_levels = [level_of(v) for v in data.extras.get("level", [])]
        if text_levels:  # a level column's value wins, as a journal's field would
            line_levels = [given if given is not None else level_in_text(text) for given, text
                           in zip(line_levels or [None] * len(data.texts), data.texts,
                                  strict=True)]
        weighed = sum(lv is not None for lv in line_levels)
        normal_index = manifest.labels.index(manifest.normal_label)
        fit: dict[str, Any] = {}
        if fit_levels:
            offsets, seen, crossed = check_fit(data, normal_label, probs, anomaly, line_levels,
                                               levels.offsets, normal_index, threshold)
            fit = {"fitted_level_offsets": offsets.model_dump(),
                   "with_fitted_levels": _figures(seen),
                   "with_fitted_levels_unseen_half": _figures(crossed)}
        # The level, then the catalog id, as the agent weighs them (agent.journal_evidence).
        evidence = weigh_journal_evidence(
            probs, anomaly, line_levels or [None] * len(data.texts),
            [parse_message_id(m) for m in data.extras.get("message_id",
                                                          [""] * len(data.texts))],
            levels, catalog if catalog is not None else CatalogEvidenceConfig(), normal_index)
        probs, anomaly, verdicts = evidence.probs, evidence.anomaly, evidence.verdicts
        # After the level, as the pipeline weighs a keyword source's lines (agent.pipeline):
        # a line is left to its level only while the level is weighed in.
        probs, anomaly, by_words = weigh_keywords(
            probs, anomaly, list(data.texts), [every_line] * len(data.texts),
            (line_levels if levels.enabled else None) or [None] * len(data.texts), keywords,
            normal_index)
        named = any(data.extras.get("source", []))
        # A source a site happens to call "overall" must not stand in for the whole.
        sources = ([(s or NO_SOURCE) if s != OVERALL else f"{OVERALL} (a source)"
                    for s in data.extras["source"]] if named else [OVERALL] * len(data.texts))
        lines = list(zip(data.texts, data.labels, sources, strict=True))
        flagged = report(lines, anomaly, normal_label, threshold, rule)
        sent = report(lines, sent_alerts(manifest.labels, manifest.normal_label, probs,
                                         anomaly, alerts), normal_label, THRESHOLD, rule)
        rule_rate = flagged[OVERALL]["keyword"].false_alarm_rate
        at_rule = recall_at_false_alarms(lines, anomaly, (rule_rate,), normal_label)[rule_rate]
        result: dict[str, Any] = {
            "bundle": str(bundle), "bundle_sha256": model.bundle_sha256,
            "model": f"{manifest.name} v{manifest.version}", "runtime": model.runtime_name,
            "lines": len(lines), "normal_label": normal_label,
            "alerts": flagged[OVERALL]["model"].alerts, "threshold": threshold,
            "keyword_rule": rule.pattern, "policy": policy,
            "levels_weighed": weighed if levels.enabled else 0,
            "catalog_weighed": sum(v is not None for v in verdicts),
            "keywords_weighed": by_words,
            "overall": {"model": _figures(flagged[OVERALL]["model"]),
                        "sent": _figures(sent[OVERALL]["model"]),
                        "keyword": _figures(flagged[OVERALL]["keyword"])},
            "model_beats_keyword": beats_keyword(flagged[OVERALL]),
            "at_keyword_false_alarms": {"false_alarm_rate": rule_rate, "model_recall": at_rule},
        } | fit
        if named:
            each = sorted(s for s in flagged if s != OVERALL)
            result["sources"] = {
                s: {"model": _figures(flagged[s]["model"]), "sent": _figures(sent[s]["model"]),
                    "keyword": _figures(flagged[s]["keyword"]),
                    "model_beats_keyword": beats_keyword(flagged[s])} for s in each}
            result["sources_won"] = sum(beats_keyword(flagged[s]) for s in each)
        return result
    finally:
        model.close()


def _row(name: str, f: dict[str, float]) -> str:
    return (f"  {name:44s} {f['f1']:8.3f} {100 * f['false_alarm_rate']:11.1f} % "
            f"{100 * f['recall']:7.1f} % {100 * f['precision']:8.1f} %")


def format_alerts(result: dict[str, Any]) -> str:
    """:func:`evaluate_alerts`' result for a terminal."""
    o = result["overall"]
    out = [f"{result['model']} ({result['bundle']}), runtime {result['runtime']}: "
           f"{result['lines']} lines, {result['alerts']} alerts (every label but "
           f"{result['normal_label']!r})",
           f"  {'':44s} {'alert F1':>8s} {'false alarms':>13s} {'recall':>9s} "
           f"{'precision':>10s}",
           _row(f"model, anomaly > {result['threshold']:g}", o["model"]),
           # the config's file name: a whole path would not fit the row's name column
           _row(f"alerts the agent sends ({Path(result['policy']).name})"[:44], o["sent"]),
           _row(f"grep -iE '{result['keyword_rule']}'"[:44], o["keyword"]),
           f"At the rule's false-alarm rate "
           f"({100 * result['at_keyword_false_alarms']['false_alarm_rate']:.1f} %) the model "
           f"finds {100 * result['at_keyword_false_alarms']['model_recall']:.1f} % of the "
           "alerts.",
           "The model beats the rule (higher alert F1, or as high with fewer false alarms): "
           + ("yes" if result["model_beats_keyword"] else "no")]
    if result["levels_weighed"]:
        out.append(f"{result['levels_weighed']} lines carried a level and were weighed as the "
                   f"agent weighs journal lines ([model.level_evidence]: {result['policy']}).")
    if result["catalog_weighed"]:
        out.append(f"{result['catalog_weighed']} lines carried a journal catalog id with a "
                   f"verdict and were weighed as the agent does ([model.catalog_evidence]: "
                   f"{result['policy']}).")
    if result["keywords_weighed"]:
        out.append(f"{result['keywords_weighed']} lines without a level were weighed with the "
                   "keywords, as a source with keyword_evidence = true ([model.keyword_evidence]: "
                   f"{result['policy']}).")
    if "fitted_level_offsets" in result:
        off = result["fitted_level_offsets"]
        out += ["", "Level offsets fitted to this model and these labels (for the agent's config):",
                "[model.level_evidence.offsets]"]
        out += [f"{name} = {off[name] + 0.0:.2f}" for name in SYSLOG_LEVELS]  # no "-0.00"
        out += [_row("model, fitted levels, these lines", result["with_fitted_levels"]),
                _row("the same, fitted on the other half", result[
                    "with_fitted_levels_unseen_half"]),
                "(the second row is what to expect on lines the fit has not seen; levels no "
                "line carries keep the config's offsets)"]
    if "sources" in result:
        out.append(f"\nper source (the model beats the rule on {result['sources_won']} of "
                   f"{len(result['sources'])}); model F1 / false alarms / recall | sent | rule:")
        for name, figs in result["sources"].items():
            cells = " | ".join(f"{f['f1']:.3f} / {100 * f['false_alarm_rate']:.1f} % / "
                               f"{100 * f['recall']:.1f} %"
                               for f in (figs["model"], figs["sent"], figs["keyword"]))
            out.append(f"  {name:20s} {int(figs['model']['lines']):6d} lines "
                       f"{int(figs['model']['alerts']):5d} alerts  {cells}"
                       + ("" if figs["model_beats_keyword"] else "  (rule wins)"))
    return "\n".join(out)
