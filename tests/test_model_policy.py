"""Pure training-policy decisions and the agent-facing LoadedModel behaviour."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from agent.model import LoadedModel
from nanomodel import default_bundle_path
from nanomodel.corpus import generate
from nanomodel.dataio import DataError
from nanomodel.finetune import (
    AUTO_MIX_LINES,
    MIX_SEED,
    OPERATOR_SHARE,
    balanced_shares,
    base_answers,
    corpus_mix_size,
    mix_lines,
    operator_weights,
    pick_golden,
    resolve_labels,
)
from nanomodel.metrics import score
from nanomodel.templates import LABELS

pytestmark = pytest.mark.unit


def test_label_order_and_normal_label() -> None:
    # The base's order when the data fits in it.
    assert resolve_labels(["power", "normal"], None, LABELS, None, "normal") == (LABELS, "normal")
    # Own labels: normal first, the rest sorted.
    assert resolve_labels(["fault", "ok", "alarm", "ok"], None, None, "ok", None) == \
        (["ok", "alarm", "fault"], "ok")
    # Explicit order is kept as given.
    assert resolve_labels(["b", "a"], ["b", "a", "c"], None, "a", None) == (["b", "a", "c"], "a")
    # The base's normal label carries over to a new label set that contains it.
    assert resolve_labels(["fine", "bad"], None, ["fine", "x"], None, "fine")[1] == "fine"
    with pytest.raises(DataError, match="say which one means 'nothing wrong'"):
        resolve_labels(["ok", "alarm"], None, None, None, None)
    with pytest.raises(DataError, match="duplicates"):
        resolve_labels(["a", "b"], ["a", "a", "b"], None, "a", None)


def test_corpus_mix_policy() -> None:
    assert corpus_mix_size(None, True, LABELS) == AUTO_MIX_LINES
    assert corpus_mix_size(None, True, ["normal", "power"]) == AUTO_MIX_LINES
    assert corpus_mix_size(None, True, ["ok", "alarm"]) == 0  # not corpus categories
    assert corpus_mix_size(None, False, LABELS) == 0  # training from scratch: data as given
    assert corpus_mix_size(0, True, LABELS) == 0
    with pytest.raises(DataError):
        corpus_mix_size(-1, True, LABELS)


def test_operator_lines_weigh_a_fixed_share_of_the_mix_and_at_least_one_each() -> None:
    w = operator_weights(300, 9300)
    assert w[:300].sum() == pytest.approx(OPERATOR_SHARE * w[300:].sum())
    assert np.all(w[300:] == 1)
    assert np.all(operator_weights(5000, 8000) == 1)  # many lines: each still counts 1


def test_balance_gives_healthy_lines_and_alerts_the_same_total_weight() -> None:
    normal = np.array([True] * 3 + [False] * 27)
    w = balanced_shares(normal)
    assert w[normal].sum() == pytest.approx(w[~normal].sum()) == pytest.approx(15.0)
    assert w.mean() == pytest.approx(1.0)  # the operator's share of the mix is unchanged
    assert np.all(balanced_shares(np.array([True] * 4)) == 1)  # one side only: as given


def test_the_mix_is_what_the_base_knew_and_the_same_every_run() -> None:
    rows = mix_lines(900, LABELS)
    assert rows == mix_lines(900, LABELS) and len(rows) == 900
    generated = {e.text for e in generate(300, MIX_SEED)}
    assert sum(t in generated for t, _ in rows) == 300  # a third generated, the rest real
    assert {lab for _, lab in rows} <= set(LABELS)
    only = mix_lines(900, ["normal", "storage"])
    assert only and {lab for _, lab in only} <= {"normal", "storage"}


def test_the_bases_answers_follow_the_new_label_order() -> None:
    from agent import default_bundle_path
    from contract.bundle import load_bundle
    from nanomodel.features import Featurizer
    from nanomodel.pack import shipped_model
    from nanomodel.train import SparseRows

    bundle = load_bundle(default_bundle_path())
    base, labels = shipped_model(bundle), bundle.manifest.labels
    feat = Featurizer(bundle.manifest.tokenizer)
    texts = ["kernel: EXT4-fs error (device sda1): I/O error", "systemd[1]: Started cron"]
    rows, at = SparseRows(feat, texts, False), np.arange(len(texts))
    same = base_answers(base, labels, rows, at, labels)
    assert np.allclose(same.sum(axis=1), 1.0, atol=1e-5)
    # the base's own probabilities, as the runtimes compute them from the text
    probs, _ = LoadedModel.load(default_bundle_path()).classify(texts)
    assert np.allclose(same, probs, atol=1e-5)
    swapped = base_answers(base, labels, rows, at, ["storage", "normal", "alarm"])
    assert swapped[:, 2].max() == 0.0  # a label the base lacks
    pair = same[:, [labels.index("storage"), labels.index("normal")]]
    assert np.allclose(swapped[:, :2], pair / pair.sum(axis=1, keepdims=True), atol=1e-5)


def test_golden_lines_cover_each_label() -> None:
    texts = [f"line {i}" for i in range(10)]
    labels = ["a", "a", "a", "b", "c", "c", "c", "b", "b", "a"]
    golden = pick_golden(texts, labels)
    assert golden == ["line 0", "line 1", "line 3", "line 4", "line 5", "line 7", ""]


def test_metrics() -> None:
    report = score([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c", "unused"])
    by_label = {c.label: c for c in report.per_class}
    assert set(by_label) == {"a", "b", "c"}
    assert by_label["b"].precision == pytest.approx(2 / 3) and by_label["b"].recall == 1.0
    assert by_label["c"].f1 == 0.0
    assert report.accuracy == pytest.approx(0.6)


@pytest.mark.parametrize("runtime", ["onnxruntime", "litert"])
def test_loaded_model_interface(runtime: str) -> None:
    model = LoadedModel.load(default_bundle_path(), runtime, threads=1)
    try:
        assert model.runtime_name == runtime and model.labels == LABELS
        assert len(model.bundle_sha256) == 64 and model.manifest.slot == "logs"
        probs, anomaly = model.classify([])
        assert probs.shape == (0, 9) and anomaly.shape == (0,)
        probs, anomaly = model.classify(["eth0: link down", "Started edge-agent.service."])
        assert [model.labels[i] for i in probs.argmax(axis=1)] == ["network", "normal"]
        assert anomaly[0] > 0.9 > 0.1 > anomaly[1]
        assert probs.dtype == anomaly.dtype == np.float32
    finally:
        model.close()


def test_classify_is_safe_from_several_threads() -> None:
    """The pipeline and a technician's query may classify at the same time."""
    model = LoadedModel.load(default_bundle_path(), "litert")
    texts = [e.text for e in generate(64, 6)]
    expected, _ = model.classify(texts)
    failures: list[str] = []

    def worker(offset: int) -> None:
        for i in range(20):
            size = 1 + (offset + i) % 17  # different batch sizes force interpreter resizes
            got, _ = model.classify(texts[:size])
            if not np.allclose(got, expected[:size], atol=1e-6):
                failures.append(f"thread {offset} call {i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    model.close()
    assert failures == []
