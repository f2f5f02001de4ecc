"""Training: determinism, head-only byte identity, fine-tuning to a new format, quality."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.model import LoadedModel
from contract.bundle import Bundle, load_bundle, read_bundle
from nanomodel import default_bundle_path
from nanomodel.baseline import KeywordBaseline
from nanomodel.corpus import HELDOUT_STYLES, generate, inverter_lines
from nanomodel.dataio import LabeledData
from nanomodel.features import Featurizer, default_spec
from nanomodel.finetune import TrainRequest, train_bundle
from nanomodel.metrics import score
from nanomodel.network import BODY_TENSORS, HEAD_TENSORS
from nanomodel.pack import build_bundle
from nanomodel.realtext import load_captured
from nanomodel.templates import LABELS
from nanomodel.train import TrainConfig, fit

SMALL = TrainConfig(hidden1=16, hidden2=16, epochs=2, min_steps=0, head_epochs=5,
                    progress=False)


def _as_data(examples: list, source: str = "test") -> LabeledData:
    return LabeledData([e.text for e in examples], [e.label for e in examples], source)


def _small_bundle(seed: int) -> bytes:
    examples = generate(1200, 5)
    spec = default_spec()
    y = np.array([LABELS.index(e.label) for e in examples])
    config = TrainConfig(**{**SMALL.__dict__, "seed": seed})
    model = fit(Featurizer(spec), [e.text for e in examples], y, LABELS, "normal", config)
    return build_bundle(model, spec=spec, labels=LABELS, normal_label="normal", name="t",
                        slot="logs", version=1, version_label="t", golden_texts=["eth0: link down"],
                        evaluation={})


def test_training_twice_gives_identical_bundle_bytes() -> None:
    first, second = _small_bundle(0), _small_bundle(0)
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()
    assert _small_bundle(1) != first  # the seed matters, so the check above means something


def _tensor_bytes(bundle: Bundle) -> dict[tuple[str, str], bytes]:
    out = {}
    for f in bundle.manifest.files:
        data = bundle.files[f.path]
        for t in f.tensors:
            out[(f.path, t.name)] = data[t.offset : t.offset + t.length]
    return out


@pytest.fixture(scope="module")
def base() -> Bundle:
    return load_bundle(default_bundle_path())


@pytest.mark.parametrize("labels", [None, ["normal", "power", "thermal", "hardware"]],
                         ids=["same-labels", "new-label-set"])
def test_head_only_keeps_every_body_byte(base: Bundle, tmp_path: Path,
                                         labels: list[str] | None) -> None:
    out = tmp_path / "ft.nfb"
    train_bundle(TrainRequest(data=_as_data(inverter_lines(200, 1)), out=out,
                              base=default_bundle_path(), head_only=True, labels=labels,
                              config=TrainConfig(progress=False)))
    tuned = load_bundle(out)
    old, new = _tensor_bytes(base), _tensor_bytes(tuned)
    for path in ("model.onnx", "model.tflite"):
        body = [n for n in BODY_TENSORS if (path, n) in old]
        assert len(body) >= 4
        for name in body:
            assert new[(path, name)] == old[(path, name)], f"{path}:{name} changed"
        assert new[(path, "head.weight")] != old[(path, "head.weight")]
        for name in HEAD_TENSORS:
            assert (path, name) in new
    assert tuned.manifest.version == base.manifest.version + 1
    assert tuned.manifest.tokenizer == base.manifest.tokenizer
    for runtime in ("onnxruntime", "litert"):
        model = LoadedModel.from_bundle(tuned, runtime)
        model.smoke_test()
        model.close()


def _alert_scores(model: LoadedModel, data: LabeledData) -> tuple[float, float, float, float]:
    """(accuracy, alert recall, false-alarm rate, share of alerts given the right label)."""
    probs, anomaly = model.classify(data.texts)
    labels = model.labels
    truth = [labels.index(lab) if lab in labels else -1 for lab in data.labels]
    predicted = [int(i) for i in probs.argmax(axis=1)]
    alert = np.array([lab != "normal" for lab in data.labels])
    right = np.array([t == p for t, p in zip(truth, predicted, strict=True)])
    return (float(right.mean()), float(np.mean(anomaly[alert] > 0.5)),
            float(np.mean(anomaly[~alert] > 0.5)), float(right[alert].mean()))


def test_head_only_fine_tune_learns_an_unseen_format(tmp_path: Path) -> None:
    """A solar inverter logging in German: the default model never saw it."""
    train, test = _as_data(inverter_lines(300, 11)), _as_data(inverter_lines(600, 12))
    before = LoadedModel.load(default_bundle_path())
    accuracy_before, _, _, alerts_right_before = _alert_scores(before, test)
    # It does not know this format's alerts (it may call most of them normal, or all of
    # them alerts of the wrong kind; either way fewer than half get the right label).
    assert accuracy_before < 0.6 and alerts_right_before < 0.5
    out = tmp_path / "inverter.nfb"
    result = train_bundle(TrainRequest(data=train, out=out, base=default_bundle_path(),
                                       head_only=True, config=TrainConfig(progress=False)))
    assert result.mixed_corpus_lines > 0
    after = LoadedModel.load(out, "litert")
    accuracy, alert_recall, false_alarms, _ = _alert_scores(after, test)
    assert accuracy >= 0.95 and alert_recall >= 0.95 and false_alarms <= 0.05
    # ...and it still knows the formats it knew (the auto corpus mix keeps them).
    heldout = _as_data(generate(1500, 77, HELDOUT_STYLES))
    probs, _ = after.classify(heldout.texts)
    macro = score([LABELS.index(lab) for lab in heldout.labels],
                  [int(i) for i in probs.argmax(axis=1)], LABELS).macro_f1
    # The base scores 0.85 on these generated held-out styles since it also learned real
    # daemons' text (issue 9; docs/model.md); the fine-tune keeps most of it.
    assert macro >= 0.78
    # ...and real daemons' healthy lines stay healthy: the mix is taught by the base's own
    # answers (with hard labels on a generated mix, 4.7 % of them were flagged here).
    lines = load_captured()
    _, anomaly = after.classify([c.text for c in lines])
    healthy = np.array([c.label == "normal" for c in lines])
    assert float(np.mean(np.asarray(anomaly)[healthy] > 0.5)) <= 0.01


def test_default_model_clearly_beats_the_keyword_baseline_on_heldout_styles() -> None:
    model = LoadedModel.load(default_bundle_path())
    data = _as_data(generate(3000, 4242, HELDOUT_STYLES))
    probs, _ = model.classify(data.texts)
    truth = [LABELS.index(lab) for lab in data.labels]
    ours = score(truth, [int(i) for i in probs.argmax(axis=1)], LABELS).macro_f1
    baseline = score(truth, KeywordBaseline(LABELS, "normal").predict(data.texts),
                     LABELS).macro_f1
    # 0.974 when trained on generated text only; 0.85 since real text took most of the
    # weight (issue 9): the generated styles are no longer all the model knows.
    assert ours >= 0.83 and ours - baseline >= 0.2, (ours, baseline)
    figures = model.manifest.evaluation
    assert figures["test_heldout_styles.macro_f1"] - \
        figures["test_heldout_styles.keyword_baseline_macro_f1"] >= 0.15


def test_shipped_default_bundle_is_what_the_build_script_makes() -> None:
    """The build record (nanomodel/data/build_record.json, written by the full build) ties
    the committed bundle to the code, data and libraries that built it, checked here in
    ~15 s instead of a full rebuild (70-150 s): the bundle's bytes are the ones recorded,
    the recipe and real data are the ones recorded, and the smoke build — every step of
    the full build on a twentieth of the data — gives the recorded bytes on this machine,
    in a process of its own: OpenBLAS picks its kernels when numpy loads, and the script
    pins them (nanomodel.blas_pin) so that any x86-64 machine builds the same bytes.
    ``NANOFLEET_FULL_REBUILD=1`` rebuilds the whole bundle too (before a release)."""
    import json

    from nanomodel.build_default import (
        BUILD_RECORD_PATH,
        heldout_fingerprint,
        real_training_lines,
        sha256_file,
        smoke_build_digest,
    )

    stale = "agent/data/default.nfb is stale: run python -m nanomodel.build_default"
    record = json.loads(BUILD_RECORD_PATH.read_text())
    assert sha256_file(default_bundle_path()) == record["bundle_sha256"], \
        f"the bundle is not the one the last build wrote; {stale}"
    assert heldout_fingerprint(real_training_lines()) == record["recipe_fingerprint"], \
        f"the recipe or the real data changed since the bundle was built; {stale}"
    assert smoke_build_digest() == record["smoke_sha256"], \
        f"the build code or its libraries give other bytes than when it was built; {stale}"
    read_bundle(default_bundle_path().read_bytes())


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NANOFLEET_FULL_REBUILD") != "1",
                    reason="the full rebuild is opt-in: NANOFLEET_FULL_REBUILD=1")
def test_a_full_rebuild_gives_the_shipped_bytes(tmp_path: Path) -> None:
    out = tmp_path / "default.nfb"
    proc = subprocess.run([sys.executable, "-m", "nanomodel.build_default", "--quiet",
                           "--out", str(out)], capture_output=True, text=True, timeout=900,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_bytes() == default_bundle_path().read_bytes(), \
        "agent/data/default.nfb is stale: run python -m nanomodel.build_default"
