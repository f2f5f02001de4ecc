"""Classification figures: per-class precision/recall/F1 and macro-F1 (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ClassScores:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Report:
    per_class: list[ClassScores]
    macro_f1: float
    accuracy: float


def score(truth: Sequence[int], predicted: Sequence[int], labels: list[str]) -> Report:
    """Scores over the labels that occur in ``truth`` or ``predicted``: a class absent
    from an evaluation set and never predicted says nothing either way."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} truths for {len(predicted)} predictions")
    k = len(labels)
    tp, fp, fn, support = [0] * k, [0] * k, [0] * k, [0] * k
    for t, p in zip(truth, predicted, strict=True):
        support[t] += 1
        if t == p:
            tp[t] += 1
        else:
            fp[p] += 1
            fn[t] += 1
    rows = []
    for i, lab in enumerate(labels):
        if support[i] == 0 and fp[i] == 0:
            continue
        prec = tp[i] / (tp[i] + fp[i]) if tp[i] + fp[i] else 0.0
        rec = tp[i] / (tp[i] + fn[i]) if tp[i] + fn[i] else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        rows.append(ClassScores(lab, prec, rec, f1, support[i]))
    macro = sum(r.f1 for r in rows) / len(rows) if rows else 0.0
    acc = sum(tp) / len(truth) if truth else 0.0
    return Report(rows, macro, acc)
