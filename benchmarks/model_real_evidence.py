"""What ``benchmarks/model_real.py`` prints beyond its per-source table: the scores with
more evidence than the words weighed in, the line's level and the journal catalog as
the agent weighs them (``--levels``, ``--known``, ``--journal``) and the grep as a second
opinion (``--keyword-prior``), with the one-line summaries those reports share.

Apart from the script because these reports take scores however they were made (held
out, known daemons, a shipped bundle) and are what the agent's level and catalog
defaults are fitted and checked with (agent.level_evidence, agent.journal_catalog).
"""

from __future__ import annotations

import numpy as np

from agent.journal_catalog import CatalogEvidenceConfig
from agent.journal_evidence import weigh_journal_evidence
from agent.level_evidence import SYSLOG_LEVELS, LevelEvidenceConfig
from contract.bundle_features import BundleLevelOffsets
from nanomodel.build_default import REAL_PER_TEMPLATE
from nanomodel.realeval import (
    OVERALL,
    AlertFigures,
    RealLine,
    beats_keyword,
    nested_keyword_prior,
    recall_at_false_alarms,
    report,
    sent_alerts,
)
from nanomodel.reallevels import fit_level_offsets, nested_level_offsets, real_line_priorities
from nanomodel.realtrain import LABELS


def _wins(rep: dict[str, dict[str, AlertFigures]]) -> int:
    """Sources (not the overall row) on which the model beats the keyword rule."""
    return sum(beats_keyword(figs) for s, figs in rep.items() if s != OVERALL)


def _anomaly(probs: np.ndarray) -> np.ndarray:
    """Anomaly from probabilities in LABELS order: everything but normal."""
    return 1.0 - probs[:, LABELS.index("normal")]


def _figures(lines: list[RealLine], scores: np.ndarray) -> str:
    o = report(lines, scores)[OVERALL]["model"]
    return f"F1 {o.f1:.3f}, false alarms {100 * o.false_alarm_rate:.1f} %, recall " \
        f"{100 * o.recall:.1f} %"


def _with_levels(lines: list[RealLine], probs: np.ndarray, levels: list[int],
                 message_ids: list[str | None] | None = None,
                 offsets: BundleLevelOffsets | None = None) -> None:
    """The same lines as a journal delivers them, with the level their code logs them at,
    weighed in as the agent does (agent.level_evidence: a bundle's ``offsets``, else the
    agent's defaults); with
    ``message_ids`` (a journal's), also with the journal catalog's verdicts
    (agent.journal_catalog), as the agent weighs them by default."""
    anomaly = _anomaly(probs)
    normal = LABELS.index("normal")
    ids = message_ids if message_ids is not None else [None] * len(lines)
    level_cfg = LevelEvidenceConfig().for_bundle(offsets)
    level_only = weigh_journal_evidence(probs, anomaly, levels, ids, level_cfg,
                                        CatalogEvidenceConfig(enabled=False), normal)
    p2, a2 = level_only.probs, level_only.anomaly
    rep = report(lines, a2)
    wins = _wins(rep)
    whose = "the agent's default offsets" if offsets is None else "the bundle's offsets"
    print(f"\nwith the program's level (journald PRIORITY, {whose}): "
          f"{_figures(lines, a2)}, beats the keyword rule on {wins} of {len(rep) - 1} "
          "sources")
    scored = [("words alone", (probs, anomaly)), ("with the level", (p2, a2))]
    if message_ids is not None:
        both = weigh_journal_evidence(probs, anomaly, levels, ids, level_cfg,
                                      CatalogEvidenceConfig(), normal)
        p3, a3 = both.probs, both.anomaly
        rep = report(lines, a3)
        with_verdict = both.catalog_weighed
        print(f"with the level and the journal catalog (MESSAGE_ID, {with_verdict} "
              f"of {len(lines)} lines with a verdict): {_figures(lines, a3)}, beats the "
              f"keyword rule on {_wins(rep)} of {len(rep) - 1} sources")
        scored.append(("with the level and the catalog", (p3, a3)))
    for name, (p, a) in scored:
        print(f"  alerts the agent sends, {name}: "
              f"{_figures(lines, sent_alerts(LABELS, 'normal', p, a))}")


def _levels(lines: list[RealLine], probs: np.ndarray, folds: int, with_next: bool) -> None:
    """Held-out figures when each line comes with its code's level (--levels)."""
    levels = real_line_priorities(REAL_PER_TEMPLATE, with_next=with_next)
    if len(levels) != len(lines):  # a mismatch would pair lines with other lines' levels
        raise SystemExit(f"--levels: {len(levels)} levels for {len(lines)} lines")
    anomaly = _anomaly(probs)
    is_alert = np.array([lab != "normal" for _, lab, _ in lines])
    print(f"\nthe level alone, error or worse (journalctl -p err): "
          f"{_figures(lines, (np.array(levels) <= 3).astype(np.float32))}")
    nested, fits = nested_level_offsets(lines, anomaly, levels, folds)
    rep = report(lines, nested)
    wins = _wins(rep)
    at = recall_at_false_alarms(lines, nested, (0.02, 0.05))
    print(f"words + level, offsets fitted on the other groups (nested): "
          f"{_figures(lines, nested)}, beats the keyword rule on {wins} of {len(rep) - 1} "
          f"sources; recall {100 * at[0.02]:.1f} % at 2 % and {100 * at[0.05]:.1f} % at 5 % "
          "false alarms")
    fit = fit_level_offsets(anomaly, np.array(levels), is_alert)
    seen = [i for i in range(len(SYSLOG_LEVELS)) if not np.isnan(fit[i])]
    nested_fits = np.array(fits)  # a level a group's training lines lack is NaN there
    spread = {i: (np.nanmax(nested_fits[:, i]) - np.nanmin(nested_fits[:, i])) / 2
              for i in seen}
    print("offsets fitted on every group (the agent's defaults come from this; ± half the "
          "range of the nested fits): " + ", ".join(
              f"{SYSLOG_LEVELS[i]} {fit[i]:+.2f} (±{spread[i]:.2f})" for i in seen))
    _with_levels(lines, probs, levels)


def _keyword_prior(lines: list[RealLine], anomaly: np.ndarray, folds: int) -> None:
    """The same held-out scores with the grep as a second opinion, chosen nested."""
    scores, chosen = nested_keyword_prior(lines, anomaly, folds)
    rep = report(lines, scores)
    o = rep[OVERALL]["model"]
    wins = _wins(rep)
    picks = ", ".join(f"c={c:+.1f} b={b:.2f}" for c, b in chosen)
    print(f"\nthe grep as a second opinion (chosen per group from the other groups: {picks}):"
          f" F1 {o.f1:.3f}, false alarms {100 * o.false_alarm_rate:.1f} %, recall "
          f"{100 * o.recall:.1f} %, beats the keyword rule on {wins} of {len(rep) - 1} sources")
