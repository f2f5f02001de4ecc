"""The delta applier (the device side); the format itself is :mod:`contract.delta_format`.

A delta turns the exact bytes of an old bundle A into the exact bytes of a new
bundle B. The device checks ``sha256(A)`` before it starts and ``sha256(B)``
against the signed full target when it ends, so a delta can only ever produce
the one bundle the operators signed. The builder lives on the server
(:mod:`fleet_server.deltas`); the full specification is docs/delta-format.md.

The ``deltas`` role that signs delta files uses an online key, so a delta is
untrusted input: whatever its bytes, :func:`apply_delta` raises
:class:`DeltaError` (never ``MemoryError`` or a parser's own exception), keeps
memory bounded by the format's limits and the signed result length, and keeps
work bounded by :data:`MAX_OPS` and a reference budget proportional to the result.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from contract.delta_format import (
    COPY_PIECE,
    FORMAT_VERSION,
    HEADER,
    MAGIC,
    MAX_OPS,
    MAX_PAYLOAD,
    MAX_REF,
    MAX_SEGMENT,
    MAX_ZSTD_WINDOW,
    OP_COPY,
    OP_COPY_OUT,
    OP_DATA,
    OP_DIFF,
    OP_END,
    RATIO,
    ZSTD_FORMAT,
    CopyOp,
    CopyOutOp,
    DataOp,
    DeltaError,
    DeltaHeader,
    DeltaReader,
    DiffOp,
    Op,
    decompress_exact,
    encode_delta,
    encode_op,
    iter_ops,
    read_header,
    zstd_params,
)
from contract.delta_transforms import join_planes, undiff_segment
from contract.files import fsync_dir

__all__ = [
    "COPY_PIECE", "FORMAT_VERSION", "HEADER", "MAGIC", "MAX_OPS", "MAX_PAYLOAD", "MAX_REF",
    "MAX_SEGMENT", "MAX_ZSTD_WINDOW", "OP_COPY", "OP_COPY_OUT", "OP_DATA", "OP_DIFF", "OP_END",
    "RATIO", "REF_BUDGET_FACTOR", "ZSTD_FORMAT", "CopyOp", "CopyOutOp", "DataOp", "DeltaError",
    "DeltaHeader", "DeltaReader", "DeltaSummary", "DiffOp", "Op", "apply_delta",
    "decompress_exact", "describe_delta", "encode_delta", "encode_op", "iter_ops",
    "read_header", "zstd_params",
]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# DATA dictionaries read from the base, in total, at most this many times the result
# size (+ one window): the builder uses <= 2x (a window twice the segment, at least 8 KiB).
REF_BUDGET_FACTOR = 4


# --- the applier -----------------------------------------------------------------------

def _pread_exact(fd: int, length: int, offset: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise DeltaError(f"short read of {length} bytes at offset {offset}")
    return data


def _file_sha256(fd: int, size: int) -> str:
    digest = hashlib.sha256()
    for offset in range(0, size, COPY_PIECE):
        digest.update(_pread_exact(fd, min(COPY_PIECE, size - offset), offset))
    return digest.hexdigest()


class _Output:
    """The result being written: a temp file, its running sha256 and size."""

    def __init__(self, fd: int, limit: int) -> None:
        self.fd, self.limit, self.size = fd, limit, 0
        self.digest = hashlib.sha256()
        self.ref_budget = REF_BUDGET_FACTOR * limit + MAX_REF

    def spend_ref(self, index: int, length: int) -> None:
        """Dictionary bytes are work the result does not show: bound their total."""
        self.ref_budget -= length
        if self.ref_budget < 0:
            raise DeltaError(f"op {index}: DATA references add up to more than "
                             f"{REF_BUDGET_FACTOR}x the result size")

    def room(self, index: int, length: int) -> None:
        if length <= 0:
            raise DeltaError(f"op {index}: empty op")
        if self.size + length > self.limit:
            raise DeltaError(f"op {index}: output would pass the declared result size "
                             f"{self.limit} ({self.size} + {length})")

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.digest.update(data)
        self.size += len(data)


def _in_range(index: int, what: str, offset: int, length: int, size: int) -> None:
    if offset + length > size:
        raise DeltaError(f"op {index}: {what} range {offset}+{length} is past the end ({size})")


def _apply_op(index: int, op: Op, base_fd: int, base_size: int, out: _Output) -> None:
    out.room(index, op.length)
    if isinstance(op, CopyOp | CopyOutOp):
        source_fd, source_size = (base_fd, base_size) if isinstance(op, CopyOp) else (out.fd,
                                                                                  out.size)
        _in_range(index, type(op).__name__, op.src, op.length, source_size)
        for done in range(0, op.length, COPY_PIECE):
            out.write(_pread_exact(source_fd, min(COPY_PIECE, op.length - done), op.src + done))
    elif isinstance(op, DataOp):
        _in_range(index, "DATA reference", op.ref, op.ref_length, base_size)
        out.spend_ref(index, op.ref_length)
        ref = _pread_exact(base_fd, op.ref_length, op.ref) if op.ref_length else None
        out.write(decompress_exact(op.payload, op.length, ref, f"op {index} (DATA)"))
    else:
        _in_range(index, "DIFF", op.src, op.length, base_size)
        planes = decompress_exact(op.payload, op.length, None, f"op {index} (DIFF)")
        old = _pread_exact(base_fd, op.length, op.src)
        out.write(undiff_segment(join_planes(planes, op.width), old, op.transform, op.width,
                                 op.ratio))


def apply_delta(base_path: Path, delta_path: Path, out_path: Path, expected_sha256: str,
                max_output: int) -> None:
    """Rebuild the new bundle at ``out_path`` from ``base_path`` and a delta.

    Checks the base's size and sha256 first, bounds every op, and writes to a
    temporary file that is fsynced and renamed only once the result has the
    size and sha256 the caller expects (``expected_sha256`` comes from signed
    metadata). Raises :class:`DeltaError`; on error nothing is left at or near
    ``out_path``."""
    expected = expected_sha256.lower()
    if not _HEX64.match(expected):
        raise DeltaError(f"expected sha256 {expected_sha256!r} is not 64 hex digits")
    with open(delta_path, "rb") as delta, open(base_path, "rb") as base:
        reader = DeltaReader(delta)
        header = read_header(reader)
        if header.result_sha256 != expected:
            raise DeltaError(f"delta builds {header.result_sha256[:16]}…, not the expected "
                             f"{expected[:16]}…")
        if header.result_size > max_output:
            raise DeltaError(f"delta result of {header.result_size} bytes is over the "
                             f"{max_output} limit")
        base_fd = base.fileno()
        base_size = os.fstat(base_fd).st_size
        if base_size != header.base_size or _file_sha256(base_fd, base_size) != header.base_sha256:
            raise DeltaError(f"base {base_path.name} is not the bundle this delta applies to "
                             f"(want {header.base_size} bytes, sha256 "
                             f"{header.base_sha256[:16]}…)")
        fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.",
                                        suffix=".partial")
        try:
            out = _Output(fd, header.result_size)
            for index, op in enumerate(iter_ops(reader)):
                _apply_op(index, op, base_fd, base_size, out)
            if out.size != header.result_size:
                raise DeltaError(f"delta ended after {out.size} of {header.result_size} bytes")
            if out.digest.hexdigest() != expected:
                raise DeltaError("rebuilt bundle's sha256 does not match the expected one")
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp_name, out_path)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            os.unlink(tmp_name)
            raise
    fsync_dir(out_path.parent)


@dataclass
class DeltaSummary:
    """What a delta is made of: op counts, and output/payload bytes per op kind."""

    header: DeltaHeader
    ops: dict[str, int]
    output_bytes: dict[str, int]
    payload_bytes: dict[str, int]


def describe_delta(stream: BinaryIO) -> DeltaSummary:
    reader = DeltaReader(stream)
    summary = DeltaSummary(read_header(reader), {}, {}, {})
    for op in iter_ops(reader):
        kind = type(op).__name__.removesuffix("Op").upper()
        payload = len(op.payload) if isinstance(op, DataOp | DiffOp) else 0
        summary.ops[kind] = summary.ops.get(kind, 0) + 1
        summary.output_bytes[kind] = summary.output_bytes.get(kind, 0) + op.length
        summary.payload_bytes[kind] = summary.payload_bytes.get(kind, 0) + payload
    return summary
