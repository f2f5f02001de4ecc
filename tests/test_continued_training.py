"""Continued training (nanomodel.continued): new lines taught to a trained model without
drawing it again, and the fresh epochs that render captured_next's lines every time."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from nanomodel.continued import ContinueConfig, base_and_continued, without_added
from nanomodel.features import Featurizer, default_spec
from nanomodel.network import ShippedModel, reference_forward
from nanomodel.realtext import load_captured_next, real_lines
from nanomodel.realtrain import MixConfig, fresh_rows, train_distilled
from nanomodel.templates import LABELS
from nanomodel.train import TrainConfig

SOURCES = ["chrony", "xinetd"]
MIX = MixConfig(corpus_lines=200, reading_lines=100, real_share=0.6, normal_weight=4.0,
                fresh_epochs=True, normal_bias=0.5, next_lines=True)
SMALL = TrainConfig(hidden1=16, hidden2=16, epochs=12, min_steps=0, head_epochs=5,
                    progress=False)


def _lines() -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    base = real_lines(random.Random(0), per_template=1, sources=SOURCES)
    every = real_lines(random.Random(0), per_template=1, sources=SOURCES, with_next=True)
    assert every[: len(base)] == base
    return base, every


def test_the_added_rows_come_out_and_the_base_rows_keep_their_order() -> None:
    base, every = _lines()
    added = every[len(base):]
    assert added and without_added(every, added) == base
    # a row the base also holds: the base's copy stays where it was
    twin = base[3]
    assert without_added([*base, twin], [twin]) == base


def test_fresh_epochs_render_the_next_lines_again_only_when_asked() -> None:
    base, every = _lines()
    featurizer = Featurizer(default_spec())
    with_next = fresh_rows(every, featurizer, MIX, LABELS)(1)[0]
    without = fresh_rows(every, featurizer, replace(MIX, next_lines=False), LABELS)(1)[0]
    shipped_way = fresh_rows(base, featurizer, replace(MIX, next_lines=False), LABELS)(1)[0]
    n_next = len(load_captured_next(SOURCES))
    # Before the switch a retrain "with" the next lines saw them in its first epoch only.
    assert with_next.rows - without.rows == n_next
    assert without.rows == shipped_way.rows


def test_the_base_is_the_recipes_model_and_the_continued_one_learns_the_added_lines() -> None:
    base, every = _lines()
    added = every[len(base):]
    featurizer = Featurizer(default_spec())
    cont = ContinueConfig(epochs=5, lr=1e-3)
    first, more, control = base_and_continued(every, added, featurizer, MIX, SMALL, cont,
                                              control=True)
    recipe = train_distilled(base, featurizer, replace(MIX, next_lines=False), SMALL)
    assert np.array_equal(first.body.w1_q, recipe.body.w1_q)
    assert np.array_equal(first.head_w, recipe.head_w)
    assert not np.array_equal(more.body.w1_q, first.body.w1_q)
    # the control is the same stage without the added lines: another model again
    assert not np.array_equal(control.body.w1_q, more.body.w1_q)

    def error(model: ShippedModel, rows: list[tuple[str, str, str]]) -> float:
        anomaly = reference_forward(model, featurizer.transform([t for t, _, _ in rows]))[1]
        alert = np.array([lab != "normal" for _, lab, _ in rows], np.float32)
        return float(np.abs(anomaly - alert).mean())

    # The added lines are learnt, and the base's own lines are not forgotten.
    assert error(more, added) < 0.8 * error(first, added)
    assert error(more, base) < error(first, base) + 0.05
    assert error(more, added) < error(control, added)  # the lines, not the extra epochs


def test_the_benchmark_refuses_a_retrain_seed_without_its_split(
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--retrain-seed`` measures a retrain on the known-daemons split only: asked for
    with the held-out run or with a control (no stage to control), it says so."""
    from benchmarks.model_continued import main

    for argv in (["--retrain-seed", "3"], ["--known", "--control", "--retrain-seed", "3"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert "--retrain-seed goes with --known" in capsys.readouterr().err
