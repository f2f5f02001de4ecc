"""The real-log evaluation harness: figures, source hold-out, the keyword rule."""

from __future__ import annotations

import numpy as np
import pytest

from nanomodel.realeval import (
    OVERALL,
    AlertFigures,
    beats_keyword,
    format_table,
    heldout_anomaly,
    keyword_flags,
    keyword_recalibrated,
    manifest_figures,
    nested_keyword_prior,
    recall_at_false_alarms,
    report,
    sent_alerts,
    source_folds,
)

LINES = [
    ("sshd[1]: Accepted publickey for pi", "normal", "ssh"),
    ("sshd[1]: error: kex_exchange_identification: Connection closed", "normal", "ssh"),
    ("sshd[1]: Failed password for root", "security", "ssh"),
    ("kernel: I/O error, dev sda, sector 7", "storage", "kernel"),
    ("kernel: usb 1-1: new high-speed USB device", "normal", "kernel"),
    ("chronyd: Selected source 10.0.0.1", "normal", "chrony"),
    ("chronyd: Can't synchronise: no selectable sources", "network", "chrony"),
]


def test_alert_figures_by_hand() -> None:
    f = AlertFigures.of(np.array([1, 1, 0, 0, 0], bool), np.array([1, 0, 1, 0, 0], bool))
    assert (f.lines, f.alerts) == (5, 2)
    assert f.precision == 0.5 and f.recall == 0.5 and f.f1 == 0.5
    assert f.false_alarm_rate == pytest.approx(1 / 3)
    quiet = AlertFigures.of(np.zeros(3, bool), np.zeros(3, bool))
    assert quiet.false_alarm_rate == 0 and quiet.recall == 1.0


def test_keyword_rule_is_the_grep() -> None:
    got = keyword_flags([t for t, _, _ in LINES])
    assert got.tolist() == [False, True, True, True, False, False, False]


def test_folds_hold_every_source_out_once() -> None:
    names = ["a", "b", "c", "d", "e"]
    assert source_folds(names) == [["a"], ["b"], ["c"], ["d"], ["e"]]
    folds = source_folds(names * 2, 2)
    assert folds == [["a", "c", "e"], ["b", "d"]]
    with pytest.raises(ValueError):
        source_folds(names, 1)


def test_heldout_models_never_saw_the_source_they_score() -> None:
    seen_by_model: list[set[str]] = []

    def trainer(train: list[tuple[str, str, str]]):
        sources = {s for _, _, s in train}
        seen_by_model.append(sources)
        return lambda texts: np.full(len(texts), len(seen_by_model), np.float32)

    anomaly = heldout_anomaly(LINES, trainer)
    assert len(seen_by_model) == 3
    for i, (_, _, source) in enumerate(LINES):
        model = int(anomaly[i]) - 1
        assert source not in seen_by_model[model]
    asked: list[str] = []
    heldout_anomaly(LINES, lambda tr: lambda t: (asked.extend(t), np.zeros(len(t)))[1],
                    eval_texts=[t.upper() for t, _, _ in LINES])
    assert sorted(asked) == sorted(t.upper() for t, _, _ in LINES)


def test_report_per_source_and_overall() -> None:
    anomaly = np.array([0.1, 0.2, 0.9, 0.8, 0.1, 0.1, 0.7], np.float32)  # model: all right
    rep = report(LINES, anomaly)
    assert list(rep) == ["chrony", "kernel", "ssh", OVERALL]
    assert rep[OVERALL]["model"].f1 == 1.0 and rep[OVERALL]["model"].false_alarm_rate == 0
    kw = rep[OVERALL]["keyword"]
    assert kw.recall == pytest.approx(2 / 3) and kw.false_alarm_rate == pytest.approx(1 / 4)
    assert all(beats_keyword(f) for f in rep.values())
    flat = manifest_figures(rep)
    assert flat["real_heldout.overall.alert_f1"] == 1.0
    assert flat["real_heldout.ssh.keyword_rule_false_alarm_rate"] == 0.5
    assert flat["real_heldout.kernel.lines"] == 2.0
    assert "| **overall** | 7 | 3 |" in format_table(rep)


def test_recall_at_false_alarms_ranks_whatever_the_threshold() -> None:
    # normals 0.1 0.2 0.1 0.1; alerts 0.9 0.15 0.05: flagging no normal line (threshold
    # 0.2) finds the one alert above it; a quarter of them (0.125) also finds 0.15
    anomaly = np.array([0.1, 0.2, 0.9, 0.15, 0.1, 0.1, 0.05])
    at = recall_at_false_alarms(LINES, anomaly, (0.0, 0.25, 1.0))
    assert at[0.0] == pytest.approx(1 / 3)
    assert at[0.25] == pytest.approx(2 / 3)
    assert at[1.0] == pytest.approx(2 / 3)  # 0.05 is below every normal line
    # the order is all that counts: any monotone rescaling gives the same figures
    assert recall_at_false_alarms(LINES, anomaly ** 3, (0.0, 0.25, 1.0)) == at


def test_known_daemon_split_never_puts_one_text_on_both_sides() -> None:
    from nanomodel.realeval import split_known

    templates = [("tpl a", "normal", "s1")]
    captured = [(f"line {i % 7}", "normal" if i % 2 else "security", f"s{i % 3}")
                for i in range(40)]
    train, test = split_known(templates, captured)
    assert train[0] == templates[0]
    seen_train = {t for t, _, _ in train[1:]}
    assert seen_train and test
    assert not seen_train & {t for t, _, _ in test}
    assert len(train) - 1 + len(test) == len(captured)
    assert split_known(templates, captured) == (train, test)


def test_sent_alerts_follow_the_agents_default_policy() -> None:
    """A line is sent when an alert label reaches 0.8 or the anomaly reaches 0.95 (the
    agent's [alerts] defaults), not at the evaluation's 0.5 flag."""
    labels = ["normal", "security", "storage"]
    probs = np.array([[0.10, 0.85, 0.05],   # a label at 0.85: sent
                      [0.30, 0.40, 0.30],   # anomaly 0.70, no label at 0.8: not sent
                      [0.04, 0.48, 0.48],   # anomaly 0.96 spread over two labels: sent
                      [0.95, 0.03, 0.02]],  # healthy
                     dtype=np.float32)
    anomaly = 1.0 - probs[:, 0]
    assert sent_alerts(labels, "normal", probs, anomaly).tolist() == [1.0, 0.0, 1.0, 0.0]


def test_the_grep_as_a_second_opinion_moves_each_lines_threshold_by_its_match() -> None:
    anomaly = np.array([0.30, 0.30, 0.70, 0.70, 0.05])
    keyword = np.array([True, False, True, False, True])
    c, b = -np.log(0.6 / 0.4), 2.0  # without a match: anomaly > 0.6; with: > sigmoid(-c-b)
    flagged = keyword_recalibrated(anomaly, keyword, c, b) > 0.5
    assert flagged.tolist() == [True, False, True, True, False]
    # monotone in the anomaly for either kind of line, and the identity at (0, 0)
    assert np.allclose(keyword_recalibrated(anomaly, keyword, 0.0, 0.0), anomaly)
    ramp = np.linspace(0.01, 0.99, 50)
    assert np.all(np.diff(keyword_recalibrated(ramp, np.ones(50, bool), c, b)) > 0)


def test_nested_keyword_prior_is_chosen_without_the_held_group_and_keeps_false_alarms() -> None:
    # two sources; in each, grep-matching alerts score low and the model alone misses them
    lines, anomaly = [], []
    for src in ("a", "b"):
        lines += [(f"{src}: job failed", "software", src)] * 4 + \
                 [(f"{src}: all quiet", "normal", src)] * 8 + \
                 [(f"{src}: error page served", "normal", src)]
        anomaly += [0.3] * 4 + [0.1] * 8 + [0.05]
    scores, chosen = nested_keyword_prior(lines, np.array(anomaly), folds=2)
    plain = report(lines, np.array(anomaly))[OVERALL]["model"]
    second = report(lines, scores)[OVERALL]["model"]
    assert len(chosen) == 2 and all(b > 0 for _, b in chosen)
    assert second.recall == 1.0 > plain.recall
    assert second.false_alarm_rate <= plain.false_alarm_rate  # 0.05 stays below the bar
