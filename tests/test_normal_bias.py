"""The normal bias that moves the flag: chosen from held-out scores, applied to the head."""

from __future__ import annotations

import random

import numpy as np
import pytest

from agent import default_bundle_path
from contract.bundle import load_bundle
from nanomodel.features import Featurizer, default_spec
from nanomodel.network import reference_forward
from nanomodel.pack import shipped_model
from nanomodel.realeval import bias_for_false_alarms
from nanomodel.realtext import real_lines
from nanomodel.realtrain import with_normal_bias
from nanomodel.templates import LABELS


def test_the_bias_found_for_a_rate_flags_that_rate_with_the_real_head() -> None:
    """Computed on the shipped model's own scores of real lines: the bias the benchmark
    prints, put into the head, flags the asked share of normal lines and keeps the order."""
    lines = real_lines(random.Random(5), per_template=1, sources=["chrony", "openssh"])
    model = shipped_model(load_bundle(default_bundle_path()))
    rows = Featurizer(default_spec()).transform([t for t, _, _ in lines])
    _, anomaly = reference_forward(model, rows)
    normal = np.array([lab == "normal" for _, lab, _ in lines])
    for rate in (0.02, 0.05, 0.2):
        bias, recall = bias_for_false_alarms(lines, anomaly, rate)
        _, moved = reference_forward(with_normal_bias(model, bias, LABELS), rows)
        assert abs(float(np.mean(moved[normal] > 0.5)) - rate) < 0.01, rate
        assert recall == pytest.approx(float(np.mean(moved[~normal] > 0.5)), abs=0.01)
        # the same lines in the same order: a bias on the normal label reorders nothing
        order = np.argsort(anomaly, kind="stable")
        assert np.all(np.diff(moved[order]) >= -1e-6)
    assert bias_for_false_alarms(lines, anomaly, 0.02)[0] > \
        bias_for_false_alarms(lines, anomaly, 0.2)[0]  # fewer false alarms: more bias


def test_scores_without_both_kinds_of_line_are_refused() -> None:
    with pytest.raises(ValueError, match="both normal and alert"):
        bias_for_false_alarms([("a", "normal", "s")], np.array([0.3]), 0.1)
