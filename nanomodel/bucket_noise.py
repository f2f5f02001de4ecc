"""Bucket noise for training rows (:func:`add_bucket_noise`) and where its random
numbers come from (:class:`NoiseDraws`): one generator's stream (the shipped trainer) or
each row's own key (:class:`nanomodel.keyed_draws.KeyedNoise`)."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class NoiseDraws(Protocol):
    """Where :func:`add_bucket_noise`'s random numbers come from: one stream
    (:class:`StreamNoise`), or each row's own (:class:`nanomodel.keyed_draws.KeyedNoise`)."""

    def rows(self, n: int) -> np.ndarray:
        """One number in [0, 1) per row of the batch."""
        ...

    def counts(self, chosen: np.ndarray, limit: np.ndarray) -> np.ndarray:
        """How many noise buckets each chosen row gets, each in [0, its limit)."""
        ...

    def columns(self, r: np.ndarray, width: int) -> np.ndarray:
        """A bucket in [0, width) for each noise entry (``r``: its row, grouped)."""
        ...

    def masses(self, r: np.ndarray) -> np.ndarray:
        """A factor in [0.5, 1.5) (float32) for each noise entry."""
        ...


class StreamNoise:
    """:class:`NoiseDraws` from one generator (the shipped trainer)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def rows(self, n: int) -> np.ndarray:
        return self.rng.random(n)

    def counts(self, chosen: np.ndarray, limit: np.ndarray) -> np.ndarray:
        return self.rng.integers(0, limit)

    def columns(self, r: np.ndarray, width: int) -> np.ndarray:
        return self.rng.integers(0, width, r.size)

    def masses(self, r: np.ndarray) -> np.ndarray:
        return self.rng.uniform(0.5, 1.5, r.size).astype(np.float32)


def add_bucket_noise(xb: np.ndarray, draws: NoiseDraws, share: float,
                     most: float) -> np.ndarray:
    """Give ``share`` of the rows extra mass in random buckets, then re-normalise.

    Every hash bucket is shared by many n-grams, so a line in an unfamiliar framing
    (new separators, quoting, metadata) lights up buckets whose trained meaning has
    nothing to do with it. Training on rows with such unrelated mass (label unchanged)
    teaches the network to decide on strong evidence and not on stray buckets."""
    if share <= 0 or xb.shape[0] == 0:
        return xb
    nnz = (xb > 0).sum(axis=1)
    # Features are non-negative: a row's mean over its non-zero buckets is sum / count.
    typical = np.where(nnz > 0, xb.sum(axis=1) / np.maximum(nnz, 1), 1.0).astype(np.float32)
    chosen = np.flatnonzero(draws.rows(xb.shape[0]) < share)
    extra = draws.counts(chosen, (nnz[chosen] * most).astype(np.int64) + 1)
    r = np.repeat(chosen, extra)
    if r.size:
        cols = draws.columns(r, xb.shape[1])
        mass = typical[r] * draws.masses(r)
        # One fancy-indexed add for the batch (a bucket drawn twice for a row gets its
        # mass once), then the touched rows re-normalised.
        xb[r, cols] += mass
        touched = np.unique(r)
        xb[touched] /= np.linalg.norm(xb[touched], axis=1, keepdims=True)
    return xb
