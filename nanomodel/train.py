"""Training in numpy: full training, and head-only fine-tuning on a frozen body.

Full training fits the float network with Adam, quantizes the body to int8,
then refits the head on the *quantized* body's activations, so the shipped head
matches the shipped body. Head-only fine-tuning skips straight to that last
step on a base model's body, which therefore stays byte-identical.

Determinism: every random draw comes from one seeded ``numpy`` generator and
the data order is fixed, so the same data and config give the same weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nanomodel import keyed_draws
from nanomodel.bucket_noise import NoiseDraws, StreamNoise, add_bucket_noise
from nanomodel.network import (
    FloatParams,
    QuantizedBody,
    ShippedModel,
    anomaly_mask,
    body_forward,
    init_params,
    quantize_body,
    softmax,
)
from nanomodel.progress import Progress


class FeaturizerLike(Protocol):
    """What training needs of a featurizer (the agent's, or an experiment's)."""

    width: int

    def transform(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; the defaults build the shipped model."""

    hidden1: int = 64
    hidden2: int = 64
    epochs: int = 10
    min_steps: int = 600
    max_epochs: int = 60
    head_epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    head_lr: float = 1e-2
    weight_decay: float = 1e-5
    feature_dropout: float = 0.2
    bucket_noise: float = 0.5  # share of rows given unrelated n-gram mass (add_bucket_noise)
    bucket_noise_max: float = 0.6  # at most this many noise buckets per real one
    seed: int = 0
    progress: bool = True
    prior_strength: float = 0.0  # pull of the first layer toward ``w1_prior`` (teacher)
    # The body and head kept are the mean of the weights at the end of each of the last
    # this many epochs (stochastic weight averaging); 0: the last epoch's weights.
    average_epochs: int = 0
    # Order, dropout and bucket noise drawn per row, keyed by the row's features
    # (nanomodel.keyed_draws), not from one stream: a line added changes only its draws.
    keyed_draws: bool = False


class SparseRows:
    """Feature rows kept sparse (CSR), densified per mini-batch: a dense copy of a
    20k-line corpus at 4096 buckets would need ~330 MB."""

    def __init__(self, featurizer: FeaturizerLike, texts: Sequence[str], progress: bool,
                 chunk: int = 1024) -> None:
        self.width = featurizer.width
        indptr = [np.zeros(1, dtype=np.int64)]
        indices: list[np.ndarray] = []
        values: list[np.ndarray] = []
        total = 0
        with Progress("features", len(texts), progress) as bar:
            for start in range(0, len(texts), chunk):
                dense = featurizer.transform(texts[start : start + chunk])
                rows, cols = np.nonzero(dense)
                indices.append(cols.astype(np.int32))
                values.append(dense[rows, cols])
                counts = np.bincount(rows, minlength=dense.shape[0])
                indptr.append(total + np.cumsum(counts))
                total += int(counts.sum())
                bar.update(dense.shape[0])
        self.indptr = np.concatenate(indptr)
        self.indices = np.concatenate(indices) if indices else np.zeros(0, np.int32)
        self.values = np.concatenate(values) if values else np.zeros(0, np.float32)
        self.rows = len(texts)

    def nonzeros(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(position in rows, column, value)`` of every non-zero feature of ``rows``."""
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        flat = np.repeat(ends - lengths.cumsum(), lengths) + np.arange(int(lengths.sum()))
        return np.repeat(np.arange(rows.size), lengths), self.indices[flat], self.values[flat]

    def dense(self, rows: np.ndarray, rng: np.random.Generator | None = None,
              dropout: float = 0.0) -> np.ndarray:
        out = np.zeros((rows.size, self.width), dtype=np.float32)
        which, cols, vals = self.nonzeros(rows)
        if rng is not None and dropout > 0:
            vals = vals * (rng.random(vals.size) >= dropout) / np.float32(1.0 - dropout)
        out[which, cols] = vals
        return out


class _Adam:
    def __init__(self, params: list[np.ndarray], lr: float, weight_decay: float) -> None:
        self.params, self.lr, self.wd = params, lr, weight_decay
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        step, root_c2 = np.float32(self.lr / c1), np.float32(np.sqrt(c2))
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            # In place, float32 throughout: the first layer's 262,144 weights take this
            # path every step, and temporaries were a third of a training's time.
            g = g + np.float32(self.wd) * p
            m *= np.float32(b1)
            m += np.float32(1 - b1) * g
            v *= np.float32(b2)
            np.multiply(g, g, out=g)
            g *= np.float32(1 - b2)
            v += g
            np.sqrt(v, out=g)
            g /= root_c2
            g += np.float32(eps)
            np.divide(m, g, out=g)
            g *= step
            p -= g


def class_weights(y: np.ndarray, k: int) -> np.ndarray:
    """sqrt-balanced: rare alert classes count more, without drowning the common ones."""
    counts = np.bincount(y, minlength=k).astype(np.float64)
    w = np.sqrt(counts.sum() / (k * np.maximum(counts, 1)))
    return (w / w[counts > 0].mean()).astype(np.float32)


def epochs_for(cfg: TrainConfig, rows: int) -> int:
    """``cfg.epochs``, raised for small data sets so training makes at least
    ``cfg.min_steps`` optimizer steps (300 lines x 6 epochs would be 18 steps)."""
    per_epoch = max(1, -(-rows // cfg.batch_size))
    return max(cfg.epochs, min(cfg.max_epochs, -(-cfg.min_steps // per_epoch)))


def _targets(y: np.ndarray, soft: np.ndarray | None, idx: np.ndarray, k: int) -> np.ndarray:
    """The distributions a batch is pulled towards: one-hot labels, or a teacher's
    probabilities (distillation) where given."""
    if soft is not None:
        return soft[idx]
    t = np.zeros((idx.size, k), np.float32)
    t[np.arange(idx.size), y[idx]] = 1
    return t


# Rows for epoch ``e`` (1, 2, ...): (features, labels, weights, soft targets or None); the
# first epoch trains on the rows given to fit. Fresh renderings of the same lines each pass
# (nanomodel.realtrain: MixConfig.fresh_epochs), so no filled-in value is seen twice.
EpochRows = Callable[[int], tuple[SparseRows, np.ndarray, np.ndarray, np.ndarray | None]]


def _train_float(x: SparseRows, y: np.ndarray, sw: np.ndarray, k: int, cfg: TrainConfig,
                 init: FloatParams | None, rng: np.random.Generator,
                 w1_prior: np.ndarray | None = None,
                 soft: np.ndarray | None = None,
                 refresh: EpochRows | None = None,
                 keys: np.ndarray | None = None) -> FloatParams:
    """``keys``: ``x``'s :func:`nanomodel.keyed_draws.row_keys` (with ``cfg.keyed_draws``;
    made again for each fresh epoch's rows)."""
    if cfg.keyed_draws and keys is None:
        keys = keyed_draws.row_keys(x)
    p = init.copy() if init is not None else init_params(rng, x.width, cfg.hidden1,
                                                         cfg.hidden2, k)
    if w1_prior is not None and init is None:
        # Teacher initialisation: the prior's meaning plus a little of the random init, so
        # buckets the prior never reached still act as random features.
        p.w1[:] = w1_prior + 0.1 * p.w1
    tensors = [p.w1, p.b1, p.w2, p.b2, p.wo, p.bo]
    opt = _Adam(tensors, cfg.lr, cfg.weight_decay)
    cw = class_weights(y, k)[y] * sw
    epochs = epochs_for(cfg, x.rows)
    averaged = _Average(epochs, cfg.average_epochs)
    for epoch in range(epochs):
        if refresh is not None and epoch > 0:
            x, y, sw, soft = refresh(epoch)
            cw = class_weights(y, k)[y] * sw
            keys = keyed_draws.row_keys(x) if cfg.keyed_draws else None
        order = rng.permutation(x.rows) if keys is None else \
            keyed_draws.order(keys, cfg.seed, epoch)
        loss_sum, seen = 0.0, 0
        with Progress(f"epoch {epoch + 1}/{epochs}", x.rows, cfg.progress) as bar:
            for start in range(0, x.rows, cfg.batch_size):
                idx = order[start : start + cfg.batch_size]
                tb = _targets(y, soft, idx, k)
                if keys is None:
                    xb = x.dense(idx, rng, cfg.feature_dropout)
                    noise: NoiseDraws = StreamNoise(rng)
                else:
                    xb = keyed_draws.dense_with_dropout(x, idx, keys, cfg.seed, epoch,
                                                        cfg.feature_dropout)
                    noise = keyed_draws.KeyedNoise(keys[idx], cfg.seed, epoch)
                xb = add_bucket_noise(xb, noise, cfg.bucket_noise, cfg.bucket_noise_max)
                z1 = xb @ p.w1.T + p.b1
                h1 = np.maximum(z1, 0)
                z2 = h1 @ p.w2.T + p.b2
                h2 = np.maximum(z2, 0)
                probs = softmax(h2 @ p.wo.T + p.bo)
                wb = cw[idx]
                loss_sum += float(-(wb * (tb * np.log(probs + 1e-9)).sum(1)).sum())
                seen += idx.size
                d = (probs - tb) * (wb / idx.size)[:, None]
                g_wo, g_bo = d.T @ h2, d.sum(0)
                d2 = (d @ p.wo) * (z2 > 0)
                g_w2, g_b2 = d2.T @ h1, d2.sum(0)
                d1 = (d2 @ p.w2) * (z1 > 0)
                g_w1, g_b1 = d1.T @ xb, d1.sum(0)
                if w1_prior is not None and cfg.prior_strength > 0:
                    g_w1 += cfg.prior_strength * (p.w1 - w1_prior)
                opt.step([g_w1, g_b1, g_w2, g_b2, g_wo, g_bo])
                bar.update(idx.size, f"loss {loss_sum / seen:.4f}")
        averaged.add(epoch, p)
    return averaged.result(p)


class _Average:
    """Stochastic weight averaging: with a constant learning rate the last epochs'
    weights wander around a wide minimum; their mean sits nearer its centre, which
    scores unseen phrasing better and depends less on the last minibatches' draw."""

    def __init__(self, epochs: int, last: int) -> None:
        self.first = max(0, epochs - last) if last > 0 else epochs
        self.sum: FloatParams | None = None
        self.count = 0

    def add(self, epoch: int, p: FloatParams) -> None:
        if epoch < self.first:
            return
        if self.sum is None:
            self.sum = p.copy()
        else:
            for total, a in zip(self._tensors(self.sum), self._tensors(p), strict=True):
                total += a
        self.count += 1

    def result(self, p: FloatParams) -> FloatParams:
        if self.sum is None or self.count < 2:
            return p
        scale = np.float32(1.0 / self.count)
        return FloatParams(*(t * scale for t in self._tensors(self.sum)))

    @staticmethod
    def _tensors(p: FloatParams) -> tuple[np.ndarray, ...]:
        return (p.w1, p.b1, p.w2, p.b2, p.wo, p.bo)


def train_head(h: np.ndarray, y: np.ndarray, sw: np.ndarray, k: int, cfg: TrainConfig,
               init: tuple[np.ndarray, np.ndarray] | None,
               rng: np.random.Generator,
               soft: np.ndarray | None = None,
               keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fit ``softmax(h @ wo.T + bo)`` on fixed body activations ``h`` (``keys``: the
    rows' :func:`nanomodel.keyed_draws.row_keys`, to order them by instead of ``rng``)."""
    if init is not None:
        wo, bo = init[0].astype(np.float32).copy(), init[1].astype(np.float32).copy()
    else:
        wo = (rng.standard_normal((k, h.shape[1])) * np.sqrt(1.0 / h.shape[1])).astype(
            np.float32)
        bo = np.zeros(k, np.float32)
    opt = _Adam([wo, bo], cfg.head_lr, cfg.weight_decay)
    cw = class_weights(y, k)[y] * sw
    bs = max(cfg.batch_size, 64)
    with Progress("head", cfg.head_epochs, cfg.progress) as bar:
        for epoch in range(cfg.head_epochs):
            order = rng.permutation(h.shape[0]) if keys is None else \
                keyed_draws.order(keys, cfg.seed, epoch, keyed_draws.HEAD_ORDER)
            for start in range(0, h.shape[0], bs):
                idx = order[start : start + bs]
                hb = h[idx]
                probs = softmax(hb @ wo.T + bo)
                d = (probs - _targets(y, soft, idx, k)) * (cw[idx] / idx.size)[:, None]
                opt.step([d.T @ hb, d.sum(0)])
            bar.update(1)
    return wo, bo


def body_activations(body: QuantizedBody, x: SparseRows, chunk: int = 2048) -> np.ndarray:
    parts = [body_forward(body, x.dense(np.arange(s, min(s + chunk, x.rows))))
             for s in range(0, x.rows, chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, body.b2.size), np.float32)


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Small matrices train faster on one BLAS thread than on contended several, and a
    fixed thread count keeps float summation order, hence the weights, reproducible."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: training still works, just less predictably fast
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def fit(featurizer: FeaturizerLike, texts: Sequence[str], y: np.ndarray, labels: list[str],
        normal_label: str, cfg: TrainConfig, base: ShippedModel | None = None,
        head_only: bool = False, sample_weight: np.ndarray | None = None,
        w1_prior: np.ndarray | None = None,
        soft_targets: np.ndarray | None = None,
        features: SparseRows | None = None,
        refresh: EpochRows | None = None) -> ShippedModel:
    """Train a model for ``labels`` (``y`` holds label indices, ``sample_weight``
    optional per-line weights).

    ``base`` + ``head_only``: keep the base body exactly, fit a new head.
    ``base`` alone: start from the base weights and train everything.
    ``w1_prior`` (``[hidden1, width]``, e.g. the teacher's :func:`bucket_prior`):
    initialise the first layer from it and, with ``cfg.prior_strength``, pull it there.
    ``soft_targets`` (``[lines, labels]`` probabilities, e.g. teachers' mean): train
    towards them instead of the one-hot labels (distillation); ``y`` still sets the
    class weights. ``features``: the texts' rows when the caller already made them.
    ``refresh``: other rows for each epoch after the first (:data:`EpochRows`); the head
    is refitted on the given rows."""
    if soft_targets is not None and soft_targets.shape != (len(texts), len(labels)):
        raise ValueError(f"soft_targets has shape {soft_targets.shape}, "
                         f"expected ({len(texts)}, {len(labels)})")
    if features is not None and features.rows != len(texts):
        raise ValueError(f"features has {features.rows} rows, expected {len(texts)}")
    with _one_blas_thread():
        x = features if features is not None else SparseRows(featurizer, texts, cfg.progress)
        return _fit(x, texts, y, labels, normal_label, cfg, base, head_only,
                    sample_weight, w1_prior, soft_targets, refresh)


def _fit(x: SparseRows, texts: Sequence[str], y: np.ndarray, labels: list[str],
         normal_label: str, cfg: TrainConfig, base: ShippedModel | None, head_only: bool,
         sample_weight: np.ndarray | None, w1_prior: np.ndarray | None,
         soft: np.ndarray | None, refresh: EpochRows | None = None) -> ShippedModel:
    rng = np.random.default_rng(cfg.seed)
    k = len(labels)
    weights = np.ones(len(texts), np.float32) if sample_weight is None else \
        np.asarray(sample_weight, dtype=np.float32)
    if weights.shape != (len(texts),):
        raise ValueError(f"sample_weight has shape {weights.shape}, expected ({len(texts)},)")
    # One key per row for the keyed draws: made once, for the body's first epoch and the head.
    keys = keyed_draws.row_keys(x) if cfg.keyed_draws else None
    head_init: tuple[np.ndarray, np.ndarray] | None = None
    if base is not None and base.num_labels == k:
        head_init = (base.head_w, base.head_b)
    if base is not None and head_only:
        body = base.body
    else:
        init = None
        if base is not None:
            w1, w2 = base.body.dequantized()
            wo, bo = head_init if head_init is not None else (
                (rng.standard_normal((k, base.body.b2.size)) * 0.1).astype(np.float32),
                np.zeros(k, np.float32))
            init = FloatParams(w1, base.body.b1.copy(), w2, base.body.b2.copy(), wo, bo)
        floats = _train_float(x, y, weights, k, cfg, init, rng, w1_prior, soft, refresh,
                              keys)
        body = quantize_body(floats)
        head_init = (floats.wo, floats.bo)
    h = body_activations(body, x)
    wo, bo = train_head(h, y, weights, k, cfg, head_init, rng, soft, keys)
    return ShippedModel(body, wo, bo, anomaly_mask(labels, normal_label))
