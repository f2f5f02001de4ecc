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

Where the parts live: the bundle's member and tensor map is
:mod:`fleet_server.bundle_layout`, the op writer both encoders use
:mod:`fleet_server.delta_encoder`; this module picks what each range of the new bundle
is built from, and keeps the entry points (:func:`build_delta`, :func:`choose_delta`).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from contract.delta import apply_delta
from fleet_server.bundle_layout import BundleLayout, TensorSpan, bundle_layout
from fleet_server.delta_encoder import DeltaEncoder

DEFAULT_LEVEL = 19


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
    enc = DeltaEncoder(old, new, level)
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
    enc = DeltaEncoder(old, new, level)
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
