"""The level real lines are logged at, and the log-odds each level is worth.

On a device the journal keeps, with each line, the syslog PRIORITY its program chose; the
agent weighs it in (:mod:`agent.level_evidence`). Our real lines know the same thing: a
template's ``level`` is the level its code logs it at, a captured line carries its
template's. This module lines those levels up with :func:`nanomodel.realtext.real_lines`
and fits the offsets the agent adds, on held-out scores only (docs/model.md, "The
program's own level").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent.level_evidence import SYSLOG_LEVELS, level_of, shift_anomaly
from nanomodel.realeval import RealLine, source_folds
from nanomodel.realtext import load_captured, load_captured_next, load_templates

# A little ridge on the offsets: a level with few lines stays near 0 rather than running
# off to where its handful of lines are separated perfectly.
RIDGE = 1e-3


def priority(level: str) -> int:
    """The harvest's level name (the code's own: ``error``, ``crit``...) as a PRIORITY
    value, as the agent reads levels people write (:func:`agent.level_evidence.level_of`):
    ``"error"`` -> 3. Unknown names are an error (the harvest writes known ones)."""
    value = level_of(level)
    if value is None:
        raise ValueError(f"level {level!r} is not a syslog level name")
    return value


def real_line_priorities(per_template: int, sources: list[str] | None = None,
                         captured: bool = True, with_next: bool = False) -> list[int]:
    """The PRIORITY of each line :func:`nanomodel.realtext.real_lines` returns for the same
    arguments, in the same order (each template ``per_template`` times, then the captured
    lines, then with ``with_next`` those of ``captured_next/``)."""
    out = [priority(t.level) for t in load_templates(sources) if not t.not_log_text
           for _ in range(per_template)]
    if captured:
        out.extend(priority(c.level) for c in load_captured(sources))
        if with_next:
            out.extend(priority(c.level) for c in load_captured_next(sources))
    return out


def fit_level_offsets(anomaly: np.ndarray, priorities: np.ndarray, is_alert: np.ndarray,
                      ridge: float = RIDGE) -> np.ndarray:
    """The offsets (indexed by PRIORITY, NaN where no line has that level) that maximise
    the likelihood of the labels under ``sigmoid(logit(anomaly) + offset[level])`` — a
    calibration, not a choice of threshold: the model's own log-odds keep weight 1."""
    prio = np.asarray(priorities, dtype=np.int64)
    y = np.asarray(is_alert, dtype=np.float64)
    present = sorted(set(prio.tolist()))
    onehot = np.stack([(prio == p).astype(np.float64) for p in present], axis=1)
    b = np.zeros(len(present))
    for _ in range(100):  # Newton's method; the log-likelihood is concave in b
        p = shift_anomaly(anomaly, onehot @ b)
        grad = onehot.T @ (p - y) / len(y) + 2 * ridge * b
        hess = (onehot * (p * (1 - p))[:, None]).T @ onehot / len(y)
        step = np.linalg.solve(hess + 2 * ridge * np.eye(len(b)), grad)
        b -= step
        if np.abs(step).max() < 1e-9:
            break
    out = np.full(len(SYSLOG_LEVELS), np.nan)
    out[present] = b
    return out


def nested_level_offsets(lines: Sequence[RealLine], anomaly: np.ndarray,
                         priorities: Sequence[int], folds: int, normal_label: str = "normal",
                         ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Held-out anomaly with each group's offsets fitted on the *other* groups only (so
    the figure stays a held-out one). Returns the shifted scores and the fits per group."""
    sources = np.array([s for _, _, s in lines])
    is_alert = np.array([lab != normal_label for _, lab, _ in lines], dtype=bool)
    prio = np.asarray(priorities, dtype=np.int64)
    raw = np.asarray(anomaly, dtype=np.float64)
    out = raw.copy()
    fits: list[np.ndarray] = []
    for group in source_folds(list(sources), folds):
        held = np.isin(sources, group)
        fit = fit_level_offsets(raw[~held], prio[~held], is_alert[~held])
        fits.append(fit)
        out[held] = shift_anomaly(raw[held], np.nan_to_num(fit, nan=0.0)[prio[held]])
    return out, fits
