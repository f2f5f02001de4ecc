"""The program's own level as evidence (agent.level_evidence): pure decisions, the
config, and the fit the defaults come from (nanomodel.reallevels)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from agent.config import ConfigError, load_config
from agent.level_evidence import (
    SYSLOG_LEVELS,
    LevelEvidenceConfig,
    LevelOffsets,
    apply_levels,
    parse_priority,
    shift_anomaly,
)
from contract.bundle_features import BundleLevelOffsets
from nanomodel.build_default import REAL_PER_TEMPLATE, REAL_SEED
from nanomodel.reallevels import (
    fit_level_offsets,
    nested_level_offsets,
    priority,
    real_line_priorities,
)
from nanomodel.realtext import load_captured, load_captured_next, load_templates, real_lines

LABELS = ["normal", "storage", "security"]


def batch() -> tuple[np.ndarray, np.ndarray]:
    probs = np.array([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05], [0.2, 0.0, 0.8], [1.0, 0.0, 0.0]],
                     dtype=np.float32)
    return probs, (1.0 - probs[:, 0]).astype(np.float32)


def test_lines_without_a_level_keep_their_scores_bit_for_bit() -> None:
    probs, anomaly = batch()
    p2, a2 = apply_levels(probs, anomaly, [None] * 4, LevelOffsets(), 0)
    assert p2 is probs and a2 is anomaly
    p3, a3 = apply_levels(probs, anomaly, [None, 3, None, None], LevelOffsets(), 0)
    keep = [0, 2, 3]
    assert np.array_equal(p3[keep], probs[keep]) and np.array_equal(a3[keep], anomaly[keep])
    assert a3[1] != anomaly[1]
    assert np.array_equal(probs, batch()[0])  # the inputs are not modified


def test_the_shift_is_log_odds_and_the_labels_keep_their_shares() -> None:
    probs, anomaly = batch()
    offsets = LevelOffsets()
    p2, a2 = apply_levels(probs, anomaly, [3, 3, 6, 2], offsets, 0)
    # anomaly 0.5 at err: sigmoid(0 + offsets.err)
    assert a2[0] == pytest.approx(1 / (1 + math.exp(-offsets.err)), abs=1e-6)
    # 0.8 at info: sigmoid(logit(0.8) + offsets.info)
    assert a2[2] == pytest.approx(1 / (1 + math.exp(-(math.log(4) + offsets.info))), abs=1e-6)
    assert np.allclose(p2.sum(axis=1), 1.0, atol=1e-6)
    assert np.allclose(1.0 - p2[:, 0], a2, atol=1e-6)
    assert p2[0, 1] / p2[0, 2] == pytest.approx(0.3 / 0.2, rel=1e-5)  # storage stays first
    assert p2[2, 2] == pytest.approx(a2[2], abs=1e-6) and p2[2, 1] == 0.0  # all its mass
    # No alert mass at all (P(normal) = 1): the crit line's anomaly is spread evenly.
    assert p2[3, 1] == pytest.approx(p2[3, 2]) and a2[3] > 0
    assert p2.dtype == probs.dtype and a2.dtype == anomaly.dtype


def test_levels_order_the_same_words_as_a_journal_would() -> None:
    a = np.full(8, 0.3)
    shifted = shift_anomaly(a, LevelOffsets().by_priority())
    assert shifted[SYSLOG_LEVELS.index("crit")] > shifted[SYSLOG_LEVELS.index("err")] > 0.3
    assert shifted[SYSLOG_LEVELS.index("info")] < 0.3
    assert np.isfinite(shift_anomaly(np.array([0.0, 1.0]), np.array([5.0, -5.0]))).all()


def test_bad_batches_are_refused() -> None:
    probs, anomaly = batch()
    with pytest.raises(ValueError, match="4 lines"):
        apply_levels(probs, anomaly, [3, 3], LevelOffsets(), 0)
    with pytest.raises(ValueError, match=r"0\.\.7"):
        apply_levels(probs, anomaly, [3, 9, None, None], LevelOffsets(), 0)


@pytest.mark.parametrize(("value", "expected"), [
    (3, 3), ("6", 6), (b"0", 0), (b" 7\n", 7), ([b"4", b"6"], 4), (None, None), (8, None),
    (-1, None), (b"err", None), ("", None), ([], None), (True, None), (3.0, None),
    ("²", None), ("٣", None), (b"\xff", None), ("99999999999999999999", None),
])
def test_journal_priority_fields_are_parsed_or_ignored(value: object,
                                                       expected: int | None) -> None:
    assert parse_priority(value) == expected


def test_config_names_the_field_and_defaults_on(tmp_path: Path) -> None:
    base = (f'device_id = "d1"\nstate_dir = "{tmp_path}"\n[mqtt]\nhost = "127.0.0.1"\n'
            f'[[sources]]\nkind = "file"\npath = "{tmp_path}/x.log"\n')
    path = tmp_path / "agent.toml"
    path.write_text(base)
    cfg = load_config(path)
    assert cfg.model.level_evidence.enabled
    assert cfg.model.level_evidence.offsets.err == LevelOffsets().err
    path.write_text(base + "[model.level_evidence.offsets]\nwarn = 1.0\n")
    with pytest.raises(ConfigError, match=r"model\.level_evidence\.offsets\.warn"):
        load_config(path)
    with pytest.raises(ValidationError, match="less than or equal to 20"):
        LevelEvidenceConfig.model_validate({"offsets": {"err": 1e9}})
    off = LevelEvidenceConfig.model_validate({"offsets": {"info": 0.0}}).offsets
    assert off.info == 0.0 and off.err == LevelOffsets().err


def test_a_bundles_own_offsets_come_before_the_defaults_and_after_the_operators(
        tmp_path: Path) -> None:
    """Level by level: set in the agent's config > brought by the bundle > the default."""
    bundle = BundleLevelOffsets(emerg=5.0, alert=5.0, crit=4.0, err=3.0, warning=2.0,
                                notice=1.0, info=-2.0, debug=-3.0)
    plain = LevelEvidenceConfig()
    assert plain.for_bundle(None) is plain
    assert plain.for_bundle(bundle).offsets.by_priority() == bundle.by_priority()
    base = (f'device_id = "d1"\nstate_dir = "{tmp_path}"\n[mqtt]\nhost = "127.0.0.1"\n'
            f'[[sources]]\nkind = "file"\npath = "{tmp_path}/x.log"\n'
            "[model.level_evidence.offsets]\nerr = 0.5\n")
    path = tmp_path / "agent.toml"
    path.write_text(base)
    configured = load_config(path).model.level_evidence
    got = configured.for_bundle(bundle)
    assert got.offsets.err == 0.5  # the operator's
    assert got.offsets.info == -2.0 and got.offsets.crit == 4.0  # the bundle's
    assert configured.offsets.info == LevelOffsets().info  # without a bundle: the defaults
    assert got.enabled and got.for_bundle(None) is got
    off = LevelEvidenceConfig(enabled=False).for_bundle(bundle)
    assert not off.enabled and off.offsets.info == -2.0
    # Scored with them: an err line of anomaly 0.5 moves by the bundle's 3.0, not 2.37.
    probs, anomaly = batch()
    _, moved = apply_levels(probs, anomaly, [3, None, None, None],
                            plain.for_bundle(bundle).offsets, 0)
    assert moved[0] == pytest.approx(1 / (1 + math.exp(-3.0)), abs=1e-6)


def test_priorities_line_up_with_the_real_lines() -> None:
    lines = real_lines(random.Random(REAL_SEED), per_template=REAL_PER_TEMPLATE,
                       sources=["chrony", "openssh"])
    prios = real_line_priorities(REAL_PER_TEMPLATE, sources=["chrony", "openssh"])
    assert len(prios) == len(lines)
    templates = [t for t in load_templates(["chrony", "openssh"]) if not t.not_log_text]
    captured = load_captured(["chrony", "openssh"])
    assert len(templates) * REAL_PER_TEMPLATE + len(captured) == len(lines)
    assert prios[-1] == priority(captured[-1].level)
    assert prios[0] == priority(templates[0].level)
    assert priority("error") == 3 and priority("crit") == 2
    # The shipped recipe's lines end with captured_next/'s (the kernel's boot): theirs too.
    with_next = real_lines(random.Random(REAL_SEED), per_template=REAL_PER_TEMPLATE,
                           sources=["linux"], with_next=True)
    next_prios = real_line_priorities(REAL_PER_TEMPLATE, sources=["linux"], with_next=True)
    nxt = load_captured_next(["linux"])
    assert len(next_prios) == len(with_next) and nxt
    assert next_prios[-len(nxt):] == [priority(c.level) for c in nxt]
    with pytest.raises(ValueError, match="syslog level"):
        priority("loud")


def test_the_fit_recovers_a_known_shift_and_the_nested_fit_never_sees_its_group() -> None:
    rng = np.random.default_rng(0)
    n = 40_000
    prio = rng.choice([3, 6], size=n)
    anomaly = rng.uniform(0.02, 0.98, size=n)
    truth = np.where(prio == 3, 1.5, -1.0)
    is_alert = rng.uniform(size=n) < shift_anomaly(anomaly, truth)
    fit = fit_level_offsets(anomaly, prio, is_alert)
    assert fit[3] == pytest.approx(1.5, abs=0.1) and fit[6] == pytest.approx(-1.0, abs=0.1)
    assert np.isnan(fit[[0, 1, 2, 4, 5, 7]]).all()
    # Two groups of sources whose err lines mean opposite things: each group's offsets
    # come from the other one only.
    lines = [("x", "normal", "a")] * 200 + [("x", "normal", "b")] * 200
    labels = ["storage"] * 100 + ["normal"] * 100 + ["normal"] * 200
    lines = [(t, lab, s) for (t, _, s), lab in zip(lines, labels, strict=True)]
    prios = [3] * 100 + [6] * 100 + [3] * 100 + [6] * 100
    out, fits = nested_level_offsets(lines, np.full(400, 0.5), prios, folds=2)
    assert fits[0][3] < 0 < fits[1][3]   # a is scored by b's fit, b by a's
    assert (out[:100] < 0.5).all() and (out[200:300] > 0.5).all()


def test_the_benchmark_prints_levels_only_over_held_out_groups(
        capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.model_real import main
    from benchmarks.model_real_evidence import _with_levels
    from nanomodel.realtrain import LABELS as MODEL_LABELS

    for argv in (["--levels"], ["--folds", "8", "--levels", "--sent"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    # The agent's own code path on lines with levels: an err line at 0.4 is flagged, an
    # info line at 0.6 is not (the words alone flag the other one).
    normal = MODEL_LABELS.index("normal")
    probs = np.zeros((2, len(MODEL_LABELS)), dtype=np.float32)
    probs[:, normal] = [0.6, 0.4]
    probs[:, (normal + 1) % len(MODEL_LABELS)] = [0.4, 0.6]
    lines = [("x", "storage", "a"), ("y", "normal", "a")]
    _with_levels(lines, probs, [3, 6])
    out = capsys.readouterr().out
    assert "with the program's level" in out and "F1 1.000, false alarms 0.0 %" in out


def test_the_cli_table_shows_the_words_score_beside_the_level_score() -> None:
    from agent.tables import render

    row = {"text": "checksum mismatch", "label": "storage", "score": 0.81, "anomaly": 0.99,
           "probs": {}, "level": "crit", "words_anomaly": 0.89}
    out = render("classify", [row])
    assert "0.99 (words 0.89, crit)" in out and "checksum mismatch" in out
