"""Continued training: a trained model taught new lines without drawing it again.

Why: a retrain of the whole recipe with a few hundred more lines is a new draw of the
model — one line added anywhere redraws every later minibatch, rendering and noise
bucket, and draws of the same recipe differ by 2.5 points of false alarms on software
never seen and by 8 points on other people's logs (docs/model.md, "How chaotic is
training"; "Site servers captured"). A data change then cannot be told from the draw.
Continuing from the model trained without the new lines keeps what that model learnt
and moves it as far as a few more epochs on *all* the lines (old and new, so the old ones
are not forgotten) take it: the same recipe's data, fresh renderings, a smaller step.

The stage has its own seed offset so its renderings, framing and generated lines are
new ones, not a replay of the base's first epochs. Measured (docs/model.md, "Continued
training"): the stage itself moves the model about half as much as a new seed, even at a
small step, and always towards flagging more; so it is compared with a control — the same
stage on the old lines only — to see what the new lines do. Not in the shipped recipe.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from nanomodel.network import ShippedModel, reference_forward
from nanomodel.realeval import RealLine, Scorer, Trainer
from nanomodel.realtrain import (
    MixConfig,
    fresh_rows,
    train_distilled,
    training_rows,
    with_normal_bias,
)
from nanomodel.templates import LABELS
from nanomodel.train import FeaturizerLike, TrainConfig, fit


@dataclass(frozen=True)
class ContinueConfig:
    """How far a continued stage moves the base model."""

    epochs: int = 5  # passes over all the lines, each a fresh rendering after the first
    lr: float = 5e-4  # a quarter of the base training's step: keep what the base learnt
    seed_offset: int = 500  # the stage's draws (renderings, framing, order) are its own
    # epochs of the head's refit on the quantized body after the stage (None: the
    # recipe's); the refit starts from the stage's head with an optimizer of its own
    head_epochs: int | None = None


def continue_training(base: ShippedModel, real: Sequence[RealLine],
                      featurizer: FeaturizerLike, mix: MixConfig, cfg: TrainConfig,
                      cont: ContinueConfig, labels: Sequence[str] = LABELS) -> ShippedModel:
    """``base`` (its flag not yet moved by ``mix.normal_bias``) trained further on
    ``real`` — the base's lines and the new ones — mixed with the corpus as the recipe
    mixes them. Returns the model without the bias."""
    stage_mix = replace(mix, seed=mix.seed + cont.seed_offset)
    stage_cfg = replace(cfg, epochs=cont.epochs, lr=cont.lr, seed=cfg.seed + cont.seed_offset,
                        head_epochs=cfg.head_epochs if cont.head_epochs is None
                        else cont.head_epochs)
    texts, y, weights = training_rows(real, stage_mix, labels)
    refresh = fresh_rows(real, featurizer, stage_mix, labels) if mix.fresh_epochs else None
    return fit(featurizer, texts, y, list(labels), "normal", stage_cfg, base=base,
               sample_weight=weights, refresh=refresh)


def without_added(real: Sequence[RealLine], added: Sequence[RealLine]) -> list[RealLine]:
    """``real`` less the ``added`` rows it holds, in order. The added rows come after the
    base's (``real_lines(with_next=True)`` appends them), so the last copies of each are
    the ones taken out: what is left is the base's rows in the base's order, and so the
    very model the base recipe trains."""
    pending = Counter(added)
    kept: list[RealLine] = []
    for row in reversed(real):
        if pending[row] > 0:
            pending[row] -= 1
        else:
            kept.append(row)
    kept.reverse()
    return kept


def base_and_continued(real: Sequence[RealLine], added: Sequence[RealLine],
                       featurizer: FeaturizerLike, mix: MixConfig, cfg: TrainConfig,
                       cont: ContinueConfig, labels: Sequence[str] = LABELS,
                       control: bool = False) -> tuple[ShippedModel, ...]:
    """(the base model, trained without ``added``; the base continued on all of
    ``real``), both with the flag moved by ``mix.normal_bias``. ``control``: a third, the
    base continued the same way on its own lines only — what the stage does without
    the added lines, to tell the lines' effect from the extra epochs'."""
    base_rows = without_added(real, added)
    base = train_distilled(base_rows, featurizer, replace(mix, next_lines=False, normal_bias=0.0),
                           cfg, labels)
    stages = [continue_training(base, real, featurizer, mix, cfg, cont, labels)]
    if control:
        stages.append(continue_training(base, base_rows, featurizer,
                                        replace(mix, next_lines=False), cfg, cont, labels))
    return tuple(with_normal_bias(m, mix.normal_bias, labels) for m in (base, *stages))


def paired_trainer(featurizer: FeaturizerLike, mix: MixConfig, cfg: TrainConfig,
                   added: Sequence[RealLine], cont: ContinueConfig,
                   labels: Sequence[str] = LABELS, control: bool = False) -> Trainer:
    """A :data:`nanomodel.realeval.Trainer` whose scorer gives ``[B, 2]`` (``[B, 3]`` with
    ``control``): each line's anomaly by each model of :func:`base_and_continued` — the
    same base, so the columns differ by the continued stage alone, not by a draw."""

    def train(real: list[RealLine]) -> Scorer:
        models = base_and_continued(real, added, featurizer, mix, cfg, cont, labels, control)

        def score(batch: list[str]) -> np.ndarray:
            x = featurizer.transform(batch)
            return np.stack([reference_forward(m, x)[1] for m in models], axis=1)

        return score

    return train
