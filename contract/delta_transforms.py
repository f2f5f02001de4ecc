"""Element-wise transforms of the delta format's DIFF op (builder and applier share them).

A DIFF op stores ``zstd(split_planes(d))`` where ``d`` relates a changed tensor
segment ``new`` to the old one at the same place:

* ``XOR``   — ``d = new ^ old`` (bytes);
* ``SUB``   — ``d = new - old`` as little-endian unsigned ints of ``width`` bytes
  (mod 2**(8*width)): small weight moves give small numbers, high bytes zero;
* ``SCALE`` — int8 only: ``d = new - clip(rint(old * r), -128, 127)`` (mod 256)
  for a float64 ratio ``r`` stored in the op. A re-quantized tensor, or a
  fine-tuned one whose scale moved, is ``old`` rescaled plus a little noise:
  predicting the rescale leaves mostly zeros, where XOR/SUB leave noise;
* ``NONE``  — ``d = new``: a tensor retrained beyond recognition still gains
  from byte planes (float32 exponents), just not from the old values.

``split_planes`` groups byte k of every ``width``-byte element together
(float32 -> 4 planes), so sign/exponent bytes, which barely change, sit
together and compress to almost nothing. Everything here is exact IEEE-754
arithmetic (one float64 multiply, round-half-even), so a device computes the
same bytes as the server on any CPU; the result's sha256 would catch it if not.
"""

from __future__ import annotations

import numpy as np

TRANSFORM_XOR, TRANSFORM_SUB, TRANSFORM_SCALE, TRANSFORM_NONE = 1, 2, 3, 4
TRANSFORMS = (TRANSFORM_XOR, TRANSFORM_SUB, TRANSFORM_SCALE, TRANSFORM_NONE)
WIDTHS = (1, 2, 4, 8)
_PREDICT_CHUNK = 64 << 10  # float64 temporaries stay at 8 x this, not 8 x the segment


def split_planes(data: bytes, width: int) -> bytes:
    """Group byte k of every ``width``-byte element together (float32 -> 4 planes)."""
    if width == 1:
        return data
    return np.frombuffer(data, np.uint8).reshape(-1, width).T.tobytes()


def join_planes(planes: bytes, width: int) -> bytes:
    if width == 1:
        return planes
    return np.frombuffer(planes, np.uint8).reshape(width, -1).T.tobytes()


def _uint(width: int) -> np.dtype[np.unsignedinteger]:
    return np.dtype(f"<u{width}")


def scaled_prediction(old: bytes, ratio: float) -> np.ndarray:
    """``clip(rint(old * ratio), -128, 127)`` of int8 ``old``, as uint8 bytes."""
    src = np.frombuffer(old, np.int8)
    out = np.empty(len(src), np.int8)
    for start in range(0, len(src), _PREDICT_CHUNK):
        part = src[start:start + _PREDICT_CHUNK].astype(np.float64) * ratio
        out[start:start + _PREDICT_CHUNK] = np.clip(np.rint(part), -128, 127)
    return out.view(np.uint8)


def diff_segment(new: bytes, old: bytes, transform: int, width: int,
                 ratio: float = 0.0) -> bytes:
    """Forward transform (builder): what DIFF stores before planes and zstd."""
    if transform == TRANSFORM_NONE:
        return new
    if transform == TRANSFORM_XOR:
        out = np.bitwise_xor(np.frombuffer(new, np.uint8), np.frombuffer(old, np.uint8))
    elif transform == TRANSFORM_SUB:
        out = np.subtract(np.frombuffer(new, _uint(width)), np.frombuffer(old, _uint(width)))
    else:
        out = np.subtract(np.frombuffer(new, np.uint8), scaled_prediction(old, ratio))
    return out.tobytes()


def undiff_segment(diff: bytes, old: bytes, transform: int, width: int,
                   ratio: float = 0.0) -> bytes:
    """Inverse transform (applier): rebuild the new bytes from the old ones and the diff."""
    if transform == TRANSFORM_NONE:
        return diff
    if transform == TRANSFORM_XOR:
        out = np.bitwise_xor(np.frombuffer(diff, np.uint8), np.frombuffer(old, np.uint8))
    elif transform == TRANSFORM_SUB:
        out = np.add(np.frombuffer(old, _uint(width)), np.frombuffer(diff, _uint(width)))
    else:
        out = np.add(scaled_prediction(old, ratio), np.frombuffer(diff, np.uint8))
    return out.tobytes()


def fit_ratio(old: bytes, new: bytes, sample: int = 1 << 16) -> float | None:
    """The ratio whose SCALE prediction matches the most int8 values (for the builder).

    Starts from the median of new/old over large old values (little rounding
    noise there), then searches a fine grid around it on a sample."""
    a_all = np.frombuffer(old, np.int8)
    b_all = np.frombuffer(new, np.int8)
    big = np.abs(a_all) >= 16
    if np.count_nonzero(big) < 64:
        return None
    guess = float(np.median(b_all[big].astype(np.float64) / a_all[big]))
    if not np.isfinite(guess) or guess == 0:
        return None
    step = max(1, len(a_all) // sample)
    a, b = a_all[::step].astype(np.float64), b_all[::step]
    best = guess
    for spread, points in ((0.03, 121), (0.0006, 61)):
        grid = best * (1 + np.linspace(-spread, spread, points))
        hits = [np.count_nonzero(np.clip(np.rint(a * r), -128, 127) == b) for r in grid]
        best = float(grid[int(np.argmax(hits))])
    return best
