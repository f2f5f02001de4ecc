"""Delta builder (server side): old bundle bytes + new bundle bytes -> ``.nfd`` delta.

Two encoders write the same format (:mod:`contract.delta`), and the smaller
result wins:

* **tensor-aware** — maps the new bundle's bytes to tar members and, through
  the manifest's :class:`~contract.bundle.TensorInfo` ranges, to tensors.
  A tensor whose bytes already exist (in the old bundle, or earlier in the new
  one: the same weights in ``model.onnx`` and ``model.tflite``) is a COPY /
  COPY_OUT; a tensor with the same name and length as an old one is a DIFF
  (XOR, difference or int8 rescale prediction, byte planes, zstd); everything
  else (tar headers, protobuf / flatbuffer glue, the manifest) is COPY where
  unchanged and otherwise zstd with the old bytes around the matching position
  as dictionary.
* **generic** — knows nothing about bundles: for each 1 MiB of the new bytes
  it finds where they came from, in the old bytes or earlier in the new ones
  (sampled anchors), copies the identical runs and zstd-patches the rest
  against a 2 MiB old window. It is zstd ``--patch-from`` with the reference
  bounded, so the device's memory stays bounded too.

Delta building is pure (bytes in, bytes out); :func:`verify_delta` runs the
device's own applier on temp files before a delta is published.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard
from pydantic import ValidationError

from contract.bundle import MANIFEST_NAME, MAX_MEMBERS, BundleManifest
from contract.delta import (
    MAX_REF,
    MAX_SEGMENT,
    CopyOp,
    CopyOutOp,
    DataOp,
    DeltaHeader,
    DiffOp,
    Op,
    apply_delta,
    encode_delta,
    zstd_params,
)
from contract.delta_transforms import (
    TRANSFORM_NONE,
    TRANSFORM_SCALE,
    TRANSFORM_SUB,
    TRANSFORM_XOR,
    WIDTHS,
    diff_segment,
    fit_ratio,
    split_planes,
)
from contract.tar_headers import TarHeaderError, check_plain_members

DEFAULT_LEVEL = 19
PROBE_LEVEL = 3  # cheap level used to pick between transforms before the real compression
MIN_COPY = 4096  # shorter identical runs are cheaper as matches inside a DATA op
SMALL_TENSOR = 256  # smaller tensors ride along with the glue around them (op overhead)
MIN_REF_SPAN = 8 << 10  # smallest old window given to a DATA op as dictionary
ANCHOR_SAMPLES = 8
SMALL_SEGMENT = 64 << 10  # below this, trying a zstd patch against DIFF costs little
ANCHOR_BYTES = 32


@dataclass(frozen=True)
class TensorSpan:
    """A tensor's bytes, in absolute offsets of the bundle."""

    file: str
    name: str
    width: int
    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class BundleLayout:
    anchors: dict[str, tuple[int, int, int]]  # member name -> (header, data start, data end)
    tensors: list[TensorSpan]  # sorted, non-overlapping


def _width(dtype: str) -> int:
    try:
        size = np.dtype(dtype).itemsize
    except (TypeError, ValueError):  # not a numpy dtype: treat the bytes as bytes
        return 1
    return size if size in WIDTHS else 1


def bundle_layout(data: bytes) -> BundleLayout | None:
    """Where members and tensors sit in a bundle's bytes; None when it is not a bundle."""
    try:
        check_plain_members(data, MAX_MEMBERS)  # before tarfile reads a header
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = tar.getmembers()
    except (TarHeaderError, tarfile.TarError, EOFError):
        return None
    if not members or members[0].name != MANIFEST_NAME:
        return None
    first = members[0]
    try:
        manifest = BundleManifest.model_validate_json(
            data[first.offset_data:first.offset_data + first.size])
    except ValidationError:
        return None
    anchors = {m.name: (m.offset, m.offset_data, m.offset_data + m.size) for m in members}
    spans: list[TensorSpan] = []
    for entry in manifest.files:
        if entry.path not in anchors:
            continue
        _, start, end = anchors[entry.path]
        for t in entry.tensors:
            if t.length >= SMALL_TENSOR and start + t.offset + t.length <= end:
                spans.append(TensorSpan(entry.path, t.name, _width(t.dtype), start + t.offset,
                                        start + t.offset + t.length))
    spans.sort(key=lambda s: s.start)
    tensors: list[TensorSpan] = []
    for span in spans:  # a manifest may lie about ranges; overlapping ones are not tensors
        if not tensors or span.start >= tensors[-1].end:
            tensors.append(span)
    return BundleLayout(anchors, tensors)


class _Encoder:
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


def _source_tensors(new: BundleLayout, old: BundleLayout) -> dict[TensorSpan, TensorSpan]:
    """Old tensor each new one is diffed against: same file and name, else same name."""
    by_file_name = {(t.file, t.name): t for t in old.tensors}
    by_name: dict[str, TensorSpan] = {}
    for t in old.tensors:
        by_name.setdefault(t.name, t)
    sources = {}
    for t in new.tensors:
        source = by_file_name.get((t.file, t.name)) or by_name.get(t.name)
        if source is not None:
            sources[t] = source
    return sources


def _hint(anchors: list[tuple[int, int]], pos: int) -> int:
    """Old offset matching new offset ``pos``: the nearest anchor at or before it, shifted."""
    b, a = max((anc for anc in anchors if anc[0] <= pos), default=(0, 0))
    return a + pos - b


def build_tensor_delta(old: bytes, new: bytes, level: int = DEFAULT_LEVEL) -> bytes | None:
    """The tensor-aware delta, or None when either side is not a bundle."""
    old_layout, new_layout = bundle_layout(old), bundle_layout(new)
    if old_layout is None or new_layout is None:
        return None
    enc = _Encoder(old, new, level)
    anchors = [(0, 0)]
    for name, (b_header, b_start, b_end) in new_layout.anchors.items():
        if name in old_layout.anchors:
            a_header, a_start, a_end = old_layout.anchors[name]
            anchors += [(b_header, a_header), (b_start, a_start), (b_end, a_end)]
    sources = _source_tensors(new_layout, old_layout)
    known: dict[bytes, tuple[str, int]] = {}
    for t in old_layout.tensors:
        known.setdefault(hashlib.sha256(old[t.start:t.end]).digest(), ("old", t.start))
    pos = 0
    for t in new_layout.tensors:
        enc.generic(pos, t.start, _hint(anchors, pos))
        digest = hashlib.sha256(new[t.start:t.end]).digest()
        where = known.setdefault(digest, ("new", t.start))
        source = sources.get(t)
        if source is not None and old[source.start:source.end] == new[t.start:t.end]:
            enc.copy(source.start, t.length)  # prefer the same place: neighbours merge
        elif where[0] == "old":
            enc.copy(where[1], t.length)
        elif where[1] != t.start:
            enc.copy_out(where[1], t.length)
        elif source is not None and source.length == t.length:
            enc.diff(t.start, t.end, source.start, t.width)
        elif source is not None:
            enc.data(t.start, t.end, source.start)
        else:
            enc.generic(t.start, t.end, _hint(anchors, t.start))
        if source is not None:
            anchors.append((t.end, source.end))
        pos = t.end
    enc.generic(pos, len(new), _hint(anchors, pos))
    return enc.delta()


def build_generic_delta(old: bytes, new: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """A delta that ignores the bundle structure (works for any two byte strings)."""
    enc = _Encoder(old, new, level)
    enc.generic(0, len(new), 0)
    return enc.delta()


def build_delta(old: bytes, new: bytes, level: int = DEFAULT_LEVEL) -> bytes:
    """The smaller of the tensor-aware and the generic delta from ``old`` to ``new``."""
    generic = build_generic_delta(old, new, level)
    aware = build_tensor_delta(old, new, level)
    return aware if aware is not None and len(aware) <= len(generic) else generic


def verify_delta(old: bytes, new: bytes, delta: bytes) -> None:
    """Apply ``delta`` with the device's applier; raises DeltaError unless it yields ``new``."""
    with tempfile.TemporaryDirectory(prefix="nanofleet-delta-") as tmp:
        base, patch, out = Path(tmp, "base.nfb"), Path(tmp, "delta.nfd"), Path(tmp, "out.nfb")
        base.write_bytes(old)
        patch.write_bytes(delta)
        apply_delta(base, patch, out, hashlib.sha256(new).hexdigest(), len(new))


def choose_delta(old: bytes, new: bytes, max_fraction: float,
                 level: int = DEFAULT_LEVEL) -> bytes | None:
    """A verified delta when it is smaller than ``max_fraction`` of the new bundle, else None."""
    if not 0 < max_fraction <= 1:
        raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction}")
    delta = build_delta(old, new, level)
    if len(delta) >= max_fraction * len(new):
        return None
    verify_delta(old, new, delta)
    return delta
