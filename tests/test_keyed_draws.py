"""Training draws keyed by the row (nanomodel.keyed_draws, TrainConfig.keyed_draws and
MixConfig.keyed_draws): a line added to the training data changes its own draws only.
Before, one generator drew every order, dropout mask, noise bucket, rendering and
framing, so one duplicated line changed 10 % of the held-out flags, as a new seed does
(docs/model.md, "How chaotic is training")."""

from __future__ import annotations

import random

import numpy as np
import pytest

from nanomodel import keyed_draws, realtext
from nanomodel.bucket_noise import add_bucket_noise
from nanomodel.features import Featurizer, default_spec
from nanomodel.realtrain import MixConfig, training_rows
from nanomodel.templates import LABELS
from nanomodel.train import SparseRows, TrainConfig, fit

pytestmark = pytest.mark.unit

TEXTS = [f"wlan0: link is {'up' if i % 4 else 'down'} after {i} s, peer {i % 7}"
         for i in range(60)] + [f"I/O error, dev sd{'abc'[i % 3]}, sector {i * 977}"
                                for i in range(20)]


def _rows(texts: list[str]) -> SparseRows:
    return SparseRows(Featurizer(default_spec()), texts, progress=False)


def test_a_row_added_leaves_the_other_rows_order_and_draws_alone() -> None:
    before, after = _rows(TEXTS), _rows(TEXTS[:30] + ["kernel: new line here"] + TEXTS[30:])
    kb, ka = keyed_draws.row_keys(before), keyed_draws.row_keys(after)
    assert list(np.delete(ka, 30)) == list(kb)
    for epoch in (0, 5):
        old = [int(i) for i in keyed_draws.order(kb, 3, epoch)]
        new = [int(i) - (i > 30) for i in keyed_draws.order(ka, 3, epoch) if i != 30]
        assert new == old  # the old rows keep their relative order
    # A row's dropout mask and noise are its own, whatever else is in its batch.
    a = keyed_draws.dense_with_dropout(before, np.array([2, 40, 70]), kb, 3, 1, 0.3)
    b = keyed_draws.dense_with_dropout(after, np.array([71, 2, 30]), ka, 3, 1, 0.3)
    np.testing.assert_array_equal(a[[0, 2]], b[[1, 0]])
    na = add_bucket_noise(a.copy(), keyed_draws.KeyedNoise(kb[[2, 40, 70]], 3, 1), 1.0, 0.6)
    nb = add_bucket_noise(b.copy(), keyed_draws.KeyedNoise(ka[[71, 2, 30]], 3, 1), 1.0, 0.6)
    np.testing.assert_array_equal(na[[0, 2]], nb[[1, 0]])


def test_the_draws_are_what_they_claim() -> None:
    x = _rows(TEXTS)
    keys = keyed_draws.row_keys(x)
    assert len(set(keys.tolist())) == x.rows  # copies of a row get keys of their own
    copies = keyed_draws.row_keys(_rows([TEXTS[0]] * 3))
    assert len(set(copies.tolist())) == 3
    assert sorted(keyed_draws.order(keys, 0, 0).tolist()) == list(range(x.rows))
    assert keyed_draws.order(keys, 0, 0).tolist() != keyed_draws.order(keys, 0, 1).tolist()
    # Dropout keeps about 1 - p of the features, scaled up by 1 / (1 - p).
    rows = np.arange(x.rows)
    plain, dropped = x.dense(rows), keyed_draws.dense_with_dropout(x, rows, keys, 0, 0, 0.25)
    kept = dropped > 0
    assert 0.65 < kept.sum() / (plain > 0).sum() < 0.85
    np.testing.assert_allclose(dropped[kept], plain[kept] / 0.75, rtol=1e-6)
    # Bucket noise: about the share of rows get more buckets, each row normalised again.
    noisy = add_bucket_noise(plain.copy(), keyed_draws.KeyedNoise(keys, 0, 0), 0.5, 0.6)
    changed = (noisy > 0).sum(axis=1) > (plain > 0).sum(axis=1)
    assert 0.3 < changed.mean() < 0.7
    np.testing.assert_allclose(np.linalg.norm(noisy[changed], axis=1), 1.0, rtol=1e-5)
    u = keyed_draws.uniform(np.arange(10_000, dtype=np.uint64))
    assert u.min() >= 0.0 and u.max() < 1.0 and abs(u.mean() - 0.5) < 0.02


def test_keyed_training_is_reproducible_and_differs_from_the_stream() -> None:
    y = np.array([0] * 60 + [1] * 20)
    cfg = TrainConfig(hidden1=8, hidden2=8, epochs=3, min_steps=0, head_epochs=3,
                      progress=False, keyed_draws=True)
    featurizer = Featurizer(default_spec())
    a = fit(featurizer, TEXTS, y, ["normal", "error"], "normal", cfg)
    b = fit(featurizer, TEXTS, y, ["normal", "error"], "normal", cfg)
    assert a.body.w1_q.tobytes() == b.body.w1_q.tobytes()
    assert a.head_w.tobytes() == b.head_w.tobytes()
    stream = fit(featurizer, TEXTS, y, ["normal", "error"], "normal",
                 TrainConfig(**{**cfg.__dict__, "keyed_draws": False}))
    assert stream.body.w1_q.tobytes() != a.body.w1_q.tobytes()


def test_a_template_dropped_moves_no_other_templates_lines(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sources = ["openssh", "mosquitto"]
    full = [t for t in realtext.load_templates(sources) if not t.not_log_text]
    gone = len(full) // 3
    def both() -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
        keyed, stream = (realtext.real_lines(random.Random(7), per_template=2, sources=sources,
                                             captured=False, own_draws=own)
                         for own in (True, False))
        return keyed, stream

    before, streamed = both()
    monkeypatch.setattr(realtext, "load_templates",
                        lambda _sources=None: full[:gone] + full[gone + 1:])
    after, streamed_after = both()
    assert after == before[:2 * gone] + before[2 * gone + 2:]
    # The one stream (the shipped recipe's) redraws every later template.
    assert streamed_after != streamed[:2 * gone] + streamed[2 * gone + 2:]


def test_a_source_renders_alike_whichever_others_are_loaded() -> None:
    alone = realtext.real_lines(random.Random(7), per_template=1, sources=["mosquitto"],
                                own_draws=True)
    mixed = realtext.real_lines(random.Random(7), per_template=1,
                                sources=["openssh", "mosquitto"], own_draws=True)
    assert alone and alone == [row for row in mixed if row[2] == "mosquitto"]


def test_identical_templates_are_not_rendered_alike() -> None:
    own = realtext.OwnDraws(1)
    a, b = own.rng("x", "%s %d"), own.rng("x", "%s %d")
    assert [a.random() for _ in range(3)] != [b.random() for _ in range(3)]


def test_a_real_line_dropped_leaves_the_others_framing_alone() -> None:
    mix = MixConfig(corpus_lines=0, framed_share=0.5, keyed_draws=True)
    real = realtext.real_lines(random.Random(3), per_template=1, sources=["chrony"],
                               own_draws=True)
    texts, _, _ = training_rows(real, mix, LABELS)
    fewer, _, _ = training_rows(real[:5] + real[6:], mix, LABELS)
    assert fewer == texts[:5] + texts[6:]
    assert sum(t != r[0] for t, r in zip(texts, real, strict=True)) > len(real) // 4


def test_a_switch_that_is_off_leaves_the_recipe_fingerprint_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Stored held-out figures and the bundle's build record carry the recipe's
    fingerprint: adding an option that is off must not make them stale (CI failed on
    that), switching it on must."""
    import dataclasses

    from nanomodel import build_default

    lines = [("sshd[1]: Accepted publickey for pi", "normal", "openssh")]
    mix, cfg, prior = build_default.recipe(quiet=True)
    shipped = build_default.heldout_fingerprint(lines)
    plain = repr((mix, cfg, prior is not None))
    assert "keyed_draws" in plain and "keyed_draws" not in repr(build_default._Recipe(mix))
    for on_mix, on_cfg in ((dataclasses.replace(mix, keyed_draws=True), cfg),
                           (mix, dataclasses.replace(cfg, keyed_draws=True)),
                           (mix, dataclasses.replace(cfg, average_epochs=15))):
        monkeypatch.setattr(build_default, "recipe",
                            lambda quiet=False, m=on_mix, c=on_cfg: (m, c, prior))
        assert build_default.heldout_fingerprint(lines) != shipped
