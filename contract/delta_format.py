"""The delta format (``.nfd``): layout, ops, encoder and the bounded reader.

The applier (the device side) is :mod:`contract.delta`, which re-exports all of this.

A delta turns the exact bytes of an old bundle A into the exact bytes of a new
bundle B. The device checks ``sha256(A)`` before it starts and ``sha256(B)``
against the signed full target when it ends, so a delta can only ever produce
the one bundle the operators signed. The builder lives on the server
(:mod:`fleet_server.deltas`); the full specification is docs/delta-format.md.

Layout (fixed-size integers little-endian; ``v`` = unsigned LEB128 varint)::

    header  magic "NFDELTA\\n" | version u16 | flags u16 (0)
            | base size u64 | base sha256 [32] | result size u64 | result sha256 [32]
    ops     opcode u8, then the fields of that op; each op appends bytes to B
    END     opcode 0, CRC-32 u32 of every byte before it, then end of file

    COPY      src v, len v                  B += A[src:src+len]
    COPY_OUT  src v, len v                  B += B[src:src+len] (already written)
    DATA      ref v, ref_len v, len v, n v, payload[n]
              B += zstd_decompress(payload, dictionary=A[ref:ref+ref_len])
    DIFF      src v, len v, mode u8 (transform << 4 | width), [ratio f64: SCALE only],
              n v, payload[n]
              d = unsplit_planes(zstd_decompress(payload), width)
              B += A[src:src+len] XOR d                  (transform 1, XOR)
              B += A[src:src+len] + d                    (2, SUB: uint of `width` bytes)
              B += clip(rint(A[src:src+len] * ratio)) + d  (3, SCALE: int8, width 1)
              B += d                                     (4, NONE: planes only)

Payloads are magicless zstd frames without size or checksum (the op gives the
length, the final sha256 the integrity). The CRC-32 trailer is not security: it
tells a damaged file from a wrong base, even when the damage would not change
the output. Every op is bounded (``len`` and ``ref_len`` of DATA/DIFF, payload sizes,
at most :data:`MAX_OPS` ops), so the applier holds at most one segment, one reference
window and one payload in memory, whatever the size of the bundle; COPY streams in
pieces. Everything here reads untrusted bytes: it raises :class:`DeltaError` and
nothing else for any input (the fuzz target ``delta.apply`` checks that).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import zstandard

from contract.delta_transforms import (
    TRANSFORM_SCALE,
    TRANSFORMS,
    WIDTHS,
)

MAGIC = b"NFDELTA\n"
FORMAT_VERSION = 1
MAX_SEGMENT = 1 << 20  # largest output of one DATA or DIFF op
MAX_REF = 2 << 20  # largest zstd reference window (old bytes used as dictionary)
MAX_PAYLOAD = MAX_SEGMENT + (64 << 10)  # zstd's worst-case expansion of MAX_SEGMENT is far below
MAX_ZSTD_WINDOW = 1 << 23  # no frame we write needs more; refuse ones that ask for more
COPY_PIECE = 1 << 20  # COPY/COPY_OUT stream through a buffer of this size
MAX_OPS = 1 << 18  # real deltas have tens of ops; a 64 MiB bundle in 4 KiB copies needs 32 Ki

OP_END, OP_COPY, OP_COPY_OUT, OP_DATA, OP_DIFF = 0, 1, 2, 3, 4

HEADER = struct.Struct("<8sHHQ32sQ32s")
RATIO = struct.Struct("<d")
ZSTD_FORMAT = zstandard.FORMAT_ZSTD1_MAGICLESS


class DeltaError(ValueError):
    """A delta cannot be applied; the message says why (nothing is left behind)."""


@dataclass(frozen=True)
class DeltaHeader:
    base_size: int
    base_sha256: str
    result_size: int
    result_sha256: str

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, FORMAT_VERSION, 0, self.base_size,
                           bytes.fromhex(self.base_sha256), self.result_size,
                           bytes.fromhex(self.result_sha256))

    @classmethod
    def parse(cls, raw: bytes) -> DeltaHeader:
        if len(raw) < HEADER.size:
            raise DeltaError(f"delta truncated: header needs {HEADER.size} bytes, got {len(raw)}")
        magic, version, flags, base_size, base_sha, result_size, result_sha = HEADER.unpack(raw)
        if magic != MAGIC:
            raise DeltaError(f"not a nanofleet delta (magic {magic!r})")
        if version != FORMAT_VERSION:
            raise DeltaError(f"delta format version {version} is not supported "
                             f"(this applier reads version {FORMAT_VERSION})")
        if flags != 0:
            raise DeltaError(f"delta header flags {flags:#x} are unknown")
        return cls(base_size, base_sha.hex(), result_size, result_sha.hex())


@dataclass(frozen=True)
class CopyOp:
    """Bytes taken unchanged from the old bundle."""

    src: int
    length: int


@dataclass(frozen=True)
class CopyOutOp:
    """Bytes repeated from earlier in the new bundle (e.g. a tensor in two model files)."""

    src: int
    length: int


@dataclass(frozen=True)
class DataOp:
    """New bytes, zstd-compressed with an old-bundle window as raw-content dictionary."""

    ref: int
    ref_length: int
    length: int
    payload: bytes


@dataclass(frozen=True)
class DiffOp:
    """A changed tensor segment: zstd of the byte planes of its difference to the old one
    (see :mod:`contract.delta_transforms`; ``ratio`` only for SCALE)."""

    src: int
    length: int
    transform: int
    width: int
    payload: bytes
    ratio: float = 0.0


Op = CopyOp | CopyOutOp | DataOp | DiffOp


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_op(op: Op) -> bytes:
    if isinstance(op, CopyOp | CopyOutOp):
        code = OP_COPY if isinstance(op, CopyOp) else OP_COPY_OUT
        return bytes([code]) + _varint(op.src) + _varint(op.length)
    if isinstance(op, DataOp):
        return b"".join([bytes([OP_DATA]), _varint(op.ref), _varint(op.ref_length),
                         _varint(op.length), _varint(len(op.payload)), op.payload])
    ratio = RATIO.pack(op.ratio) if op.transform == TRANSFORM_SCALE else b""
    return b"".join([bytes([OP_DIFF]), _varint(op.src), _varint(op.length),
                     bytes([op.transform << 4 | op.width]), ratio, _varint(len(op.payload)),
                     op.payload])


def encode_delta(header: DeltaHeader, ops: list[Op]) -> bytes:
    body = b"".join([header.pack(), *(encode_op(op) for op in ops), bytes([OP_END])])
    return body + zlib.crc32(body).to_bytes(4, "little")


# --- parsing ---------------------------------------------------------------------------

class DeltaReader:
    """Reads a delta stream exactly, keeping the CRC-32 of every byte read."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.crc = stream, 0

    def read(self, n: int, what: str) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise DeltaError(f"delta truncated in {what}: wanted {n} bytes, got {len(data)}")
        self.crc = zlib.crc32(data, self.crc)
        return data

    def varint(self, what: str) -> int:
        value = 0
        for shift in range(0, 64, 7):
            byte = self.read(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise DeltaError(f"{what}: varint longer than 64 bits")


def read_header(reader: DeltaReader) -> DeltaHeader:
    return DeltaHeader.parse(reader.read(HEADER.size, "header"))


def iter_ops(reader: DeltaReader) -> Iterator[Op]:
    """Ops up to END, each checked against the format's fixed bounds (not the bundles)."""
    index = 0
    while True:
        where = f"op {index}"
        code = reader.read(1, where)[0]
        if code == OP_END:
            crc = reader.crc
            if int.from_bytes(reader.read(4, "CRC-32 trailer"), "little") != crc:
                raise DeltaError("delta is damaged: CRC-32 mismatch")
            if reader.stream.read(1):
                raise DeltaError(f"trailing bytes after END ({where})")
            return
        if code in (OP_COPY, OP_COPY_OUT):
            src, length = reader.varint(where), reader.varint(where)
            yield CopyOp(src, length) if code == OP_COPY else CopyOutOp(src, length)
        elif code == OP_DATA:
            ref, ref_length = reader.varint(where), reader.varint(where)
            length, size = reader.varint(where), reader.varint(where)
            if ref_length > MAX_REF:
                raise DeltaError(f"{where}: DATA reference of {ref_length} bytes is over "
                                 f"the {MAX_REF} limit")
            _check_segment(index, "DATA", length, size)
            yield DataOp(ref, ref_length, length, reader.read(size, f"{where} payload"))
        elif code == OP_DIFF:
            src, length = reader.varint(where), reader.varint(where)
            mode = reader.read(1, where)[0]
            transform, width = mode >> 4, mode & 0x0F
            if transform not in TRANSFORMS:
                raise DeltaError(f"{where}: unknown DIFF transform {transform}")
            if width not in WIDTHS or length % width:
                raise DeltaError(f"{where}: DIFF width {width} does not fit length {length}")
            ratio = 0.0
            if transform == TRANSFORM_SCALE:
                (ratio,) = RATIO.unpack(reader.read(RATIO.size, where))
                if width != 1 or not math.isfinite(ratio):
                    raise DeltaError(f"{where}: SCALE needs width 1 and a finite ratio")
            size = reader.varint(where)
            _check_segment(index, "DIFF", length, size)
            yield DiffOp(src, length, transform, width, reader.read(size, f"{where} payload"),
                         ratio)
        else:
            raise DeltaError(f"{where}: unknown opcode {code}")
        index += 1
        if index > MAX_OPS:
            raise DeltaError(f"more than {MAX_OPS} ops: not a delta this format allows")


def _check_segment(index: int, kind: str, length: int, payload_size: int) -> None:
    if not 0 < length <= MAX_SEGMENT:
        raise DeltaError(f"op {index}: {kind} length {length} is outside 1..{MAX_SEGMENT}")
    if payload_size > MAX_PAYLOAD:
        raise DeltaError(f"op {index}: {kind} payload of {payload_size} bytes is over "
                         f"the {MAX_PAYLOAD} limit")


def zstd_params(level: int, source_size: int,
                dict_size: int) -> zstandard.ZstdCompressionParameters:
    """How the builder writes payload frames (magicless, no size, no checksum)."""
    return zstandard.ZstdCompressionParameters.from_level(
        level, source_size=source_size, dict_size=dict_size, format=ZSTD_FORMAT,
        write_checksum=0, write_content_size=0, write_dict_id=0)


def decompress_exact(payload: bytes, length: int, dictionary: bytes | None, what: str) -> bytes:
    """One zstd frame that must produce exactly ``length`` bytes (never more is allocated).

    python-zstandard's ``decompress`` allocates the content size a frame header
    *declares*, whatever ``max_output_size`` says: a 32 KB frame declaring 1 GiB
    would allocate 1 GiB. So the frame header is read first and a declared size
    other than ``length`` is refused; without one, ``max_output_size`` is the
    buffer and a frame that decodes to more fails."""
    try:
        frame = zstandard.get_frame_parameters(payload, format=ZSTD_FORMAT)
    except zstandard.ZstdError as exc:
        raise DeltaError(f"{what}: corrupt zstd frame header ({exc})") from None
    if frame.content_size not in (zstandard.CONTENTSIZE_UNKNOWN, length):
        raise DeltaError(f"{what}: zstd frame declares {frame.content_size} bytes, "
                         f"op says {length}")
    if frame.window_size > MAX_ZSTD_WINDOW:
        raise DeltaError(f"{what}: zstd window of {frame.window_size} bytes is over the "
                         f"{MAX_ZSTD_WINDOW} limit")
    try:
        zdict = (zstandard.ZstdCompressionDict(dictionary, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
                 if dictionary else None)
        decompressor = zstandard.ZstdDecompressor(dict_data=zdict, format=ZSTD_FORMAT,
                                                  max_window_size=MAX_ZSTD_WINDOW)
        out = decompressor.decompress(payload, max_output_size=length, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise DeltaError(f"{what}: corrupt zstd payload ({exc})") from None
    if len(out) != length:
        raise DeltaError(f"{what}: zstd produced {len(out)} bytes, op says {length}")
    return out
