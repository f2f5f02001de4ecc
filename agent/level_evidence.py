"""The program's own level as evidence: a line a daemon logs at ``err`` needs less
evidence from its words to be an alert than one it logs at ``info``.

The journal stores, with every entry, the syslog ``PRIORITY`` the program chose (0 emerg
.. 7 debug). The text model cannot see it: ``MESSAGE`` carries the words only. On
software the model has never seen, that level is the evidence the words lack — its most
common misses are internal error paths with no trouble word that are alerts because of the
level their code logs them at (docs/model.md, "The program's own level"). So, for lines
whose source knows the level, the model's anomaly is shifted in log-odds by a fixed
amount per level::

    anomaly' = sigmoid(logit(anomaly) + offset[level])

and the alert labels' probabilities are scaled so that they still sum to ``anomaly'``
(their ratios, hence the best alert label, do not change). A line without a level
(files, MQTT topics, a technician's query) is left exactly as the model scored it.

The default offsets are fitted (maximum likelihood, the model's own log-odds kept at
weight 1) on the shipped model's held-out scores of real daemons' lines with the level
their code logs them at: ``python benchmarks/model_real.py --folds 8 --levels`` fits and
prints them. They belong to a model, so a bundle brings its own in its manifest
(``level_offsets``) and those come first; the defaults here serve bundles that bring none,
and an operator's offsets in the agent config win over both (:func:`offsets_for`). Pure
functions of their inputs; the pipeline applies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np
from pydantic import Field

from contract.bundle_features import BundleLevelOffsets
from contract.strict import Strict

# syslog(3) priorities, in order: the index is the PRIORITY value journald stores.
SyslogLevel = Literal["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"]
SYSLOG_LEVELS: tuple[SyslogLevel, ...] = get_args(SyslogLevel)

# Clip before the logit so that a probability of exactly 0 or 1 stays finite.
_EPS = 1e-7
_NO_LEVEL = len(SYSLOG_LEVELS)


class LevelOffsets(BundleLevelOffsets):
    """Log-odds added to the model's anomaly for a line logged at each level: the agent's
    defaults, for a bundle that brings none (its own, in its manifest, come first)."""

    emerg: float = Field(default=3.79, ge=-20.0, le=20.0, description=(
        "PRIORITY 0. No real line of this level was in the fit: as crit."))
    alert: float = Field(default=3.79, ge=-20.0, le=20.0, description=(
        "PRIORITY 1. No real line of this level was in the fit: as crit."))
    crit: float = Field(default=3.79, ge=-20.0, le=20.0, description="PRIORITY 2 (fitted).")
    err: float = Field(default=2.37, ge=-20.0, le=20.0, description="PRIORITY 3 (fitted).")
    warning: float = Field(default=1.36, ge=-20.0, le=20.0,
                           description="PRIORITY 4 (fitted).")
    notice: float = Field(default=0.64, ge=-20.0, le=20.0, description="PRIORITY 5 (fitted).")
    info: float = Field(default=-1.15, ge=-20.0, le=20.0, description="PRIORITY 6 (fitted).")
    debug: float = Field(default=-1.15, ge=-20.0, le=20.0, description=(
        "PRIORITY 7. Too few real lines to fit (60, none an alert): as info."))


def offsets_for(configured: LevelOffsets, bundle: BundleLevelOffsets | None) -> LevelOffsets:
    """The offsets a bundle is scored with, level by level: the operator's where the config
    sets one, else the bundle's (fitted for its model, brought by the update), else the
    agent's defaults (fitted for the model shipped with this agent version)."""
    if bundle is None:
        return configured
    values = bundle.model_dump()
    values.update({name: getattr(configured, name) for name in configured.model_fields_set})
    return LevelOffsets(**values)


class LevelEvidenceConfig(Strict):
    """``[model.level_evidence]``: use the level a program logged a line at."""

    enabled: bool = Field(default=True, description=(
        "Shift the anomaly of lines whose source knows the program's level (journald's "
        "PRIORITY) by the offset of that level; false: the words alone decide."))
    offsets: LevelOffsets = Field(default_factory=LevelOffsets, description=(
        "Log-odds per level (0 = no change; +2.37 turns an anomaly of 0.5 into 0.91, "
        "-1.15 turns 0.5 into 0.24). The defaults are fitted for the shipped model on real "
        "daemons' lines held out from it (docs/model.md). For another model (a site's "
        "fine-tune) they were not fitted: a starting point. A level set to 0 leaves its "
        "lines to the words. A level set here wins over the offsets a bundle brings in "
        "its manifest (fitted for that model); a level not set takes the bundle's, or, "
        "when the bundle brings none, the default."))

    def for_bundle(self, bundle: BundleLevelOffsets | None) -> LevelEvidenceConfig:
        """This config as it applies to a bundle bringing ``bundle`` (:func:`offsets_for`)."""
        if bundle is None:
            return self
        return self.model_copy(update={"offsets": offsets_for(self.offsets, bundle)})


def parse_priority(value: object) -> int | None:
    """A journal PRIORITY field as 0..7, or None when missing or not a syslog level
    (journald stores what the program sent; it is bytes, text or an int, or a list
    when an entry repeats the field: the first counts, as for MESSAGE)."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit()):  # "²".isdigit(), but int() refuses it
            return None
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 8:
        return value
    return None


# Other spellings of the levels, as loggers write them (syslog's own deprecated names,
# log4j's and Python's): an operator's exported lines use whichever their software did.
_LEVEL_ALIASES = {"panic": 0, "emergency": 0, "critical": 2, "fatal": 2, "error": 3,
                  "warn": 4, "information": 6, "informational": 6, "trace": 7}


def level_of(value: str) -> int | None:
    """A level written as text (``err``, ``warning``, ``ERROR``, ``warn``, ``3``) as 0..7,
    or None when it is empty or not a syslog level. For levels that come from people's
    files, where journald's :func:`parse_priority` would only take the number."""
    text = value.strip().lower()
    if text in SYSLOG_LEVELS:
        return SYSLOG_LEVELS.index(text)
    if text in _LEVEL_ALIASES:
        return _LEVEL_ALIASES[text]
    return parse_priority(text) if text else None


def shift_anomaly(anomaly: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``sigmoid(logit(anomaly) + offsets)`` (float64)."""
    a = np.clip(np.asarray(anomaly, dtype=np.float64), _EPS, 1.0 - _EPS)
    z = np.log(a / (1.0 - a)) + np.asarray(offsets, dtype=np.float64)
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def apply_levels(probs: np.ndarray, anomaly: np.ndarray, levels: Sequence[int | None],
                 offsets: LevelOffsets, normal_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch's (probabilities, anomaly) with each line's level weighed in.

    Lines whose level is None keep their scores bit for bit. For the others the anomaly
    moves by the level's offset, ``P(normal)`` becomes ``1 - anomaly'`` and every other
    label keeps its share of the anomaly. Inputs are not modified.
    """
    if len(levels) != len(anomaly) or probs.shape[0] != len(anomaly):
        raise ValueError(f"{len(levels)} levels for {len(anomaly)} lines")
    if any(lv is not None and not 0 <= lv < _NO_LEVEL for lv in levels):
        raise ValueError("a level outside 0..7")
    if all(lv is None for lv in levels):
        return probs, anomaly
    # Index 8 of the table is "no level": offset 0, and those rows are put back below.
    prio = np.array([_NO_LEVEL if lv is None else lv for lv in levels], dtype=np.int64)
    known = prio != _NO_LEVEL
    new = shift_anomaly(anomaly, np.append(offsets.by_priority(), 0.0)[prio])
    return with_anomaly(probs, anomaly, new, known, normal_index)


def with_anomaly(probs: np.ndarray, anomaly: np.ndarray, new: np.ndarray, known: np.ndarray,
                 normal_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch with the rows where ``known`` given the anomaly ``new``: ``P(normal)``
    becomes ``1 - new`` and every other label keeps its share of the anomaly; the other
    rows are kept bit for bit. Shared by the level and the journal catalog
    (agent.journal_catalog)."""
    alert = np.ones(probs.shape[1], dtype=bool)
    alert[normal_index] = False
    rows = probs[:, alert].astype(np.float64)
    share = rows.sum(axis=1, keepdims=True)
    # Each alert label keeps its share of the anomaly; with no alert mass at all, the
    # new anomaly is spread evenly (there is no better split to keep).
    spread = np.where(share > 0, rows / np.where(share > 0, share, 1.0),
                      1.0 / max(int(alert.sum()), 1))
    shifted = np.empty(probs.shape, dtype=np.float64)
    shifted[:, alert] = spread * new[:, None]
    shifted[:, normal_index] = 1.0 - new
    out_probs = np.where(known[:, None], shifted, probs).astype(probs.dtype)
    out_anomaly = np.where(known, new, anomaly).astype(anomaly.dtype)
    return out_probs, out_anomaly
