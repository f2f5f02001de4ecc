"""Training on a fresh rendering of the real lines each epoch (MixConfig.fresh_epochs).

Trained for more epochs on one rendering, the model learnt the filled-in values by heart
(a unit's description decided `Failed to start ...`: docs/model.md, "Trained to fit");
each epoch now renders the same templates and captured lines with other values."""

from __future__ import annotations

import random

import numpy as np

from nanomodel.features import Featurizer, default_spec
from nanomodel.realtext import real_lines
from nanomodel.realtrain import MixConfig, fresh_rows, train_distilled, training_rows
from nanomodel.templates import LABELS
from nanomodel.train import SparseRows, TrainConfig, fit

SOURCES = ["chrony", "openssh"]
MIX = MixConfig(corpus_lines=200, reading_lines=100, real_share=0.6, normal_weight=4.0,
                fresh_epochs=True)
SMALL = TrainConfig(hidden1=16, hidden2=16, epochs=3, min_steps=0, head_epochs=3,
                    progress=False)


def test_each_epoch_renders_the_same_lines_with_other_values() -> None:
    real = real_lines(random.Random(0), per_template=1, sources=SOURCES)
    first_texts, first_y, _ = training_rows(real, MIX, LABELS)
    rows = fresh_rows(real, Featurizer(default_spec()), MIX, LABELS)
    x1, y1, w1, soft = rows(1)
    x2, y2, _, _ = rows(2)
    assert soft is None
    # The same templates and captured lines, labelled alike, in the same order...
    assert x1.rows == x2.rows == len(first_texts)
    n_real = len(real)
    assert list(y1[:n_real]) == list(y2[:n_real]) == list(first_y[:n_real])
    # ...with other values: most rendered lines differ between epochs.
    again = real_lines(random.Random(1_000_003 * (MIX.seed + 1) + 1), per_template=1,
                       sources=SOURCES)
    changed = sum(a[0] != b[0] for a, b in zip(real, again, strict=True))
    assert changed > len(real) // 2
    assert rows(1)[0].indices.tobytes() == x1.indices.tobytes()  # seeded: the same again
    assert w1.shape == (len(first_texts),)


def test_fit_trains_each_epoch_after_the_first_on_the_rows_it_is_given() -> None:
    real = real_lines(random.Random(0), per_template=1, sources=SOURCES)
    featurizer = Featurizer(default_spec())
    texts, y, weights = training_rows(real, MIX, LABELS)
    asked: list[int] = []
    fresh = fresh_rows(real, featurizer, MIX, LABELS)

    def refresh(epoch: int) -> tuple[SparseRows, np.ndarray, np.ndarray, np.ndarray | None]:
        asked.append(epoch)
        return fresh(epoch)

    a = fit(featurizer, texts, y, list(LABELS), "normal", SMALL, sample_weight=weights,
            refresh=refresh)
    assert asked == [1, 2]
    b = train_distilled(real, featurizer, MIX, SMALL)  # the recipe's path: the same model
    assert np.array_equal(a.head_w, b.head_w) and np.array_equal(a.body.w1_q, b.body.w1_q)
    c = train_distilled(real, featurizer, MixConfig(**{**MIX.__dict__, "fresh_epochs": False}),
                        SMALL)
    assert not np.array_equal(a.body.w1_q, c.body.w1_q)  # one rendering trains another model
