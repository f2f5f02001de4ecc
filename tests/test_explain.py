"""Explanations: the gradient matches finite differences, words map back to the line,
and the shipped model names the words a technician would."""

from __future__ import annotations

import numpy as np
import pytest

from agent import default_bundle_path
from agent.explain import NanoWeights, NotExplainable, top_words, word_weights
from agent.featurizer import Featurizer
from agent.model import LoadedModel
from contract.bundle import Bundle, load_bundle

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def shipped() -> tuple[Bundle, Featurizer, NanoWeights]:
    bundle = load_bundle(default_bundle_path())
    return bundle, Featurizer(bundle.manifest.tokenizer), NanoWeights.from_bundle(bundle)


LINES = ["I/O error, dev mmcblk0p2, sector 123456", "eth0: link up",
         "Failed password for root from 203.0.113.9 port 4242 ssh2",
         "Started Daily apt download activities.", "thermal zone0: temperature 48 C"]


def test_weights_read_through_tensor_ranges_give_the_runtimes_outputs(shipped) -> None:
    bundle, featurizer, weights = shipped
    model = LoadedModel.from_bundle(bundle, "onnxruntime")
    try:
        probs, anomaly = model.classify(LINES)
    finally:
        model.close()
    mine_p, mine_a = weights.forward(featurizer.transform(LINES))
    assert np.allclose(mine_p, probs, atol=1e-5) and np.allclose(mine_a, anomaly, atol=1e-5)
    # A LiteRT-only bundle (a device's one-runtime download) explains with the same
    # weights: its scales come from the int8 tensors' quantization parameters.
    lite = NanoWeights.from_bundle(_only(bundle, "tflite"))
    assert np.array_equal(lite.w1_q, weights.w1_q) and lite.s1 == pytest.approx(weights.s1)
    assert np.allclose(lite.w2, weights.w2, rtol=1e-6)
    lite_p, lite_a = lite.forward(featurizer.transform(LINES))
    assert np.allclose(lite_p, mine_p, atol=1e-6) and np.allclose(lite_a, mine_a, atol=1e-6)


def _only(bundle: Bundle, fmt: str) -> Bundle:
    manifest = bundle.manifest.model_copy(
        update={"runtimes": {fmt: bundle.manifest.runtimes[fmt]}})  # type: ignore[index]
    return Bundle(manifest, bundle.files, bundle.sha256)


def test_log_odds_gradient_matches_finite_differences(shipped) -> None:
    _, featurizer, weights = shipped
    x = featurizer.transform(LINES).astype(np.float64)
    _, grad = weights.log_odds_gradient(x)
    rng = np.random.default_rng(0)
    eps = 1e-4
    for row in range(len(LINES)):
        active = np.flatnonzero(x[row])
        cols = np.concatenate([rng.choice(active, 6, replace=False),
                               rng.integers(0, x.shape[1], 3)])
        for col in cols:
            up, down = x[row : row + 1].copy(), x[row : row + 1].copy()
            up[0, col] += eps
            down[0, col] -= eps
            here = weights.log_odds(x[row : row + 1])[0]
            forward = (weights.log_odds(up)[0] - here) / eps
            backward = (here - weights.log_odds(down)[0]) / eps
            # Where a step of eps crosses a ReLU's kink the two sides differ, and the
            # analytic gradient is the one of the side the input is on.
            assert any(grad[row, col] == pytest.approx(d, rel=2e-3, abs=2e-4)
                       for d in (forward, backward)), (row, col, grad[row, col], forward,
                                                      backward)


def test_word_shares_add_up_to_gradient_times_input(shipped) -> None:
    _, featurizer, weights = shipped
    for text in LINES:
        _, pairs = word_weights(featurizer, weights, text)
        x = featurizer.transform([text])
        _, grad = weights.log_odds_gradient(x)
        total = float((grad * x).sum())
        # every n-gram overlaps a word except pure punctuation/space n-grams
        assert sum(v for _, v in pairs) == pytest.approx(total, abs=0.35 * abs(total) + 0.5)
        assert [w for w, _ in pairs] == [w for w in _words(text)]


def _words(text: str) -> list[str]:
    import re

    return re.findall(r"[A-Za-z0-9_\x80-\U0010ffff]+", text)


def test_shipped_model_names_the_telling_words(shipped) -> None:
    _, featurizer, weights = shipped
    storage = top_words(featurizer, weights, LINES[0], 3)
    assert "error" in [w["word"] for w in storage] and storage[0]["weight"] > 0  # type: ignore[operator]
    login = top_words(featurizer, weights, LINES[2], 3)
    assert login[0]["word"] in {"Failed", "password", "root"}
    assert all(isinstance(w["weight"], float) for w in login)


def test_a_lines_time_and_host_are_not_among_its_words(shipped) -> None:
    """The shipped model drops a line's time and syslog host before hashing: the words
    named are the message's (and its program's), as the line wrote them, with the same
    weights as for the line without its head."""
    _, featurizer, weights = shipped
    message = "systemd-networkd[300]: eth0: Lost carrier"
    headed = word_weights(featurizer, weights, "Mar  4 11:00:02 hmi-2 " + message)[1]
    assert [w for w, _ in headed] == _words(message)
    assert headed == word_weights(featurizer, weights, message)[1]


def test_a_model_without_the_nano_tensors_is_not_explainable(shipped) -> None:
    bundle, _, _ = shipped
    files = [f.model_copy(update={"tensors": []}) for f in bundle.manifest.files]
    stripped = Bundle(bundle.manifest.model_copy(update={"files": files}), bundle.files,
                      bundle.sha256)
    with pytest.raises(NotExplainable, match="cannot be explained"):
        NanoWeights.from_bundle(stripped)
