"""Operator training: from labeled lines (and optionally a base bundle) to a new bundle.

Policy decisions are pure functions (:func:`resolve_labels`, :func:`corpus_mix_size`,
:func:`operator_weights`, :func:`pick_golden`) so they can be tested without training
anything.

Fine-tuning a base keeps what it knew by training, beside the operator's lines, on lines
of what the base was trained on (a third generated corpus, two thirds real daemons'
lines) **towards the base's own answers on them** (learning without forgetting): the
operator's lines teach the new format, the mix holds everything else where it was. Hard
labels on that mix taught the head the corpus's habits again (a site's fine-tune flagged
56 % of the healthy lines of other people's logs: docs/model.md, "Operators").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.keyword_evidence import known_programs
from contract.bundle import Bundle, load_bundle
from contract.bundle_features import MAX_KNOWN_PROGRAMS
from nanomodel.baseline import KeywordBaseline
from nanomodel.corpus import generate
from nanomodel.dataio import DataError, LabeledData, check_trainable
from nanomodel.features import Featurizer, default_spec
from nanomodel.known_programs import programs_named
from nanomodel.metrics import score
from nanomodel.network import ShippedModel, reference_forward
from nanomodel.pack import build_bundle, shipped_model
from nanomodel.templates import LABELS as CORPUS_LABELS
from nanomodel.train import SparseRows, TrainConfig, class_weights, fit

AUTO_MIX_LINES = 9000
MIX_SEED = 1009
# Of the mix: the share of generated corpus lines (the rest are real daemons' lines).
GENERATED_SHARE = 1 / 3
# The operator's lines together weigh at least this share of the mix (each at least 1).
OPERATOR_SHARE = 0.3


@dataclass
class TrainRequest:
    """Everything ``nanofleet model train`` was asked to do."""

    data: LabeledData
    out: Path
    base: Path | None = None
    head_only: bool = False
    labels: list[str] | None = None
    normal_label: str | None = None
    version: int | None = None
    version_label: str | None = None
    name: str | None = None
    slot: str | None = None
    mix_corpus: int | None = None  # None: decide automatically
    balance: bool = False  # the operator's healthy and alert lines weigh alike
    eval_data: LabeledData | None = None
    config: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class TrainResult:
    bundle: bytes
    labels: list[str]
    normal_label: str
    version: int
    figures: dict[str, float]
    mixed_corpus_lines: int
    # programs the operator's lines name in their tags that the base had not read: the
    # bundle's known_programs carry them (agent.keyword_evidence)
    programs_taught: list[str] = field(default_factory=list)


def resolve_labels(data_labels: list[str], requested: list[str] | None,
                   base_labels: list[str] | None, normal: str | None,
                   base_normal: str | None) -> tuple[list[str], str]:
    """The output label order and the normal label.

    Order: ``requested`` if given; else the base's order when the data fits in it
    (so the base head is a good starting point); else the normal label first and
    the rest sorted."""
    present = sorted(set(data_labels))
    our_order = False
    if requested:
        if len(set(requested)) != len(requested):
            raise DataError(f"--labels has duplicates: {requested}")
        stray = [lab for lab in present if lab not in requested]
        if stray:
            raise DataError(f"the data has labels {stray} that are not in --labels {requested}")
        labels = list(requested)
    elif base_labels and set(present) <= set(base_labels):
        labels = list(base_labels)
    else:
        labels, our_order = present, True
    if normal is None:
        if "normal" in labels:
            normal = "normal"
        elif base_normal is not None and base_normal in labels:
            normal = base_normal
        else:
            raise DataError(f"no label named 'normal' among {labels}: say which one means "
                            "'nothing wrong' with --normal-label")
    if normal not in labels:
        raise DataError(f"--normal-label {normal!r} is not one of the labels {labels}")
    if our_order:
        labels = [normal] + [lab for lab in labels if lab != normal]
    return labels, normal


def corpus_mix_size(requested: int | None, has_base: bool, labels: list[str]) -> int:
    """How many lines of what the base knew (:func:`mix_lines`) to train beside the
    operator's lines.

    Automatic: when fine-tuning a base and every label is a corpus category, mix
    :data:`AUTO_MIX_LINES` lines, so the model keeps what it knew while it learns
    the operator's format (a head fitted to 300 lines of one format forgets the rest)."""
    if requested is not None:
        if requested < 0:
            raise DataError("--mix-corpus must be >= 0")
        return requested
    return AUTO_MIX_LINES if has_base and set(labels) <= set(CORPUS_LABELS) else 0


def operator_weights(operator_lines: int, total_lines: int) -> np.ndarray:
    """Sample weights: the operator's lines first, then the mix. Together the operator's
    lines weigh at least :data:`OPERATOR_SHARE` of the mix however few they are, and each
    at least as much as a mix line. (As much as the whole mix, as before, let 400 lines
    of one site's format pull the head off everything else.)"""
    mixed = total_lines - operator_lines
    own = max(1.0, OPERATOR_SHARE * mixed / max(operator_lines, 1))
    return np.concatenate([np.full(operator_lines, own, np.float32),
                           np.ones(mixed, np.float32)])


def balanced_shares(is_normal: np.ndarray) -> np.ndarray:
    """Per-line multipliers (mean 1) under which the operator's healthy lines and their
    alert lines weigh the same in total (``--balance``). Verdicts on alerts come mostly
    one way — many right alerts and a few false alarms, or only false alarms — and the
    head learns the side that weighs more: 24 false alarms beside 197 right alerts taught
    it almost nothing about them (docs/model.md, "Operators"). With one side only, 1s."""
    normal = np.asarray(is_normal, dtype=bool)
    n, k = int(normal.sum()), int((~normal).sum())
    if n == 0 or k == 0:
        return np.ones(normal.size, np.float32)
    half = normal.size / 2
    return np.where(normal, half / n, half / k).astype(np.float32)


def mix_lines(count: int, labels: list[str]) -> list[tuple[str, str]]:
    """``count`` lines of what the shipped base was trained on, as (text, label): a third
    generated corpus, the rest real daemons' lines (rendered templates and captured
    lines, :func:`nanomodel.realtext.real_lines`), only of ``labels``; same every run."""
    from nanomodel.realtext import real_lines

    generated = [(e.text, e.label) for e in generate(round(count * GENERATED_SHARE), MIX_SEED)]
    rng = random.Random(MIX_SEED)
    real = [(t, lab) for t, lab, _ in real_lines(rng, per_template=1)]
    picked = rng.sample(real, min(len(real), count - len(generated)))
    return [(t, lab) for t, lab in generated + picked if lab in labels]


def base_answers(base: ShippedModel, base_labels: list[str], features: SparseRows,
                 rows: np.ndarray, labels: list[str], chunk: int = 1024) -> np.ndarray:
    """The base's probabilities for the feature ``rows`` over ``labels`` (the new model's
    order; a label the base lacks gets 0, and each row is renormalised over the labels
    kept). Densified a chunk at a time: 9,000 dense lines would be ~150 MB."""
    probs = np.concatenate([reference_forward(base, features.dense(rows[i:i + chunk]))[0]
                            for i in range(0, rows.size, chunk)])
    cols = [base_labels.index(lab) if lab in base_labels else -1 for lab in labels]
    out = np.stack([probs[:, c] if c >= 0 else np.zeros(rows.size, probs.dtype)
                    for c in cols], axis=1).astype(np.float32)
    total = out.sum(axis=1, keepdims=True)
    return np.asarray(out / np.where(total > 0, total, 1.0), dtype=np.float32)


def pick_golden(texts: list[str], labels: list[str], per_label: int = 2,
                limit: int = 16) -> list[str]:
    """Deterministic smoke-test lines: the first few of each label, plus an empty line."""
    chosen: list[str] = []
    counts: dict[str, int] = {}
    for text, label in zip(texts, labels, strict=True):
        if counts.get(label, 0) < per_label and len(chosen) < limit - 1 and text not in chosen:
            chosen.append(text)
            counts[label] = counts.get(label, 0) + 1
    return [*chosen, ""]


def evaluate_model(model: ShippedModel, featurizer: Featurizer, data: LabeledData,
                   labels: list[str], normal_label: str, prefix: str) -> dict[str, float]:
    truth = [labels.index(lab) for lab in data.labels]
    probs, _ = reference_forward(model, featurizer.transform(data.texts))
    ours = score(truth, [int(i) for i in probs.argmax(axis=1)], labels)
    base = score(truth, KeywordBaseline(labels, normal_label).predict(data.texts), labels)
    return {f"{prefix}.macro_f1": ours.macro_f1, f"{prefix}.accuracy": ours.accuracy,
            f"{prefix}.keyword_baseline_macro_f1": base.macro_f1}


def train_bundle(req: TrainRequest) -> TrainResult:
    if req.head_only and req.base is None:
        raise DataError("--head-only needs --base BUNDLE (the body to keep)")
    base_bundle: Bundle | None = load_bundle(req.base) if req.base is not None else None
    base_model = shipped_model(base_bundle) if base_bundle is not None else None
    bm = base_bundle.manifest if base_bundle is not None else None
    labels, normal = resolve_labels(req.data.labels, req.labels, bm.labels if bm else None,
                                    req.normal_label, bm.normal_label if bm else None)
    if req.eval_data is not None:
        stray = sorted(set(req.eval_data.labels) - set(labels))
        if stray:
            raise DataError(f"{req.eval_data.source}: labels {stray} are not in {labels}")
    spec = bm.tokenizer if bm is not None else default_spec()
    featurizer = Featurizer(spec)
    texts, names = list(req.data.texts), list(req.data.labels)
    mix = corpus_mix_size(req.mix_corpus, base_bundle is not None, labels)
    if not mix:
        # With the mix, the base's own lines bring every other class: a site may fine-tune
        # on its false alarms alone (verdicts on alerts are often only that).
        check_trainable(req.data)
    soft = None
    own = len(texts)  # the operator's lines come first; the mix follows them
    weights = np.ones(own, np.float32)
    if mix:
        extra = mix_lines(mix, labels)
        texts += [t for t, _ in extra]
        names += [lab for _, lab in extra]
        weights = operator_weights(own, len(texts))
    # Featurized once: the base's answers and the training read the same rows.
    features = SparseRows(featurizer, texts, req.config.progress)
    if mix and base_model is not None and bm is not None:  # taught by the base's answers
        soft = np.vstack([
            np.eye(len(labels), dtype=np.float32)[[labels.index(n) for n in names[:own]]],
            base_answers(base_model, bm.labels, features, np.arange(own, len(texts)),
                         labels)])
    if req.balance:
        weights[:own] *= balanced_shares(np.array([lab == normal for lab in names[:own]]))
    y = np.array([labels.index(lab) for lab in names], dtype=np.int64)
    if soft is not None:
        # Training balances classes by default; the mix is mostly normal on purpose (as
        # real logs are), and balancing it made the head call healthy lines alerts.
        weights = weights / class_weights(y, len(labels))[y]
    model = fit(featurizer, texts, y, labels, normal, req.config, base=base_model,
                head_only=req.head_only, sample_weight=weights, soft_targets=soft,
                features=features)
    figures = evaluate_model(model, featurizer, req.data, labels, normal, "train")
    if req.eval_data is not None:
        figures |= evaluate_model(model, featurizer, req.eval_data, labels, normal, "eval")
    version = req.version if req.version is not None else (bm.version + 1 if bm else 1)
    if bm is not None and version <= bm.version:
        raise DataError(f"--version {version} must be above the base version {bm.version}")
    # What the new model has read: the base's programs (a base that names none is the
    # one shipped with the agent, whose list the agent holds) and the operator's lines'.
    # A model trained from scratch has read only the operator's lines.
    known = (set(bm.known_programs if bm.known_programs is not None else known_programs())
             if bm is not None else set())
    taught = set(programs_named(req.data.texts, known, MAX_KNOWN_PROGRAMS - len(known)))
    data = build_bundle(
        model, spec=spec, labels=labels, normal_label=normal,
        name=req.name or (bm.name if bm else "nano-custom"),
        slot=req.slot or (bm.slot if bm else "logs"), version=version,
        version_label=req.version_label or f"v{version}",
        golden_texts=pick_golden(req.data.texts, req.data.labels), evaluation=figures,
        formats=sorted(bm.runtimes) if bm else ("onnx", "tflite"),
        # The base's calibration of levels, kept: not refitted for the new weights (the
        # site's labels rarely carry levels; `eval --alerts --fit-levels` fits them), and
        # nearer to them than the agent's defaults, which were fitted for another model.
        level_offsets=bm.level_offsets if bm else None,
        known_programs=sorted(known | taught))
    req.out.parent.mkdir(parents=True, exist_ok=True)
    req.out.write_bytes(data)
    return TrainResult(data, labels, normal, version, figures, len(texts) - len(req.data.texts),
                       sorted(taught))
