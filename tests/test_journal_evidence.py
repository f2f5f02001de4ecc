"""The journal's evidence weighed in the agent's order (agent.journal_evidence): the level,
then the catalog id, each switchable, lines without either untouched."""

from __future__ import annotations

import numpy as np
import pytest

from agent.journal_catalog import CatalogEvidenceConfig
from agent.journal_evidence import weigh_journal_evidence
from agent.level_evidence import LevelEvidenceConfig, LevelOffsets

FAILED = "be02cf6855d2428ba40df7e9d022f03d"  # a start job failed: counts at notice or worse
ERR, INFO = 3, 6


def batch() -> tuple[np.ndarray, np.ndarray]:
    probs = np.array([[0.40, 0.36, 0.24], [0.40, 0.36, 0.24], [0.90, 0.06, 0.04],
                      [0.90, 0.06, 0.04]], dtype=np.float32)
    return probs, 1.0 - probs[:, 0]


def test_the_level_then_the_catalog_and_nothing_else_moves() -> None:
    probs, anomaly = batch()
    before = probs.copy(), anomaly.copy()
    levels = [ERR, None, INFO, ERR]
    ids = [None, None, None, FAILED]
    out = weigh_journal_evidence(probs, anomaly, levels, ids, LevelEvidenceConfig(),
                                 CatalogEvidenceConfig(), 0)
    np.testing.assert_array_equal(probs, before[0])  # inputs untouched
    np.testing.assert_array_equal(anomaly, before[1])
    assert out.levels_weighed == 3 and out.catalog_weighed == 1
    assert out.anomaly[1] == anomaly[1]  # neither: bit for bit
    assert out.anomaly[0] > anomaly[0] and out.anomaly[2] < anomaly[2]  # err up, info down
    # The failure's id lifts its line to the floor after its level moved it.
    assert out.anomaly[3] == pytest.approx(CatalogEvidenceConfig().alert_anomaly, abs=1e-6)
    # Every alert label keeps its share of the anomaly.
    assert out.probs[0, 1] / out.probs[0, 2] == pytest.approx(0.36 / 0.24, rel=1e-5)


def test_each_kind_of_evidence_can_be_switched_off() -> None:
    probs, anomaly = batch()
    levels, ids = [ERR, None, INFO, ERR], [None, None, None, FAILED]
    no_levels = weigh_journal_evidence(probs, anomaly, levels, ids,
                                       LevelEvidenceConfig(enabled=False),
                                       CatalogEvidenceConfig(), 0)
    assert no_levels.levels_weighed == 0 and no_levels.catalog_weighed == 1
    np.testing.assert_array_equal(no_levels.anomaly[:3], anomaly[:3])
    no_catalog = weigh_journal_evidence(probs, anomaly, levels, ids, LevelEvidenceConfig(),
                                        CatalogEvidenceConfig(enabled=False), 0)
    assert no_catalog.catalog_weighed == 0 and no_catalog.verdicts == [None] * 4
    assert no_catalog.anomaly[3] < CatalogEvidenceConfig().alert_anomaly
    zero = LevelEvidenceConfig(offsets=LevelOffsets(err=0.0, info=0.0))
    np.testing.assert_allclose(weigh_journal_evidence(
        probs, anomaly, levels, [None] * 4, zero, CatalogEvidenceConfig(), 0).anomaly,
        anomaly, atol=1e-6)
    with pytest.raises(ValueError, match="3 levels"):
        weigh_journal_evidence(probs, anomaly, levels[:3], ids[:3], LevelEvidenceConfig(),
                               CatalogEvidenceConfig(), 0)
