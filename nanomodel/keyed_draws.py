"""Training draws keyed by what a row is, not by where it sits in one generator's stream.

Why: the trainer drew its epoch order, dropout masks and bucket noise from one generator,
so one line added anywhere shifted every later draw. Measured on one held-out group
(docs/model.md, "How chaotic is training"): a duplicated training line changed 10 % of
the held-out flags, as much as a new seed, while one weight moved by one ulp changed
3 %. The noise of a small data change was the redraw, not the change. Keyed, each
row's draws depend only on the row's own features, the seed, the epoch and what the
draw is for, so a change redraws only its own rows (batch boundaries still shift by
the rows added before them).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from nanomodel.train import SparseRows

# What a draw is for: part of its key, so the order, the dropout and the noise of one
# row and epoch are independent of each other.
ORDER, DROPOUT, NOISE_ROW, NOISE_COUNT, NOISE_COLUMN, NOISE_MASS, HEAD_ORDER = range(7)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, vectorised: nearby inputs give unrelated 64-bit outputs."""
    x = np.asarray(x, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def salted(keys: np.ndarray, seed: int, epoch: int, purpose: int) -> np.ndarray:
    """``keys`` made specific to a seed, an epoch and a purpose (still one per row)."""
    salt = mix64(np.array([(seed * 1_000_003 + epoch) * 16 + purpose], np.uint64))[0]
    with np.errstate(over="ignore"):
        return mix64(keys ^ salt)


def uniform(keys: np.ndarray) -> np.ndarray:
    """Floats in [0, 1) from 64-bit keys (their top 53 bits)."""
    return (mix64(keys) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def row_keys(x: SparseRows) -> np.ndarray:
    """One 64-bit key per row from its features; rows with the same features are told
    apart by how many came before them (so two copies are not drawn alike)."""
    keys = np.empty(x.rows, np.uint64)
    seen: dict[bytes, int] = {}
    for r in range(x.rows):
        s, e = int(x.indptr[r]), int(x.indptr[r + 1])
        digest = hashlib.blake2b(x.indices[s:e].tobytes() + x.values[s:e].tobytes(),
                                 digest_size=8).digest()
        n = seen.get(digest, 0)
        seen[digest] = n + 1
        keys[r] = int.from_bytes(hashlib.blake2b(digest + n.to_bytes(4, "little"),
                                                 digest_size=8).digest(), "little")
    return keys


def order(keys: np.ndarray, seed: int, epoch: int, purpose: int = ORDER) -> np.ndarray:
    """The epoch's row order: rows sorted by their salted keys."""
    return np.argsort(salted(keys, seed, epoch, purpose), kind="stable")


def dense_with_dropout(x: SparseRows, rows: np.ndarray, keys: np.ndarray, seed: int,
                       epoch: int, dropout: float) -> np.ndarray:
    """``x.dense(rows)`` with each non-zero feature dropped by its row's key and column
    (drawn on the batch's non-zeros, as ``SparseRows.dense`` draws its own dropout)."""
    if dropout <= 0 or rows.size == 0:
        return x.dense(rows)
    out = np.zeros((rows.size, x.width), dtype=np.float32)
    which, cols, vals = x.nonzeros(rows)
    row_salt = salted(keys[rows], seed, epoch, DROPOUT)
    with np.errstate(over="ignore"):
        keep = uniform(row_salt[which] + cols.astype(np.uint64)
                       * np.uint64(0x9E3779B97F4A7C15)) >= dropout
    out[which, cols] = vals * keep / np.float32(1.0 - dropout)
    return out


class KeyedNoise:
    """:class:`nanomodel.bucket_noise.NoiseDraws` of a batch whose rows have ``keys``: each
    row's bucket noise (whether, how much, where, how strong) drawn from its own key."""

    def __init__(self, keys: np.ndarray, seed: int, epoch: int) -> None:
        self.keys, self.seed, self.epoch = keys, seed, epoch

    def _salted(self, rows: np.ndarray | slice, purpose: int) -> np.ndarray:
        return salted(self.keys[rows], self.seed, self.epoch, purpose)

    def rows(self, n: int) -> np.ndarray:
        return uniform(self._salted(slice(0, n), NOISE_ROW))

    def counts(self, chosen: np.ndarray, limit: np.ndarray) -> np.ndarray:
        return (uniform(self._salted(chosen, NOISE_COUNT)) * limit).astype(np.int64)

    def columns(self, r: np.ndarray, width: int) -> np.ndarray:
        with np.errstate(over="ignore"):
            return (mix64(self._salted(r, NOISE_COLUMN) + self._step(r))
                    % np.uint64(width)).astype(np.int64)

    def masses(self, r: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return (0.5 + uniform(self._salted(r, NOISE_MASS) + self._step(r))) \
                .astype(np.float32)

    @staticmethod
    def _step(r: np.ndarray) -> np.ndarray:
        """The j-th noise entry of a row, spread: its draws are keyed by the row and j
        (``r`` holds each row's entries together, rows ascending)."""
        j = (np.arange(r.size) - np.searchsorted(r, r)).astype(np.uint64)
        with np.errstate(over="ignore"):
            return j * np.uint64(0x9E3779B97F4A7C15)
