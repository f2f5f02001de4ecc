"""The op writer both delta builders of :mod:`fleet_server.deltas` share: ops that rebuild
the new bytes from the old, left to right (COPY, COPY_OUT, DATA, DIFF; format
:mod:`contract.delta`), merged where they continue each other, each DIFF's transform
picked by compressing the candidates, and the generic matching (sampled anchors, runs
of equal bytes) for bytes the bundle's layout says nothing about.

Separate because it decides only how to encode a range it is given: which range comes
from which old tensor is the builders' choice (:func:`fleet_server.deltas.build_tensor_delta`).
"""

from __future__ import annotations

import hashlib

import numpy as np
import zstandard

from contract.delta import (
    MAX_REF,
    MAX_SEGMENT,
    CopyOp,
    CopyOutOp,
    DataOp,
    DeltaHeader,
    DiffOp,
    Op,
    encode_delta,
    zstd_params,
)
from contract.delta_transforms import (
    TRANSFORM_NONE,
    TRANSFORM_SCALE,
    TRANSFORM_SUB,
    TRANSFORM_XOR,
    diff_segment,
    fit_ratio,
    split_planes,
)

PROBE_LEVEL = 3  # cheap level used to pick between transforms before the real compression
MIN_COPY = 4096  # shorter identical runs are cheaper as matches inside a DATA op
MIN_REF_SPAN = 8 << 10  # smallest old window given to a DATA op as dictionary
ANCHOR_SAMPLES = 8
SMALL_SEGMENT = 64 << 10  # below this, trying a zstd patch against DIFF costs little
ANCHOR_BYTES = 32


class DeltaEncoder:
    """Accumulates ops that rebuild ``new`` from ``old``, left to right."""

    def __init__(self, old: bytes, new: bytes, level: int) -> None:
        self.old, self.new, self.level = old, new, level
        self.old_u8 = np.frombuffer(old, np.uint8)
        self.new_u8 = np.frombuffer(new, np.uint8)
        self.ops: list[Op] = []
        self.written = 0

    def delta(self) -> bytes:
        assert self.written == len(self.new), (self.written, len(self.new))
        header = DeltaHeader(len(self.old), hashlib.sha256(self.old).hexdigest(),
                             len(self.new), hashlib.sha256(self.new).hexdigest())
        return encode_delta(header, self.ops)

    def _emit(self, op: Op) -> None:
        last = self.ops[-1] if self.ops else None
        if (isinstance(op, CopyOp) and isinstance(last, CopyOp)
                and last.src + last.length == op.src):
            self.ops[-1] = CopyOp(last.src, last.length + op.length)
        elif (isinstance(op, CopyOutOp) and isinstance(last, CopyOutOp)
              and last.src + last.length == op.src
              and op.src + op.length <= self.written - last.length):  # no overlap with itself
            self.ops[-1] = CopyOutOp(last.src, last.length + op.length)
        else:
            self.ops.append(op)
        self.written += op.length

    def copy(self, src: int, length: int) -> None:
        if length:
            self._emit(CopyOp(src, length))

    def copy_out(self, src: int, length: int) -> None:
        self._emit(CopyOutOp(src, length))

    # -- compression ---------------------------------------------------------------

    def _zstd(self, data: bytes, level: int, ref: bytes = b"") -> bytes:
        params = zstd_params(level, len(data), len(ref))
        zdict = zstandard.ZstdCompressionDict(ref, dict_type=zstandard.DICT_TYPE_RAWCONTENT) \
            if ref else None
        return zstandard.ZstdCompressor(compression_params=params, dict_data=zdict).compress(data)

    def _ref_window(self, center: int, length: int) -> tuple[int, int]:
        """An old window of at most MAX_REF bytes around ``center``..``center+length``."""
        span = min(MAX_REF, max(MIN_REF_SPAN, 2 * length))
        start = max(0, min(center - (span - length) // 2, len(self.old) - span))
        return start, min(len(self.old), start + span)

    def data(self, start: int, end: int, hint: int) -> None:
        """New bytes as DATA ops, each with the old bytes around ``hint`` as dictionary."""
        for s in range(start, end, MAX_SEGMENT):
            e = min(end, s + MAX_SEGMENT)
            ref_start, ref_end = self._ref_window(hint + (s - start), e - s)
            payload = self._zstd(self.new[s:e], self.level, self.old[ref_start:ref_end])
            self._emit(DataOp(ref_start, ref_end - ref_start, e - s, payload))

    def diff(self, start: int, end: int, src: int, width: int) -> None:
        """A changed tensor of the same length as an old one: DIFF ops (or DATA if smaller).

        The transform is picked per segment by compressing each candidate cheaply;
        a zstd patch is tried too where it may win: small segments, new bytes that
        compress better alone than any diff, or bytes that moved."""
        for s in range(start, end, MAX_SEGMENT):
            e = min(end, s + MAX_SEGMENT)
            at = src + s - start
            new, old = self.new[s:e], self.old[at:at + e - s]
            if new == old:
                self.copy(at, e - s)
                continue
            w = width if (e - s) % width == 0 else 1
            options: list[tuple[int, int, float, bytes]] = []
            ratios = [(TRANSFORM_XOR, 0.0), (TRANSFORM_SUB, 0.0)]
            if w > 1:
                ratios.append((TRANSFORM_NONE, 0.0))  # with width 1 that is a DATA op
            ratio = fit_ratio(old, new) if w == 1 else None
            if ratio is not None:
                ratios.append((TRANSFORM_SCALE, ratio))
            for transform, r in ratios:
                planes = split_planes(diff_segment(new, old, transform, w, r), w)
                options.append((len(self._zstd(planes, PROBE_LEVEL)), transform, r, planes))
            probe, transform, r, planes = min(options, key=lambda o: o[0])
            diff_op = DiffOp(at, e - s, transform, w, self._zstd(planes, self.level), r)
            ref_start, ref_end = self._ref_window(at, e - s)
            if (e - s > SMALL_SEGMENT and len(self._zstd(new, PROBE_LEVEL)) >= probe
                    and not self._moved(s, e, src - start, ref_start, ref_end)):
                self._emit(diff_op)
                continue
            patched = self._zstd(new, self.level, self.old[ref_start:ref_end])
            if len(patched) < len(diff_op.payload):
                self._emit(DataOp(ref_start, ref_end - ref_start, e - s, patched))
            else:
                self._emit(diff_op)

    def _moved(self, start: int, end: int, shift: int, ref_start: int, ref_end: int) -> bool:
        """Do sampled new bytes reappear in the old window at another offset? Only then
        can a zstd patch beat the element-wise diff, and only then is it worth trying."""
        step = max(ANCHOR_BYTES, (end - start) // (4 * ANCHOR_SAMPLES))
        moved = 0
        for pos in range(start, end - ANCHOR_BYTES + 1, step):
            sample = self.new[pos:pos + ANCHOR_BYTES]
            found = self.old.find(sample, ref_start, ref_end)
            if found >= 0 and found != pos + shift and sample.count(sample[:1]) < ANCHOR_BYTES:
                moved += 1
        return moved >= 2

    # -- generic matching ----------------------------------------------------------

    def _anchor_shifts(self, start: int, end: int) -> set[tuple[bool, int]]:
        """(from_output, offset) pairs suggested by finding sampled new bytes in the old
        bytes, or earlier in the new ones (a second copy of the same weights)."""
        shifts: set[tuple[bool, int]] = set()
        step = max(ANCHOR_BYTES, (end - start) // ANCHOR_SAMPLES)
        for pos in range(start, end - ANCHOR_BYTES + 1, step):
            sample = self.new[pos:pos + ANCHOR_BYTES]
            if sample.count(sample[:1]) == ANCHOR_BYTES:
                continue  # a run of one byte value (padding) matches anywhere
            found = self.old.find(sample)
            if found >= 0:
                shifts.add((False, found - pos))
            found = self.new.find(sample, 0, pos)
            if found >= 0:
                shifts.add((True, found - pos))
        return shifts

    def _equal_mask(self, start: int, end: int, from_output: bool, shift: int) -> np.ndarray:
        source = self.new_u8 if from_output else self.old_u8
        mask = np.zeros(end - start, dtype=bool)
        lo, hi = max(start, -shift), min(end, len(source) - shift)
        if lo < hi:
            mask[lo - start:hi - start] = self.new_u8[lo:hi] == source[lo + shift:hi + shift]
        return mask

    def generic(self, start: int, end: int, hint: int) -> None:
        """Any bytes: COPY the runs found in the old (or written) bytes, DATA-patch the rest."""
        if end <= start:
            return
        if (hint >= 0 and hint + end - start <= len(self.old)
                and self.new[start:end] == self.old[hint:hint + end - start]):
            self.copy(hint, end - start)
            return
        for s in range(start, end, MAX_SEGMENT):
            e = min(end, s + MAX_SEGMENT)
            near = (False, hint - start)
            sources = {near}
            if e - s >= 4 * MIN_COPY:
                sources |= self._anchor_shifts(s, e)
            masks = {src: self._equal_mask(s, e, *src) for src in sources}
            best = max(masks, key=lambda k: (int(masks[k].sum()), k == near))
            self._copy_runs(s, e, best, masks[best], hint - start)

    def _copy_runs(self, start: int, end: int, source: tuple[bool, int], mask: np.ndarray,
                   near_shift: int) -> None:
        from_output, shift = source
        data_shift = near_shift if from_output else shift  # DATA windows are in the old bytes
        edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
        pos = start
        for run_start, run_end in zip(edges[::2], edges[1::2], strict=True):
            if run_end - run_start < MIN_COPY:
                continue
            self._data_gap(pos, start + int(run_start), data_shift)
            src, length = start + int(run_start) + shift, int(run_end - run_start)
            if from_output:  # in pieces of at most -shift: each copies bytes already written
                for done in range(0, length, -shift):
                    self.copy_out(src + done, min(-shift, length - done))
            else:
                self.copy(src, length)
            pos = start + int(run_end)
        self._data_gap(pos, end, data_shift)

    def _data_gap(self, start: int, end: int, shift: int) -> None:
        if end > start:
            self.data(start, end, start + shift)
