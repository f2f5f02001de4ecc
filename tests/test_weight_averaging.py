"""Stochastic weight averaging in the trainer (TrainConfig.average_epochs): the weights
kept are the mean of the last epochs' end-of-epoch weights, and nothing else changes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nanomodel.features import Featurizer, default_spec
from nanomodel.train import SparseRows, TrainConfig, _train_float

TEXTS = [f"eth0: link is {'up' if i % 3 else 'down'} after {i} ms" for i in range(90)] + \
        [f"I/O error, dev sda, sector {i * 977}" for i in range(30)]
SMALL = TrainConfig(hidden1=8, hidden2=8, epochs=3, min_steps=0, progress=False)


def _train(cfg: TrainConfig) -> list[np.ndarray]:
    x = SparseRows(Featurizer(default_spec()), TEXTS, progress=False)
    y = np.array([0] * 90 + [1] * 30)
    p = _train_float(x, y, np.ones(len(TEXTS), np.float32), 2, cfg, None,
                     np.random.default_rng(cfg.seed))
    return [p.w1, p.b1, p.w2, p.b2, p.wo, p.bo]


def test_the_kept_weights_are_the_mean_of_the_last_epochs() -> None:
    # One generator drives the whole run, so a two-epoch run is the first two epochs of
    # the three-epoch one: its end weights are the second epoch's.
    after_two = _train(dataclasses.replace(SMALL, epochs=2))
    after_three = _train(SMALL)
    averaged = _train(dataclasses.replace(SMALL, average_epochs=2))
    for two, three, mean in zip(after_two, after_three, averaged, strict=True):
        np.testing.assert_allclose(mean, (two + three) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(averaged[0], after_three[0])


@pytest.mark.parametrize("last", [0, 1])
def test_averaging_one_epoch_or_none_keeps_the_last_weights(last: int) -> None:
    plain = _train(SMALL)
    for a, b in zip(plain, _train(dataclasses.replace(SMALL, average_epochs=last)),
                    strict=True):
        assert a.tobytes() == b.tobytes()


def test_averaging_more_epochs_than_trained_averages_them_all() -> None:
    one = _train(dataclasses.replace(SMALL, epochs=1))
    two = _train(dataclasses.replace(SMALL, epochs=2))
    three = _train(SMALL)
    every = _train(dataclasses.replace(SMALL, average_epochs=10))
    np.testing.assert_allclose(every[2], (one[2] + two[2] + three[2]) / 3, rtol=1e-5,
                               atol=1e-6)
