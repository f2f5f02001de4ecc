"""Model quality on real log text of sources held out from training.

1. Computed here: the shipped recipe (``nanomodel.build_default.recipe``) trains a model
   without one group of real sources (the first of the 8 groups the benchmark deals);
   the test scores that group's lines and holds the figures to floors just under what
   this recipe and data measure. Nothing is read from a manifest: a worse recipe or
   worse data fails it.
2. Recorded: the 8-group figures ``benchmarks/model_real.py --write`` stored for exactly
   this recipe and data (its fingerprint) say the model beats the keyword rule
   ``grep -iE 'fatal|fail|error|panic|critical'`` overall, and the shipped bundle's
   manifest carries them.
"""

from __future__ import annotations

import json
import os

import pytest

from agent import default_bundle_path
from contract.bundle import read_bundle
from nanomodel.build_default import (
    HELDOUT_FIGURES_PATH,
    heldout_fingerprint,
    real_training_lines,
    recipe,
)
from nanomodel.features import Featurizer, default_spec
from nanomodel.realeval import OVERALL, report, score_heldout, source_folds
from nanomodel.realtrain import mixed_trainer

GROUPS = 8


@pytest.mark.slow
def test_recipe_on_a_group_of_unseen_sources_holds_its_measured_floors() -> None:
    lines = real_training_lines()
    held = source_folds([s for _, _, s in lines], GROUPS)[0]
    mix, cfg, prior = recipe(quiet=True)
    trainer = mixed_trainer(Featurizer(default_spec()), mix, cfg,
                            w1_prior=prior(lines) if prior else None, jobs=os.cpu_count() or 1)
    scores = score_heldout(lines, trainer, held)
    rows = [row for row in lines if row[2] in set(held)]
    rep = report(rows, scores)
    model, keyword = rep[OVERALL]["model"], rep[OVERALL]["keyword"]
    figures = f"held out {held}: model {model}, keyword rule {keyword}"
    # Measured on this group (apache2, cups, ipmievd, mosquitto, openvpn, smartmontools,
    # systemd-timesyncd; 4,289 lines) by rule 6's recipe: F1 0.647, false alarms 8.3 %,
    # recall 57.0 %; the keyword rule 0.596 / 10.2 % / 52.4 %. Training is seeded, so the
    # figures are the same on every run of the same data (a change of sources deals other
    # groups: re-measure; a change of labels elsewhere retrains these models too). The
    # recipe before rule 6 (its flag lower, 1.35 against 1.59): 0.679 / 9.8 % / 63.1 %;
    # before the warning and notice reviews were applied (4,401 lines, other labels): 0.654 /
    # 6.6 % / 56.9 %; the five-epoch recipe before December 2026: 0.665 / 8.5 % / 60.7 %.
    assert model.f1 >= 0.64 and model.f1 > keyword.f1, figures
    assert model.recall >= 0.56, figures
    assert model.false_alarm_rate <= 0.095, figures


def test_recorded_heldout_figures_are_this_datas_and_beat_the_keyword_rule() -> None:
    doc = json.loads(HELDOUT_FIGURES_PATH.read_text())
    assert doc["fingerprint"] == heldout_fingerprint(real_training_lines()), (
        "real_heldout.json is for other data or another recipe: run "
        "benchmarks/model_real.py --folds 8 --write, then nanomodel.build_default")
    fig = doc["figures"]
    overall = "real_heldout.overall."
    assert fig[overall + "alert_f1"] > fig[overall + "keyword_rule_alert_f1"]
    assert fig[overall + "alert_recall"] > fig[overall + "keyword_rule_alert_recall"]
    # Not yet issue 9's bar (false alarms <= 2 %, recall >= 80 %); the figures say so.
    assert fig[overall + "false_alarm_rate"] < 0.20
    # the released bundle's manifest carries them (build_default copies them while the
    # fingerprint matches; test_model_training checks the bundle is that build's)
    shipped = read_bundle(default_bundle_path().read_bytes()).manifest.evaluation
    assert {k: round(v, 4) for k, v in fig.items() if k.startswith(overall)} == \
        {k: round(v, 4) for k, v in shipped.items() if k.startswith(overall)}


def test_shipped_model_on_public_samples_it_never_saw_beats_the_keyword_rule() -> None:
    """fail2ban's test logs (other people's systems, many software versions; never
    training text): the released bundle, run as the agent runs it, flags fewer of their
    healthy lines than the grep and beats it on alert F1; the manifest says the same."""
    import numpy as np

    from agent.model import LoadedModel
    from nanomodel.realtext import load_samples

    lines = [c.row for c in load_samples()]
    assert len(lines) >= 800
    _, anomaly = LoadedModel.load(default_bundle_path()).classify([t for t, _, _ in lines])
    overall = report(lines, np.asarray(anomaly))[OVERALL]
    model, rule = overall["model"], overall["keyword"]
    # measured: 0.728 / 20.2 % / 61.6 % against the rule's 0.708 / 35.3 % / 62.0 %
    assert model.f1 > rule.f1 and model.f1 >= 0.70
    assert model.false_alarm_rate < rule.false_alarm_rate - 0.10
    assert model.recall >= 0.58
    shipped = read_bundle(default_bundle_path().read_bytes()).manifest.evaluation
    assert shipped["public_sample.overall.alert_f1"] == pytest.approx(model.f1, abs=0.01)
    assert shipped["public_sample.overall.keyword_rule_false_alarm_rate"] == \
        pytest.approx(rule.false_alarm_rate, abs=1e-4)


def test_shipped_model_on_a_device_journal_with_its_levels_meets_the_bar() -> None:
    """A booted systemd's journal (nanomodel/data/real/journal/, never training text: the
    manager, journald, sshd and its PAM), as the agent reads it: words alone the model beats
    the grep; with each entry's level weighed in as the agent does (agent.level_evidence
    defaults) and systemd's catalog, the alerts it sends flag at most 2 % of the healthy
    lines and find at least 80 % of the failures. The manifest says the same."""
    import numpy as np

    from agent.level_evidence import LevelOffsets, apply_levels
    from agent.model import LoadedModel
    from nanomodel.reallevels import priority
    from nanomodel.realtext import load_journal

    journal = load_journal()
    lines = [c.row for c in journal]
    assert len(lines) >= 300 and sum(lab != "normal" for _, lab, _ in lines) >= 40
    model = LoadedModel.load(default_bundle_path())
    probs, anomaly = (np.asarray(a) for a in model.classify([t for t, _, _ in lines]))
    words = report(lines, anomaly)[OVERALL]
    # measured: 0.883 / 3.8 % / 97.0 % against the rule's 0.560 / 1.5 % / 42.4 % (before
    # the state lines 0.892 / 2.8 % / 93.9 %; the five-epoch model before December 2026:
    # 0.869 / 0.8 % / 80.3 %); the level below takes the false alarms to the bar
    assert words["model"].f1 > words["keyword"].f1
    assert words["model"].recall > words["keyword"].recall
    assert words["model"].false_alarm_rate <= 0.04
    normal = list(model.labels).index("normal")
    levels = [priority(c.level) for c in journal]
    levelled_probs, levelled = apply_levels(probs, anomaly, levels, LevelOffsets(), normal)
    with_level = report(lines, levelled)[OVERALL]["model"]
    # measured: 0.908 / 2.8 % / 97.0 % with the state lines (0.919 / 1.8 % / 93.9 % before
    # them; the five-epoch model 0.953 / 0.3 % / 92.4 %): the flag at 0.5 is just over the
    # bar's 2 % here, what the agent sends (below) is under it
    assert with_level.false_alarm_rate <= 0.03 and with_level.recall >= 0.80
    # The alerts the agent sends, with systemd's catalog ids weighed in after the level
    # (agent.journal_catalog defaults): measured 0.933 / 1.5 % / 95.5 % (before the state
    # lines 0.919 / 1.8 % / 93.9 %; the five-epoch model 0.945 / 0.3 % / 90.9 %, against
    # 0.619 / 0.3 % / 45.5 % with the level alone).
    from agent.journal_catalog import CatalogEvidenceConfig, apply_catalog, verdict_of
    from nanomodel.realeval import sent_alerts

    verdicts = [verdict_of(c.message_id, lv) for c, lv in zip(journal, levels, strict=True)]
    p3, a3 = apply_catalog(levelled_probs, levelled, verdicts, CatalogEvidenceConfig(), normal)
    sent = report(lines, sent_alerts(model.labels, "normal", p3, a3))[OVERALL]["model"]
    assert sent.false_alarm_rate <= 0.02 and sent.recall >= 0.80
    shipped = read_bundle(default_bundle_path().read_bytes()).manifest.evaluation
    assert shipped["device_journal.overall.alert_f1"] == pytest.approx(words["model"].f1,
                                                                       abs=0.01)
    assert shipped["device_journal.overall.lines"] == len(lines)


def test_alerts_the_agent_sends_on_public_samples_are_quieter_than_the_grep() -> None:
    """What a technician is actually sent (the agent's default [alerts] policy: a label
    at >= 0.8 or anomaly >= 0.95) on other people's logs: far fewer healthy lines than
    the grep flags, and still a good share of the alerts."""
    import numpy as np

    from agent.model import LoadedModel
    from nanomodel.realeval import sent_alerts
    from nanomodel.realtext import load_samples

    lines = [c.row for c in load_samples()]
    model = LoadedModel.load(default_bundle_path())
    probs, anomaly = model.classify([t for t, _, _ in lines])
    flags = sent_alerts(model.labels, model.manifest.normal_label, probs, anomaly)
    overall = report(lines, flags)[OVERALL]
    sent, rule = overall["model"], overall["keyword"]
    # measured: 4.6 % false alarms, recall 45.3 %, F1 0.616; the grep 35.3 % / 62.0 %
    assert sent.false_alarm_rate <= 0.08 and sent.false_alarm_rate < rule.false_alarm_rate / 4
    assert sent.recall >= 0.40
    # stricter than the measure's flag, never looser: every line sent is flagged at 0.5
    assert np.all(np.asarray(anomaly)[flags > 0.5] > 0.5)



def test_shipped_model_on_new_renderings_of_the_templates_it_knows() -> None:
    """Every harvested template rendered with other values and heads than the build's
    (another seed): the lines a device running software whose text we harvested meets.
    Trained on one rendering for five epochs the model flagged 12.2 % of their healthy
    lines and found 73.2 % of the alerts; drawn fresh per epoch (December 2026), measured
    1.5 % / 87.4 % — the bar of issue 9 on these lines; with the state lines in the corpus
    2.1 % / 89.6 % (docs/model.md "State lines": just over the bar's 2 %); with the warning
    and notice reviews applied and the flag moved back to the held-out false alarms before
    them, 1.5 % / 85.1 % on the corrected labels (docs/model.md "The warning and notice
    reviews applied"); with lines' heads dropped 0.6 % / 83.9 % (docs/model.md "Heads
    dropped")."""
    import random

    import numpy as np

    from agent.model import LoadedModel
    from nanomodel.realtext import real_lines

    rows = real_lines(random.Random(10), per_template=1, captured=False)
    model = LoadedModel.load(default_bundle_path())
    anomaly = np.asarray(model.classify([t for t, _, _ in rows])[1])
    got = report(rows, anomaly)[OVERALL]["model"]
    assert got.false_alarm_rate <= 0.02 and got.recall >= 0.83, got
