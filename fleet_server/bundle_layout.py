"""Where a bundle's tar members and weight tensors sit in its bytes (:func:`bundle_layout`):
the map the tensor-aware delta builder (:mod:`fleet_server.deltas`) matches old and new
tensors by.

The fleet server parses with it every bundle it holds, operators' uploads included, so
the raw tar headers are walked (:func:`contract.tar_headers.check_plain_members`) before
``tarfile`` reads any: ``tarfile``'s pax parsing backtracks quadratically
(docs/security-updates.md). Anything that is not a bundle gives None (the builder then
uses its generic delta), and a manifest's tensor ranges are trusted only where they
stay inside their member and do not overlap.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from contract.bundle import MANIFEST_NAME, MAX_MEMBERS, BundleManifest
from contract.delta_transforms import WIDTHS
from contract.tar_headers import TarHeaderError, check_plain_members

SMALL_TENSOR = 256  # smaller tensors ride along with the glue around them (op overhead)


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
