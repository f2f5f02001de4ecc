"""Model quality on real log text of sources held out from training, computed here.

The shipped recipe (``nanomodel.build_default.recipe``) trains a model without one
group of real sources; the test scores that group's lines and compares the model with
the keyword rule ``grep -iE 'fatal|fail|error|panic|critical'`` on the same lines.
Nothing is read from a manifest: a worse recipe or worse data fails this test.
"""

from __future__ import annotations

import pytest

from nanomodel.build_default import real_training_lines, recipe
from nanomodel.features import Featurizer, default_spec
from nanomodel.realeval import OVERALL, report, score_heldout, source_folds
from nanomodel.realtrain import mixed_trainer

GROUPS = 8


@pytest.mark.slow
def test_recipe_beats_the_keyword_rule_on_unseen_sources() -> None:
    lines = real_training_lines()
    held = source_folds([s for _, _, s in lines], GROUPS)[0]
    mix, cfg, prior = recipe(quiet=True)
    trainer = mixed_trainer(Featurizer(default_spec()), mix, cfg,
                            w1_prior=prior(lines) if prior else None)
    scores = score_heldout(lines, trainer, held)
    rows = [row for row in lines if row[2] in set(held)]
    rep = report(rows, scores)
    model, keyword = rep[OVERALL]["model"], rep[OVERALL]["keyword"]
    figures = f"held out {held}: model {model}, keyword rule {keyword}"
    # On the reviewed labels (nanomodel/data/real/review/) the margins shrank ("Failed ...,
    # ignoring" is routine now, the grep's false alarms rose and so did the model's
    # misses): measured F1 0.689 vs 0.664, recall 0.632 vs 0.584 on this group. Training
    # is seeded, so the figures are the same on every run of the same data.
    assert model.f1 > keyword.f1, figures
    assert model.recall > keyword.recall, figures
    # Measured with this recipe: see docs/model.md. Not yet the 2 % goal of issue 9.
    assert model.false_alarm_rate < MAX_FALSE_ALARMS, figures


MAX_FALSE_ALARMS = 0.30
