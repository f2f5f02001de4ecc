"""Release gates: a retrained bundle against the shipped one, by conditions written first."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks import model_release
from nanomodel import default_bundle_path
from nanomodel.realeval import OVERALL, AlertFigures
from nanomodel.release_gates import (
    DEFAULT_GATES,
    Flips,
    Gate,
    check,
    figures_of,
    flips,
    sign_test,
)

LINES = [("a", "normal", "x"), ("b", "normal", "x"), ("c", "software", "x"),
         ("d", "security", "y"), ("e", "normal", "y")]


def _figs(fa: float, recall: float) -> AlertFigures:
    return AlertFigures(lines=100, alerts=50, f1=0.5, false_alarm_rate=fa, recall=recall,
                        precision=0.5)


def test_absolute_and_relative_limits_decide_each_gate() -> None:
    gates = [Gate("fa abs", "s", "false_alarm_rate", at_most=0.05),
             Gate("fa rel", "s", "false_alarm_rate", worse_by_at_most=0.01),
             Gate("recall rel", "s", "recall", worse_by_at_most=0.0),
             Gate("recall abs", "s", "recall", at_least=0.8)]
    shipped = {"s": {OVERALL: _figs(0.04, 0.85)}}
    # false alarms up 1 point exactly (allowed), to 5 % (allowed); recall the same
    ok = check(gates, shipped, {"s": {OVERALL: _figs(0.05, 0.85)}})
    assert [r.passed for r in ok] == [True, True, True, True]
    # a hair more false alarms fails both false-alarm gates; a lower recall fails the
    # relative gate and, below 80 %, the absolute one
    bad = check(gates, shipped, {"s": {OVERALL: _figs(0.051, 0.79)}})
    assert [r.passed for r in bad] == [False, False, False, False]
    assert bad[1].limit() == "shipped + 1.0 points" and bad[2].limit() == "shipped - 0.0 points"


def test_a_figure_nobody_measured_fails_its_gate() -> None:
    gate = Gate("openssh", "public_sample", "false_alarm_rate", source="openssh", at_most=0.05)
    (result,) = check([gate], {"public_sample": {}}, {"public_sample": {}})
    assert not result.passed and math.isnan(result.candidate)


def test_a_gate_without_a_condition_or_with_another_figure_is_refused() -> None:
    with pytest.raises(ValueError, match="at_most, at_least, worse_by_at_most or significance"):
        Gate("empty", "journal", "recall")
    with pytest.raises(ValueError, match="figure must be one of"):
        Gate("f1", "journal", "f1", at_least=0.5)


def test_a_significance_gate_fails_only_a_move_a_draw_would_not_make() -> None:
    fa = Gate("fa", "s", "false_alarm_rate", significance=0.05)
    found = Gate("found", "s", "recall", significance=0.05)
    figs = {"s": {OVERALL: _figs(0.05, 0.8)}}

    def moves(new_fa: int, gone_fa: int, found_n: int, lost: int) -> dict[str, Flips]:
        return {"s": Flips(list(range(new_fa)), list(range(gone_fa)), list(range(lost)),
                           list(range(found_n)))}

    # 9 more false alarms against 3 (p 0.15) and 20 alerts lost against 70 found: passes
    assert [r.passed for r in check([fa, found], figs, figs, moves(9, 3, 70, 20))] == [True,
                                                                                       True]
    # 20 against 2 (p 0.0001) fails; so do 2 alerts found against 20 lost
    assert [r.passed for r in check([fa, found], figs, figs, moves(20, 2, 2, 20))] == [False,
                                                                                       False]
    # better, however significant, passes; no moves measured fails
    assert check([fa], figs, figs, moves(0, 30, 0, 0))[0].passed
    assert not check([fa], figs, figs)[0].passed
    with pytest.raises(ValueError, match="whole set"):
        Gate("openssh", "s", "recall", source="openssh", significance=0.05)


def test_flips_name_the_lines_behind_a_moved_figure() -> None:
    shipped = np.array([0.9, 0.1, 0.8, 0.2, 0.1])
    candidate = np.array([0.2, 0.7, 0.3, 0.9, 0.1])
    f = flips(LINES, shipped, candidate)
    assert f.newly_flagged_healthy == [1] and f.no_longer_flagged_healthy == [0]
    assert f.newly_missed_alerts == [2] and f.newly_found_alerts == [3]
    assert f.false_alarm_p() == 1.0 and f.recall_p() == 1.0  # one each way: no change
    figs = figures_of(LINES, candidate)
    assert set(figs) == {"x", "y", OVERALL} and figs[OVERALL].recall == 0.5


def test_the_shipped_bundle_passes_against_itself(capsys: pytest.CaptureFixture[str]) -> None:
    """The real bundle through the agent's runtime on every evaluation set: nothing moves,
    every default gate passes (each one is met by the shipped figures themselves)."""
    bundle = default_bundle_path()
    assert model_release.main([str(bundle), "--shipped", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert f"{len(DEFAULT_GATES)} of {len(DEFAULT_GATES)} gates pass" in out
    assert "newly" not in out and "FAIL" not in out
    for name in ("public_sample", "journal", "check_lines", "fresh_lines", "captured_next"):
        assert f"| {name}" in out


def test_the_sign_test_tells_a_change_from_a_draw() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(9, 3) == pytest.approx(0.1460, abs=1e-4)  # 12 moves: a draw can do it
    assert sign_test(3, 9) == sign_test(9, 3)
    assert sign_test(20, 2) == pytest.approx(0.000121, rel=0.01)  # a change
    assert sign_test(5, 0) == pytest.approx(0.0625)
