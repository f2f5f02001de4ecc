"""What a journal entry says beside its words, weighed in the agent's order: the program's
level first (:mod:`agent.level_evidence`), then the catalog id of a failure
(:mod:`agent.journal_catalog`), whose verdict needs the line's level.

One pure function for everything that scores journal lines as the agent does: the
pipeline (and the classify query through it), ``nanofleet model eval --alerts`` and
``benchmarks/model_real.py --journal``. Before, each wrote the order out itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.journal_catalog import CatalogEntry, CatalogEvidenceConfig, apply_catalog, verdict_of
from agent.level_evidence import LevelEvidenceConfig, apply_levels

__all__ = ["Weighed", "catalog_verdict", "weigh_journal_evidence"]


@dataclass(frozen=True)
class Weighed:
    """The scores with the journal's evidence in, and what was weighed."""

    probs: np.ndarray
    anomaly: np.ndarray
    levels_weighed: int  # lines whose level moved their anomaly
    verdicts: list[CatalogEntry | None]  # each line's catalog verdict (None: none counted)

    @property
    def catalog_weighed(self) -> int:
        return sum(v is not None for v in self.verdicts)


def catalog_verdict(message_id: str | None, level: int | None,
                    catalog_cfg: CatalogEvidenceConfig) -> CatalogEntry | None:
    """A line's catalog verdict as configured: None when the catalog evidence is off."""
    return verdict_of(message_id, level) if catalog_cfg.enabled else None


def weigh_journal_evidence(probs: np.ndarray, anomaly: np.ndarray,
                           levels: Sequence[int | None], message_ids: Sequence[str | None],
                           level_cfg: LevelEvidenceConfig, catalog_cfg: CatalogEvidenceConfig,
                           normal_index: int) -> Weighed:
    """``probs`` [B, K] and ``anomaly`` [B] of the words, with each line's level (None: the
    source gives none, or it is not trusted) and catalog id (None: none, or not from its
    owner) weighed in as configured. Lines without either keep their scores bit for bit;
    the inputs are not modified."""
    if not len(levels) == len(message_ids) == len(anomaly):
        raise ValueError(f"{len(levels)} levels and {len(message_ids)} ids for "
                         f"{len(anomaly)} lines")
    weighed = sum(lv is not None for lv in levels) if level_cfg.enabled else 0
    if weighed:
        probs, anomaly = apply_levels(probs, anomaly, list(levels), level_cfg.offsets,
                                      normal_index)
    verdicts = [catalog_verdict(m, lv, catalog_cfg)
                for m, lv in zip(message_ids, levels, strict=True)]
    if any(v is not None for v in verdicts):
        probs, anomaly = apply_catalog(probs, anomaly, verdicts, catalog_cfg, normal_index)
    return Weighed(probs, anomaly, weighed, verdicts)
