"""Real-log evaluation: whole sources held out from training, model vs keyword rule.

The question a technician asks is binary: does this line need my attention? So the
figures here are *alert* figures: a line is an alert when its label is not the
normal one; the model flags a line when ``anomaly = 1 - P(normal) > 0.5`` (as the
agent does); the keyword rule flags it when it matches
``grep -iE 'fatal|fail|error|panic|critical'`` (what a technician would otherwise
write). Per source and overall (all held-out lines pooled): alert F1, false-alarm
rate (normal lines flagged), alert recall (alert lines flagged), precision.

*Held out* means the model that scored a source's lines was trained without any
line of that source (:func:`heldout_anomaly`): leave-one-source-out, or, for quick
experiments, sources dealt into ``folds`` groups (each source still held out once).
Pure functions; training is passed in.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from agent.config import AlertConfig

KEYWORD_RULE = re.compile(r"fatal|fail|error|panic|critical", re.IGNORECASE)
THRESHOLD = 0.5
OVERALL = "overall"

# (text, label, source): the rows :func:`nanomodel.realtext.real_lines` returns.
RealLine = tuple[str, str, str]
Scorer = Callable[[list[str]], np.ndarray]  # texts -> anomaly [B]
Trainer = Callable[[list[RealLine]], Scorer]  # training lines -> a scorer


@dataclass(frozen=True)
class AlertFigures:
    """Binary alert figures of one set of lines."""

    lines: int
    alerts: int
    f1: float
    false_alarm_rate: float
    recall: float
    precision: float

    @classmethod
    def of(cls, is_alert: np.ndarray, flagged: np.ndarray) -> AlertFigures:
        is_alert, flagged = np.asarray(is_alert, bool), np.asarray(flagged, bool)
        tp = int(np.sum(is_alert & flagged))
        fp = int(np.sum(~is_alert & flagged))
        alerts, normals = int(is_alert.sum()), int((~is_alert).sum())
        precision = tp / (tp + fp) if tp + fp else (1.0 if alerts == 0 else 0.0)
        recall = tp / alerts if alerts else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return cls(lines=int(is_alert.size), alerts=alerts, f1=f1,
                   false_alarm_rate=fp / normals if normals else 0.0, recall=recall,
                   precision=precision)


def keyword_flags(texts: Sequence[str], rule: re.Pattern[str] = KEYWORD_RULE) -> np.ndarray:
    """The keyword rule: ``grep -iE 'fatal|fail|error|panic|critical'`` (or ``rule``)."""
    return np.array([rule.search(t) is not None for t in texts], dtype=bool)


def source_folds(sources: Sequence[str], folds: int | None = None) -> list[list[str]]:
    """Groups of sources to hold out together: one per source (``folds=None``), or the
    sources dealt round-robin into ``folds`` groups in sorted order (deterministic)."""
    names = sorted(set(sources))
    if folds is None or folds >= len(names):
        return [[s] for s in names]
    if folds < 2:
        raise ValueError("need at least 2 folds to hold anything out")
    return [names[i::folds] for i in range(folds)]


def score_heldout(lines: Sequence[RealLine], trainer: Trainer, held: Sequence[str],
                  asked: Sequence[str] | None = None) -> np.ndarray:
    """Anomaly of the lines of the ``held`` sources, from a model trained on the rest."""
    held_set = set(held)
    train = [row for row in lines if row[2] not in held_set]
    texts = [t for t, _, _ in lines] if asked is None else asked
    return trainer(train)([texts[j] for j, row in enumerate(lines) if row[2] in held_set])


def heldout_anomaly(lines: Sequence[RealLine], trainer: Trainer,
                    folds: int | None = None, eval_texts: Sequence[str] | None = None,
                    on_fold: Callable[[int, int, list[str]], None] | None = None) -> np.ndarray:
    """Anomaly score of every line from a model trained without the line's source.

    ``eval_texts`` (aligned with ``lines``) is what the held-out model is asked about
    (e.g. the lines framed as a device would see them); the trainer gets ``lines``."""
    sources = [s for _, _, s in lines]
    asked = [t for t, _, _ in lines] if eval_texts is None else list(eval_texts)
    if len(asked) != len(lines):
        raise ValueError(f"{len(asked)} evaluation texts for {len(lines)} lines")
    anomaly = np.full(len(lines), np.nan, dtype=np.float32)
    groups = source_folds(sources, folds)
    for i, group in enumerate(groups):
        if on_fold is not None:
            on_fold(i, len(groups), group)
        fill_heldout(anomaly, lines, group, score_heldout(lines, trainer, group, asked))
    return anomaly


def split_known(templates: Sequence[RealLine], captured: Sequence[RealLine],
                seed: int = 3) -> tuple[list[RealLine], list[RealLine]]:
    """(train, test) for *known daemons, new lines*: every rendered template and half of
    the captured lines train; the other half is scored. The halves are split by distinct
    text, so a line a daemon repeats verbatim is never on both sides: what is measured is
    new values and new lines of software the model was trained on, which is what the
    shipped model meets on a device running those daemons."""
    texts = sorted({t for t, _, _ in captured})
    random.Random(seed).shuffle(texts)
    held = set(texts[: len(texts) // 2])
    train = list(templates) + [row for row in captured if row[0] not in held]
    return train, [row for row in captured if row[0] in held]


def fill_heldout(anomaly: np.ndarray, lines: Sequence[RealLine], held: Sequence[str],
                 scores: np.ndarray) -> None:
    """Put :func:`score_heldout`'s scores back at their lines' positions."""
    held_set = set(held)
    anomaly[[j for j, row in enumerate(lines) if row[2] in held_set]] = scores


def report(lines: Sequence[RealLine], anomaly: np.ndarray, normal_label: str = "normal",
           threshold: float = THRESHOLD, rule: re.Pattern[str] = KEYWORD_RULE,
           ) -> dict[str, dict[str, AlertFigures]]:
    """``{source or "overall": {"model": AlertFigures, "keyword": AlertFigures}}``."""
    texts = [t for t, _, _ in lines]
    is_alert = np.array([lab != normal_label for _, lab, _ in lines], dtype=bool)
    model_flag = np.asarray(anomaly) > threshold
    keyword_flag = keyword_flags(texts, rule)
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, (_, _, source) in enumerate(lines):
        by_source[source].append(i)
    out: dict[str, dict[str, AlertFigures]] = {}
    for source in sorted(by_source):
        idx = np.array(by_source[source])
        out[source] = {"model": AlertFigures.of(is_alert[idx], model_flag[idx]),
                       "keyword": AlertFigures.of(is_alert[idx], keyword_flag[idx])}
    out[OVERALL] = {"model": AlertFigures.of(is_alert, model_flag),
                    "keyword": AlertFigures.of(is_alert, keyword_flag)}
    return out


def beats_keyword(fig: dict[str, AlertFigures]) -> bool:
    """The model beats the rule on a source: higher alert F1, or equal F1 with fewer
    false alarms (a source with no alerts has F1 1 or 0 for both)."""
    m, k = fig["model"], fig["keyword"]
    if m.alerts == 0:
        return m.false_alarm_rate <= k.false_alarm_rate
    return m.f1 > k.f1 or (m.f1 == k.f1 and m.false_alarm_rate <= k.false_alarm_rate)


def recall_at_false_alarms(lines: Sequence[RealLine], anomaly: np.ndarray,
                           rates: Sequence[float], normal_label: str = "normal"
                           ) -> dict[float, float]:
    """How well the model *ranks* lines, whatever the threshold: for each false-alarm
    rate, the share of alerts scored above the threshold that flags exactly that share
    of normal lines. At the keyword rule's own false-alarm rate it says whether the
    model, tuned to false-alarm as often as the grep, would find more alerts than it."""
    is_alert = np.array([lab != normal_label for _, lab, _ in lines], dtype=bool)
    scores = np.asarray(anomaly, dtype=np.float64)
    normal, alerts = scores[~is_alert], scores[is_alert]
    if normal.size == 0 or alerts.size == 0:
        return {rate: 0.0 for rate in rates}
    return {rate: float((alerts > np.quantile(normal, 1.0 - rate)).mean()) for rate in rates}


def bias_for_false_alarms(lines: Sequence[RealLine], anomaly: np.ndarray, rate: float,
                          normal_label: str = "normal") -> tuple[float, float]:
    """(extra normal bias, alert recall there): the bias that, added to the normal label's
    logit of the models that scored ``anomaly``, flags (anomaly > 0.5) ``rate`` of the
    normal lines. Adding ``b`` to the normal logit flags exactly the lines whose anomaly
    was above ``sigmoid(b)``, so the bias is the logit of that quantile; nothing is
    reordered (:func:`nanomodel.realtrain.with_normal_bias`)."""
    is_alert = np.array([lab != normal_label for _, lab, _ in lines], dtype=bool)
    scores = np.asarray(anomaly, dtype=np.float64)
    if is_alert.all() or not is_alert.any():
        raise ValueError("needs both normal and alert lines")
    t = float(np.clip(np.quantile(scores[~is_alert], 1.0 - rate), 1e-6, 1 - 1e-6))
    return float(np.log(t / (1 - t))), float((scores[is_alert] > t).mean())


def manifest_figures(rep: dict[str, dict[str, AlertFigures]],
                     prefix: str = "real_heldout") -> dict[str, float]:
    """Flat ``{"real_heldout.<source>.alert_f1": ..., ...keyword_rule_alert_f1}`` for
    a bundle manifest's ``evaluation`` (floats only, as the manifest requires)."""
    out: dict[str, float] = {}
    for source, figs in rep.items():
        for who, tag in (("model", ""), ("keyword", "keyword_rule_")):
            f = figs[who]
            base = f"{prefix}.{source}.{tag}"
            out[base + "alert_f1"] = f.f1
            out[base + "false_alarm_rate"] = f.false_alarm_rate
            out[base + "alert_recall"] = f.recall
        out[f"{prefix}.{source}.lines"] = float(figs["model"].lines)
        out[f"{prefix}.{source}.alerts"] = float(figs["model"].alerts)
    return out


def as_dict(rep: dict[str, dict[str, AlertFigures]]) -> dict[str, dict[str, dict[str, float]]]:
    return {s: {who: asdict(f) for who, f in figs.items()} for s, figs in rep.items()}


def format_table(rep: dict[str, dict[str, AlertFigures]]) -> str:
    """Markdown: one row per source, overall last."""
    rows = ["| source | lines | alerts | model F1 / false alarms / recall "
            "| keyword rule F1 / false alarms / recall | model wins |",
            "|---|---|---|---|---|---|"]
    for source, figs in rep.items():
        m, k = figs["model"], figs["keyword"]
        name = f"**{source}**" if source == OVERALL else source
        rows.append(f"| {name} | {m.lines} | {m.alerts} "
                    f"| {m.f1:.3f} / {100 * m.false_alarm_rate:.1f} % / {100 * m.recall:.1f} % "
                    f"| {k.f1:.3f} / {100 * k.false_alarm_rate:.1f} % / {100 * k.recall:.1f} % "
                    f"| {'yes' if beats_keyword(figs) else 'no'} |")
    return "\n".join(rows)


def sent_alerts(labels: Sequence[str], normal_label: str, probs: np.ndarray,
                anomaly: np.ndarray, config: AlertConfig | None = None) -> np.ndarray:
    """1.0 where the agent's alert policy (:class:`agent.alerts.AlertPolicy` with the
    ``[alerts]`` table ``config``, the defaults if None) sends an alert for a line, else
    0.0 — scores that :func:`report` reads as flagged or not. The figures above flag at
    anomaly > 0.5, as the issue measures; a technician is sent only these."""
    from agent.alerts import AlertPolicy
    from agent.config import AlertConfig

    policy = AlertPolicy.build(config or AlertConfig(), list(labels), normal_label)
    fires = [policy.decide(labels[int(p.argmax())], float(p.max()), float(a)) is not None
             for p, a in zip(probs, anomaly, strict=True)]
    return np.array(fires, dtype=np.float32)


def keyword_recalibrated(anomaly: np.ndarray, keyword: np.ndarray, c: float,
                         b: float) -> np.ndarray:
    """The grep as a second opinion: ``sigmoid(logit(anomaly) + c + b * keyword)``. At the
    0.5 flag a line the rule does not match needs ``anomaly > sigmoid(-c)``, one it matches
    ``anomaly > sigmoid(-c - b)`` (measured, not shipped: docs/model.md)."""
    a = np.clip(np.asarray(anomaly, dtype=np.float64), 1e-7, 1 - 1e-7)
    z = np.log(a / (1 - a)) + c + b * np.asarray(keyword, dtype=np.float64)
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


PRIOR_GRID = [(round(c, 2), round(b, 2)) for c in np.arange(-1.0, 0.41, 0.1)
              for b in np.arange(0.0, 3.01, 0.25)]


def nested_keyword_prior(lines: Sequence[RealLine], anomaly: np.ndarray, folds: int,
                         normal_label: str = "normal",
                         grid: Sequence[tuple[float, float]] = PRIOR_GRID,
                         ) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """:func:`keyword_recalibrated` with ``(c, b)`` chosen for each group of sources from
    the *other* groups only (nested, so the figure is still a held-out one): the highest
    alert F1 whose false alarms there stay at or below the plain 0.5 flag's. Returns the
    recalibrated scores and the choice per group."""
    is_alert = np.array([lab != normal_label for _, lab, _ in lines], dtype=bool)
    keyword = keyword_flags([t for t, _, _ in lines])
    sources = np.array([s for _, _, s in lines])
    raw = np.asarray(anomaly, dtype=np.float64)
    out = raw.copy()
    chosen: list[tuple[float, float]] = []
    for group in source_folds(list(sources), folds):
        held = np.isin(sources, group)
        rest_alert, rest_kw, rest_an = is_alert[~held], keyword[~held], raw[~held]
        limit = AlertFigures.of(rest_alert, rest_an > THRESHOLD).false_alarm_rate
        best: tuple[float, tuple[float, float]] = (-1.0, (0.0, 0.0))
        for c, b in grid:
            fig = AlertFigures.of(rest_alert,
                                  keyword_recalibrated(rest_an, rest_kw, c, b) > THRESHOLD)
            if fig.false_alarm_rate <= limit and fig.f1 > best[0]:
                best = (fig.f1, (c, b))
        chosen.append(best[1])
        out[held] = keyword_recalibrated(raw[held], keyword[held], *best[1])
    return out, chosen
