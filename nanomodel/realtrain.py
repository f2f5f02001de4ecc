"""Training on real message text, mixed with the generated corpus.

Real lines (:mod:`nanomodel.realtext`: rendered printf templates of real daemons and
captured real logs, labelled per template) are how software actually phrases
things; they come bare or behind the syslog/journal or native prefixes real logs
carry. The generated corpus (:mod:`nanomodel.corpus`) adds sensor readings, framing
styles and categories the real sources cover thinly; a share of the real messages is
also re-framed in the corpus's log styles (JSON, logfmt, ...), which real daemons'
own prefixes do not show.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import TypeVar

import numpy as np

from nanomodel.corpus import Example, frame, generate
from nanomodel.network import ShippedModel, reference_forward
from nanomodel.readings import TRAIN_READING_STYLES
from nanomodel.realeval import RealLine, Scorer, Trainer, sent_alerts
from nanomodel.realtext import OwnDraws
from nanomodel.states import framed_states
from nanomodel.templates import LABELS
from nanomodel.train import EpochRows, FeaturizerLike, SparseRows, TrainConfig, fit

_T = TypeVar("_T")


@dataclass(frozen=True)
class MixConfig:
    """How the training set is made from real lines and the generated corpus."""

    corpus_lines: int = 20000  # generated lines (logs and readings) mixed in
    reading_lines: int = 0  # generated sensor readings only, on top
    # generated bare state lines on top (a thing and its state, healthy and alarm states in
    # the same frames: nanomodel.states), half of them in a corpus log style
    state_lines: int = 0
    corpus_normal_share: float = 0.4
    real_share: float = 0.5  # real lines' share of the total training weight
    framed_share: float = 0.2  # real lines also wrapped in a corpus log style
    normal_weight: float = 1.0  # extra weight of normal lines (real logs are mostly normal)
    teachers: int = 1  # >1: models on other seeds' mixes, distilled into one (train_distilled)
    seed: int = 0
    # >0 (with teachers > 1): unlabelled real messages (nanomodel.realtext.pool_lines) join
    # the student's rows with the teachers' mean as their only target, at this share of
    # the real lines' weight (the transfer set: docs/model.md "The teacher")
    pool_share: float = 0.0
    teacher_words: int = 0  # >0: teachers also read the LLM teacher's word vectors (dims)
    teacher_buckets: int = 0  # >0: teachers hash into this many buckets instead
    # each epoch after the first trains on a fresh rendering of the same templates and
    # captured lines (other values, heads, framing, generated lines): training to fit
    # without fitting the filled-in values (docs/model.md "Values drawn fresh per epoch")
    fresh_epochs: bool = False
    # added to the normal label's bias after training: moves the flag (anomaly > 0.5) to
    # a chosen operating point without reordering lines (docs/model.md "Values drawn
    # fresh per epoch": trained to fit, the model is surer of itself)
    normal_bias: float = 0.0
    # each template, captured line and framing drawn from a generator of its own (and
    # the trainer's TrainConfig.keyed_draws for the rest): a small data change redraws
    # only its own lines (docs/model.md, "How chaotic is training")
    keyed_draws: bool = False
    # the real lines hold captured_next/'s lines too (realtext.real_lines(with_next=True)):
    # fresh epochs render those again as well, not only the first epoch's rows
    next_lines: bool = False
    # that share of Apache's own-file lines framed as Apache 2.0/2.2 wrote them, in every
    # rendering (realframes.apache22_line; docs/model.md, "A retrain held to written gates")
    apache22_share: float = 0.0
    # >0: logcheck's healthy-line rules, each rendered this many times, join the real lines
    # as normal (nanomodel.logcheck; a held-out source's rules stay out of its model)
    logcheck_per_rule: int = 0


def training_rows(real: Sequence[RealLine], mix: MixConfig,
                  labels: Sequence[str] = LABELS) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(texts, label indices, per-line weights)`` for :func:`nanomodel.train.fit`."""
    rng = random.Random(mix.seed)
    unknown = sorted({lab for _, lab, _ in real if lab not in labels})
    if unknown:
        raise ValueError(f"real lines carry labels outside the model's {list(labels)}: {unknown}")
    if mix.logcheck_per_rule:
        from nanomodel.logcheck import logcheck_lines
        from nanomodel.realtext import sources

        real = [*real, *logcheck_lines(random.Random(mix.seed + 104), mix.logcheck_per_rule,
                                       known=set(sources()), trained={s for _, _, s in real})]
    texts: list[str] = []
    ys: list[int] = []
    own = OwnDraws(mix.seed) if mix.keyed_draws else None
    for text, label, source in real:
        draw = own.rng(source, text) if own else rng
        framed = draw.random() < mix.framed_share
        texts.append(frame(text, label, source, draw) if framed else text)
        ys.append(labels.index(label))
    corpus: list[Example] = generate(mix.corpus_lines, mix.seed + 101,
                                     normal_share=mix.corpus_normal_share) \
        if mix.corpus_lines else []
    if mix.reading_lines:
        corpus += generate(mix.reading_lines, mix.seed + 102, TRAIN_READING_STYLES,
                           normal_share=mix.corpus_normal_share)
    if mix.state_lines:
        corpus += framed_states(mix.state_lines, mix.seed + 103)
    n_real, n_corpus = len(texts), len(corpus)
    texts += [e.text for e in corpus]
    ys += [labels.index(e.label) for e in corpus]
    weights = np.ones(len(texts), np.float32)
    if n_real and n_corpus:
        # Each part gets its share of the total weight, whatever its line count; the
        # mean weight stays 1 so learning rates mean the same as without mixing.
        total = n_real + n_corpus
        weights[:n_real] = mix.real_share * total / n_real
        weights[n_real:] = (1 - mix.real_share) * total / n_corpus
    if mix.normal_weight != 1.0:
        normal = np.array(ys) == labels.index("normal")
        weights[normal] *= mix.normal_weight
        weights *= len(weights) / weights.sum()
    return texts, np.array(ys, dtype=np.int64), weights


def fresh_rows(real: Sequence[RealLine], featurizer: FeaturizerLike, mix: MixConfig,
               labels: Sequence[str] = LABELS) -> EpochRows:
    """:data:`nanomodel.train.EpochRows` for ``mix.fresh_epochs``: epoch ``e`` renders the
    templates and captured lines of ``real``'s sources again with its own seed, and frames
    and mixes them with generated lines of its own (``real`` itself is epoch 0's)."""
    from nanomodel.realtext import real_lines

    sources = sorted({s for _, _, s in real})
    # The captured lines ``real`` holds, whatever head they were given: only those are
    # rendered again (a split that scores the others must not train on them: --known).
    logged = {text.split(" ", cut)[-1] for text, _, _ in real for cut in range(7)}

    def rows(epoch: int) -> tuple[SparseRows, np.ndarray, np.ndarray, np.ndarray | None]:
        again = real_lines(random.Random(1_000_003 * (mix.seed + 1) + epoch), per_template=1,
                           sources=sources, captured_texts=logged, own_draws=mix.keyed_draws,
                           with_next=mix.next_lines, apache22_share=mix.apache22_share)
        texts, y, w = training_rows(again, replace(mix, seed=mix.seed + 1000 * epoch), labels)
        return SparseRows(featurizer, texts, progress=False), y, w, None

    return rows


def _probabilities(model: ShippedModel, rows: SparseRows, chunk: int = 2048) -> np.ndarray:
    parts = [reference_forward(model, rows.dense(np.arange(s, min(s + chunk, rows.rows))))[0]
             for s in range(0, rows.rows, chunk)]
    return np.concatenate(parts).astype(np.float32)


_Rows = tuple[list[str], np.ndarray, np.ndarray, SparseRows]


def _teacher_probabilities(real: Sequence[RealLine], featurizer: FeaturizerLike,
                           mix: MixConfig, cfg: TrainConfig, labels: Sequence[str],
                           w1_prior: np.ndarray | None, student: _Rows,
                           i: int) -> np.ndarray:
    """Teacher ``i``: trained on seed ``+ i``'s mix, read on the student's rows (teacher 0's
    mix and seed are the student's: its rows are reused, not made again)."""
    if i == 0:
        t_texts, t_y, t_w, t_rows = student
    else:
        t_texts, t_y, t_w = training_rows(real, replace(mix, seed=mix.seed + i), labels)
        t_rows = SparseRows(featurizer, t_texts, progress=False)
    teacher = fit(featurizer, t_texts, t_y, list(labels), "normal",
                  replace(cfg, seed=cfg.seed + i, progress=False), sample_weight=t_w,
                  w1_prior=w1_prior, features=t_rows)
    return _probabilities(teacher, student[3])


class _Concat:
    """Two featurizers side by side (a teacher's wider view of a line)."""

    def __init__(self, a: FeaturizerLike, b: FeaturizerLike) -> None:
        self.a, self.b = a, b
        self.width = a.width + b.width

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        return np.hstack([self.a.transform(texts), self.b.transform(texts)])


def teacher_featurizer(featurizer: FeaturizerLike, texts: Sequence[str],
                       mix: MixConfig) -> FeaturizerLike:
    """What the teachers read: the student's features, or more buckets and/or the LLM
    teacher's word vectors (vocabulary: the words of ``texts`` and the teacher's common
    words, never a held-out line's)."""
    out: FeaturizerLike = featurizer
    if mix.teacher_buckets:
        from agent.featurizer import Featurizer, default_spec

        out = Featurizer(default_spec().model_copy(update={"buckets": mix.teacher_buckets}))
    if mix.teacher_words:
        from nanomodel.teacher import Teacher, WordVectorFeatures, vocabulary

        teacher = Teacher()
        out = _Concat(out, WordVectorFeatures(teacher, vocabulary(texts, teacher),
                                              dims=mix.teacher_words))
    return out


def _wide_teacher(real: Sequence[RealLine], featurizer: FeaturizerLike, mix: MixConfig,
                  cfg: TrainConfig, labels: Sequence[str], read: SparseRows,
                  i: int) -> np.ndarray:
    """Teacher ``i`` on seed ``+ i``'s mix, in its own features, read on ``read``."""
    t_texts, t_y, t_w = training_rows(real, replace(mix, seed=mix.seed + i), labels)
    teacher = fit(featurizer, t_texts, t_y, list(labels), "normal",
                  replace(cfg, seed=cfg.seed + i, progress=False), sample_weight=t_w)
    return _probabilities(teacher, read)


def _each_teacher(teach: Callable[[int], _T], teachers: int, jobs: int) -> list[_T]:
    """``teach(0) ... teach(teachers - 1)``, in forked processes when ``jobs`` > 1 (the
    same results either way: each teacher is seeded)."""
    if jobs > 1:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(jobs, teachers), mp_context=ctx) as pool:
            return list(pool.map(teach, range(teachers)))
    return [teach(i) for i in range(teachers)]


def _mean_in_order(probs: Sequence[np.ndarray]) -> np.ndarray:
    """The teachers' mean, summed in their order: the same bytes however they ran."""
    mean = np.zeros_like(probs[0])
    for p in probs:
        mean += p / len(probs)
    return mean


def _teachers_mean(teach: Callable[[int], np.ndarray], teachers: int, jobs: int) -> np.ndarray:
    """The mean of ``teach(0) ... teach(teachers - 1)`` (:func:`_each_teacher`)."""
    return _mean_in_order(_each_teacher(teach, teachers, jobs))


def transfer_lines(mix: MixConfig) -> list[str]:
    """The unlabelled pool as ``mix`` renders it (empty without ``pool_share``)."""
    from nanomodel.realtext import pool_lines

    return pool_lines(random.Random(mix.seed + 303)) if mix.pool_share > 0 else []


def _train_with_pool(real: Sequence[RealLine], featurizer: FeaturizerLike, mix: MixConfig,
                     cfg: TrainConfig, labels: Sequence[str], jobs: int) -> ShippedModel:
    """The student on its rows and the unlabelled pool, towards the (wider) teachers' mean."""
    texts, y, weights = training_rows(real, mix, labels)
    pool = transfer_lines(mix)
    every = texts + pool
    t_feat = teacher_featurizer(featurizer, [t for t, _, _ in real] + pool, mix)
    read = SparseRows(t_feat, every, progress=False)
    mean = _teachers_mean(partial(_wide_teacher, real, t_feat, mix, cfg, labels, read),
                          mix.teachers, jobs)
    if pool:
        # Pool lines the teachers call normal weigh ``normal_weight`` times more, as labelled
        # normal lines do, and the pool's weight comes out of the real lines' share so the
        # corpus keeps its own (neither stopped the pool from raising false alarms on the
        # corpus's held-out styles: docs/model.md, "The teacher", (e))
        normal = list(labels).index("normal")
        pool_w = 1.0 + (mix.normal_weight - 1.0) * mean[len(texts):, normal]
        real_w = float(weights[:len(real)].sum())
        weights[:len(real)] *= 1.0 - mix.pool_share
        pool_w *= mix.pool_share * real_w / float(pool_w.sum())
        weights = np.concatenate([weights, pool_w.astype(np.float32)])
        weights *= len(weights) / weights.sum()
        y = np.concatenate([y, mean[len(texts):].argmax(axis=1)])
    # teachers that read the student's own features have already made its rows
    rows = read if t_feat is featurizer else SparseRows(featurizer, every, cfg.progress)
    return fit(featurizer, every, y, list(labels), "normal", cfg, sample_weight=weights,
               soft_targets=mean, features=rows)


def with_normal_bias(model: ShippedModel, bias: float, labels: Sequence[str]) -> ShippedModel:
    """``model`` with ``bias`` added to the normal label's logit: anomaly' > 0.5 exactly
    where anomaly > sigmoid(bias), the lines' order and the other labels' ratios kept."""
    if not bias:
        return model
    head_b = model.head_b.copy()
    head_b[list(labels).index("normal")] += np.float32(bias)
    return replace(model, head_b=head_b)


def train_distilled(real: Sequence[RealLine], featurizer: FeaturizerLike, mix: MixConfig,
                    cfg: TrainConfig, labels: Sequence[str] = LABELS,
                    w1_prior: np.ndarray | None = None, jobs: int = 1) -> ShippedModel:
    """One model of the shipped size from the real lines and the corpus (how:
    :func:`_train_distilled`), its flag moved by ``mix.normal_bias``."""
    return with_normal_bias(_train_distilled(real, featurizer, mix, cfg, labels, w1_prior,
                                             jobs), mix.normal_bias, labels)


def _train_distilled(real: Sequence[RealLine], featurizer: FeaturizerLike, mix: MixConfig,
                     cfg: TrainConfig, labels: Sequence[str] = LABELS,
                     w1_prior: np.ndarray | None = None, jobs: int = 1) -> ShippedModel:
    """One model of the shipped size from the real lines and the corpus.

    With ``mix.teachers`` > 1, that many models are trained first, each on its own seed's
    mix (framing, generated lines, initialisation, data order), and the shipped model
    learns their mean probabilities. Why: one model's decisions on software it has never
    seen swing with its seed, and several seeds' mean is steadier and better than each;
    a model of the shipped size taught that mean keeps the file, the throughput and
    head-only fine-tunes as they are. ``jobs`` > 1 trains teachers in forked processes
    (the same bytes either way: each teacher is seeded, their mean taken in order)."""
    if mix.teachers > 1 and (mix.pool_share > 0 or mix.teacher_words or mix.teacher_buckets):
        return _train_with_pool(real, featurizer, mix, cfg, labels, jobs)
    if mix.teachers > 1 and mix.fresh_epochs:
        return _train_fresh_distilled(real, featurizer, mix, cfg, labels, w1_prior, jobs)
    texts, y, weights = training_rows(real, mix, labels)
    if mix.teachers <= 1:
        return fit(featurizer, texts, y, list(labels), "normal", cfg, sample_weight=weights,
                   w1_prior=w1_prior,
                   refresh=fresh_rows(real, featurizer, mix, labels) if mix.fresh_epochs
                   else None)
    # The student's rows are made once: teachers read them, teacher 0 and the student
    # train on them.
    rows = SparseRows(featurizer, texts, cfg.progress)
    mean = _teachers_mean(partial(_teacher_probabilities, real, featurizer, mix, cfg, labels,
                                  w1_prior, (texts, y, weights, rows)), mix.teachers, jobs)
    return fit(featurizer, texts, y, list(labels), "normal", cfg, sample_weight=weights,
               w1_prior=w1_prior, soft_targets=mean, features=rows)


def _fresh_teacher(real: Sequence[RealLine], featurizer: FeaturizerLike, mix: MixConfig,
                   cfg: TrainConfig, labels: Sequence[str], w1_prior: np.ndarray | None,
                   i: int) -> ShippedModel:
    """Teacher ``i``: seed ``+ i``'s mix, each epoch a fresh rendering of its own."""
    t_mix = replace(mix, seed=mix.seed + i)
    texts, y, weights = training_rows(real, t_mix, labels)
    return fit(featurizer, texts, y, list(labels), "normal",
               replace(cfg, seed=cfg.seed + i, progress=False), sample_weight=weights,
               w1_prior=w1_prior, refresh=fresh_rows(real, featurizer, t_mix, labels))


def _train_fresh_distilled(real: Sequence[RealLine], featurizer: FeaturizerLike,
                           mix: MixConfig, cfg: TrainConfig, labels: Sequence[str],
                           w1_prior: np.ndarray | None, jobs: int) -> ShippedModel:
    """:func:`train_distilled` with ``mix.fresh_epochs``: the teachers are kept (not only
    their probabilities on one set of rows), since every epoch of the student renders its
    lines afresh and needs the teachers' mean on those."""
    teachers = _each_teacher(partial(_fresh_teacher, real, featurizer, mix, cfg, labels,
                                     w1_prior), mix.teachers, jobs)

    def mean_of(rows: SparseRows) -> np.ndarray:
        return _mean_in_order([_probabilities(teacher, rows) for teacher in teachers])

    texts, y, weights = training_rows(real, mix, labels)
    rows = SparseRows(featurizer, texts, cfg.progress)
    fresh = fresh_rows(real, featurizer, mix, labels)

    def refresh(epoch: int) -> tuple[SparseRows, np.ndarray, np.ndarray, np.ndarray | None]:
        x, y_e, w_e, _ = fresh(epoch)
        return x, y_e, w_e, mean_of(x)

    return fit(featurizer, texts, y, list(labels), "normal", cfg, sample_weight=weights,
               w1_prior=w1_prior, soft_targets=mean_of(rows), features=rows, refresh=refresh)


def mixed_trainer(featurizer: FeaturizerLike, mix: MixConfig, cfg: TrainConfig,
                  labels: Sequence[str] = LABELS,
                  w1_prior: np.ndarray | None = None, jobs: int = 1,
                  sent: bool = False, probs: bool = False) -> Trainer:
    """A :data:`nanomodel.realeval.Trainer`: real lines -> scorer of a model trained on
    them mixed with the corpus (used by the held-out evaluation; ``jobs`` as in
    :func:`train_distilled`, 1 where the caller already runs trainers in parallel).
    ``sent``: the scorer gives 1.0 where the agent's default alert policy would send an
    alert and 0.0 elsewhere (:func:`nanomodel.realeval.sent_alerts`) instead of anomaly;
    ``probs``: it gives the probabilities ``[B, K]`` (in ``labels`` order)."""
    if sent and probs:
        raise ValueError("sent and probs are two different outputs: ask for one")

    def train(real: list[RealLine]) -> Scorer:
        model = train_distilled(real, featurizer, mix, cfg, labels, w1_prior, jobs)

        def score(batch: list[str]) -> np.ndarray:
            p, anomaly = reference_forward(model, featurizer.transform(batch))
            if probs:
                return p
            return sent_alerts(labels, "normal", p, anomaly) if sent else anomaly

        return score

    return train


def train_shipped(real: Sequence[RealLine], featurizer: FeaturizerLike, mix: MixConfig,
                  cfg: TrainConfig, labels: Sequence[str] = LABELS,
                  w1_prior: np.ndarray | None = None) -> ShippedModel:
    """The shipped model, its teachers trained on every core (same bytes as on one)."""
    return train_distilled(real, featurizer, mix, cfg, labels, w1_prior,
                           jobs=os.cpu_count() or 1)
