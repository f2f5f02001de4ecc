"""The device side of deltas: the applier rebuilds bundles exactly and refuses hostile input.

Every refusal must raise DeltaError and leave nothing behind: no output file, no
temp file, and an existing file at the output path untouched."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import zstandard

from benchmarks.synthetic_bundles import full_fine_tune, head_only, make_model, pack
from contract.delta import (
    MAX_OPS,
    MAX_PAYLOAD,
    MAX_REF,
    MAX_SEGMENT,
    OP_COPY,
    OP_DATA,
    OP_DIFF,
    CopyOp,
    CopyOutOp,
    DataOp,
    DeltaError,
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
    diff_segment,
    join_planes,
    split_planes,
    undiff_segment,
)
from fleet_server.deltas import build_delta, build_generic_delta, build_tensor_delta

pytestmark = pytest.mark.unit


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def zstd(data: bytes, ref: bytes = b"") -> bytes:
    zdict = zstandard.ZstdCompressionDict(ref, dict_type=zstandard.DICT_TYPE_RAWCONTENT) \
        if ref else None
    return zstandard.ZstdCompressor(compression_params=zstd_params(3, len(data), len(ref)),
                                    dict_data=zdict).compress(data)


class Workdir:
    """base + delta files in a directory; ``apply`` returns the rebuilt bytes."""

    def __init__(self, root: Path, base: bytes) -> None:
        self.root = root
        self.base = root / "base.nfb"
        self.base.write_bytes(base)
        self.out = root / "out.nfb"

    def apply(self, delta: bytes, expected: str, max_output: int = 64 << 20) -> bytes:
        path = self.root / "update.nfd"
        path.write_bytes(delta)
        apply_delta(self.base, path, self.out, expected, max_output)
        return self.out.read_bytes()

    def refuse(self, delta: bytes, expected: str, match: str | None = None,
               max_output: int = 64 << 20) -> DeltaError:
        before = sorted(p.name for p in self.root.iterdir())
        with pytest.raises(DeltaError, match=match) as info:
            self.apply(delta, expected, max_output)
        after = sorted(p.name for p in self.root.iterdir() if p.name != "update.nfd")
        assert after == [n for n in before if n != "update.nfd"], "something was left behind"
        return info.value


@pytest.fixture(scope="module")
def bundles() -> tuple[bytes, bytes, bytes]:
    model = make_model(seed=3, buckets=1024, embed=32, hidden=32)
    return pack(model), pack(head_only(model)), pack(full_fine_tune(model))


@pytest.fixture(scope="module")
def full_delta(bundles: tuple[bytes, bytes, bytes]) -> bytes:
    old, _, new = bundles
    delta = build_tensor_delta(old, new, level=3)
    assert delta is not None
    return delta


def test_planes_and_transforms_are_inverse() -> None:
    data = bytes(range(256)) * 8
    old = bytes(reversed(data))
    for width in (1, 2, 4, 8):
        assert join_planes(split_planes(data, width), width) == data
        for transform in (TRANSFORM_XOR, TRANSFORM_SUB, TRANSFORM_NONE):
            d = diff_segment(data, old, transform, width)
            assert undiff_segment(d, old, transform, width) == data
    for ratio in (0.5, 1.0, 1.37, -3.0, 1e300):
        d = diff_segment(data, old, TRANSFORM_SCALE, 1, ratio)
        assert undiff_segment(d, old, TRANSFORM_SCALE, 1, ratio) == data
    rescaled = bytes(np.clip(np.rint(np.frombuffer(old, np.int8) * 1.5), -128, 127)
                     .astype(np.int8).view(np.uint8))
    assert set(diff_segment(rescaled, old, TRANSFORM_SCALE, 1, 1.5)) == {0}
    assert split_planes(bytes(range(8)), 4) == bytes([0, 4, 1, 5, 2, 6, 3, 7])


def test_applies_each_op_kind(tmp_path: Path) -> None:
    base = bytes(range(256)) * 64
    seg = bytes((b + 1) % 256 for b in base[:4096])
    planes = split_planes(diff_segment(seg, base[:4096], TRANSFORM_SUB, 4), 4)
    halved = diff_segment(base[:4096], base[:4096], TRANSFORM_SCALE, 1, 0.5)
    ops: list[Op] = [
        CopyOp(100, 500),
        DataOp(0, 1024, 300, zstd(base[10:310], base[:1024])),
        DiffOp(0, 4096, TRANSFORM_SUB, 4, zstd(planes)),
        CopyOutOp(0, 800),
        DataOp(0, 0, 5, zstd(b"hello")),
        DiffOp(0, 4096, TRANSFORM_SCALE, 1, zstd(halved), 0.5),
        DiffOp(8, 16, TRANSFORM_NONE, 8, zstd(split_planes(b"0123456789abcdef", 8))),
    ]
    result = (base[100:600] + base[10:310] + seg + base[100:600] + base[10:310] + b"hello"
              + base[:4096] + b"0123456789abcdef")
    delta = encode_delta(DeltaHeader(len(base), sha(base), len(result), sha(result)), ops)
    assert Workdir(tmp_path, base).apply(delta, sha(result)) == result


def test_round_trip_and_existing_output_replaced(tmp_path: Path, bundles: tuple[bytes, bytes,
                                                                               bytes]) -> None:
    old, head, _ = bundles
    work = Workdir(tmp_path, old)
    work.out.write_bytes(b"previous contents")
    assert work.apply(build_delta(old, head, level=3), sha(head)) == head


def test_every_truncation_is_refused(tmp_path: Path, bundles: tuple[bytes, bytes, bytes],
                                     full_delta: bytes) -> None:
    old, _, new = bundles
    work = Workdir(tmp_path, old)
    work.out.write_bytes(b"previous contents")
    cuts = sorted({*range(0, 140), *range(140, len(full_delta), max(1, len(full_delta) // 150))})
    for cut in cuts:
        work.refuse(full_delta[:cut], sha(new))
    assert work.out.read_bytes() == b"previous contents"


def test_every_flipped_byte_is_refused(tmp_path: Path, bundles: tuple[bytes, bytes, bytes],
                                       full_delta: bytes) -> None:
    """Every byte of a head-only delta; a sample of the bytes of a full fine-tune's."""
    old, head, new = bundles
    work = Workdir(tmp_path, old)
    head_delta = build_delta(old, head, level=3)
    for delta, target, positions in (
            (head_delta, head, range(len(head_delta))),
            (full_delta, new, sorted({*range(0, 200), *range(200, len(full_delta), 97),
                                      len(full_delta) - 1}))):
        for pos in positions:
            bad = bytearray(delta)
            bad[pos] ^= 0x5A
            work.refuse(bytes(bad), sha(target))


def test_trailing_bytes_and_header_fields(tmp_path: Path, bundles: tuple[bytes, bytes, bytes],
                                          full_delta: bytes) -> None:
    old, _, new = bundles
    work = Workdir(tmp_path, old)
    work.refuse(full_delta + b"\x00", sha(new), "trailing bytes after END")
    work.refuse(b"XXDELTA\n" + full_delta[8:], sha(new), "not a nanofleet delta")
    work.refuse(full_delta[:8] + b"\x02\x00" + full_delta[10:], sha(new), "version 2")
    work.refuse(full_delta[:10] + b"\x01\x00" + full_delta[12:], sha(new), "flags")
    work.refuse(full_delta, "ab" * 32, "not the expected")
    work.refuse(full_delta, "not-a-hash", "64 hex digits")
    work.refuse(full_delta, sha(new), "over the 1000 limit", max_output=1000)


def test_wrong_base_is_refused_before_writing(tmp_path: Path, bundles: tuple[bytes, bytes,
                                                                           bytes],
                                              full_delta: bytes) -> None:
    old, head, new = bundles
    (tmp_path / "a").mkdir()
    work = Workdir(tmp_path / "a", head)
    work.refuse(full_delta, sha(new), "not the bundle this delta applies to")
    (tmp_path / "b").mkdir()
    short = Workdir(tmp_path / "b", old[:-1])
    short.refuse(full_delta, sha(new), "not the bundle this delta applies to")


def hostile(base: bytes, result: bytes, ops: list[Op]) -> bytes:
    return encode_delta(DeltaHeader(len(base), sha(base), len(result), sha(result)), ops)


@pytest.mark.parametrize("ops, reason", [
    ([CopyOp(4000, 200)], "past the end"),
    ([CopyOp(2 ** 63 + 5, 10)], "past the end"),
    ([CopyOp(0, 0)], "empty op"),
    ([CopyOp(0, 100), CopyOutOp(50, 51)], "past the end"),
    ([CopyOp(0, 5000)], "pass the declared result size"),
    ([DataOp(4000, 200, 10, zstd(b"0123456789"))], "past the end"),
    ([DataOp(0, MAX_REF + 1, 10, b"")], "reference of"),
    ([DataOp(0, 0, MAX_SEGMENT + 1, b"")], "outside 1"),
    ([DataOp(0, 0, 10, zstd(b"0123456789" * 3))], "corrupt zstd|produced"),
    ([DataOp(0, 0, 30, zstd(b"0123456789"))], "corrupt zstd|produced"),
    ([DataOp(0, 0, 1000, zstd(bytes(MAX_SEGMENT)))], "corrupt zstd|produced"),
    ([DataOp(0, 0, 10, b"\x00" * 10)], "corrupt zstd"),
    ([DiffOp(4090, 16, TRANSFORM_XOR, 1, zstd(bytes(16)))], "past the end"),
    ([DiffOp(0, 16, 7, 1, zstd(bytes(16)))], "unknown DIFF transform"),
    ([DiffOp(0, 16, TRANSFORM_XOR, 3, zstd(bytes(16)))], "width 3"),
    ([DiffOp(0, 10, TRANSFORM_XOR, 4, zstd(bytes(10)))], "width 4"),
    ([DiffOp(0, 16, TRANSFORM_SCALE, 4, zstd(bytes(16)), 1.5)], "SCALE needs width 1"),
    ([DiffOp(0, 16, TRANSFORM_SCALE, 1, zstd(bytes(16)), float("nan"))], "finite ratio"),
    ([DiffOp(0, 16, TRANSFORM_SCALE, 1, zstd(bytes(16)), float("inf"))], "finite ratio"),
])
def test_hostile_ops_are_refused(tmp_path: Path, ops: list[Op], reason: str) -> None:
    base = bytes(range(256)) * 16
    result = base[:1000]
    Workdir(tmp_path, base).refuse(hostile(base, result, ops), sha(result), reason)


def test_hostile_encodings_are_refused(tmp_path: Path) -> None:
    base = bytes(4096)
    result = bytes(100)
    header = DeltaHeader(len(base), sha(base), len(result), sha(result)).pack()
    work = Workdir(tmp_path, base)
    work.refuse(header + b"\x09", sha(result), "unknown opcode 9")
    work.refuse(header + bytes([OP_COPY]) + b"\xff" * 11, sha(result), "varint longer")
    huge = b"\xff\xff\xff\xff\x0f"  # 2**32 - 1: a payload size far over the limit
    work.refuse(header + bytes([OP_DATA, 0, 0, 100]) + huge, sha(result),
                f"over the {MAX_PAYLOAD} limit")
    work.refuse(header + bytes([OP_DIFF, 0, 100, 0x11]) + huge, sha(result), "over the")
    work.refuse(hostile(base, result, [CopyOp(0, 50)]), sha(result), "ended after 50 of 100")
    good = hostile(base, result, [CopyOp(0, 100)])
    work.refuse(good[:-4] + bytes(4), sha(result), "CRC-32 mismatch")
    wrong = hostile(base, result, [DataOp(0, 0, 100, zstd(b"\x01" * 100))])
    work.refuse(wrong, sha(result), "sha256 does not match")


def test_memory_stays_bounded_on_a_16_mb_bundle(tmp_path: Path) -> None:
    """Peak Python-tracked memory while applying stays far below the bundle size."""
    model = make_model(seed=5, buckets=65536, embed=128)
    old, new = pack(model), pack(full_fine_tune(model))
    assert len(new) > 16_000_000
    work = Workdir(tmp_path, old)
    for build in (build_tensor_delta, build_generic_delta):
        delta = build(old, new, level=1)
        assert delta is not None
        (tmp_path / "update.nfd").write_bytes(delta)
        tracemalloc.start()
        try:
            apply_delta(work.base, tmp_path / "update.nfd", work.out, sha(new), len(new))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8_000_000, f"{build.__name__}: peak {peak} bytes"
        assert sha(work.out.read_bytes()) == sha(new)


def rle_frame(produce: int, declared: int | None, window_exponent: int = 13) -> bytes:
    """A hand-made magicless zstd frame of RLE blocks: ``produce`` zero bytes in 4-byte
    blocks of 128 KiB each (1 GiB in 32 KB), its header declaring ``declared`` bytes."""
    if declared is None:
        out = bytearray([0x00, window_exponent << 3])
    else:
        out = bytearray([0xC0, window_exponent << 3]) + declared.to_bytes(8, "little")
    left = produce
    while left:
        n = min(128 << 10, left)
        left -= n
        out += ((n << 3) | (1 << 1) | (0 if left else 1)).to_bytes(3, "little") + b"\x00"
    return bytes(out)


@pytest.mark.parametrize("op, reason", [
    pytest.param(DataOp(0, 0, 1000, rle_frame(1 << 30, 1 << 30)), "declares 1073741824",
                 id="data-declares-1GiB"),
    pytest.param(DiffOp(0, 1000, TRANSFORM_XOR, 1, rle_frame(1 << 30, 1 << 30)),
                 "declares 1073741824", id="diff-declares-1GiB"),
    pytest.param(DataOp(0, 1024, 1000, rle_frame(1000, 1 << 62)), "declares",
                 id="data-declares-2**62"),
    pytest.param(DataOp(0, 0, 1000, rle_frame(1 << 30, 0)), "declares 0", id="declares-0"),
    pytest.param(DataOp(0, 0, 1000, rle_frame(1 << 30, None)), "corrupt zstd",
                 id="no-size-decodes-to-1GiB"),
    pytest.param(DataOp(0, 0, 1000, rle_frame(1000, None, window_exponent=30)),
                 "too much memory", id="window-1TiB"),
    pytest.param(DataOp(0, 0, 1000, rle_frame(1000, None, window_exponent=17)),
                 "window of 134217728 bytes", id="window-128MiB"),
])
def test_decompression_bombs_are_refused_within_bounded_memory(tmp_path: Path, op: Op,
                                                               reason: str) -> None:
    """Finding 8.3: a frame is decompressed to the size its header declares. Memory while
    applying stays bounded by the op's length whatever the frame says."""
    base = bytes(range(256)) * 16
    result = base[:1000]
    delta = hostile(base, result, [op])
    assert len(delta) < 40_000
    tracemalloc.start()
    try:
        Workdir(tmp_path, base).refuse(delta, sha(result), reason)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000, f"peak {peak} bytes"


def test_op_count_and_reference_work_are_bounded(tmp_path: Path) -> None:
    base = bytes(range(256)) * 16
    result = base[:1] * (MAX_OPS + 1)
    many = [CopyOp(0, 1)] * (MAX_OPS + 1)
    Workdir(tmp_path, base).refuse(hostile(base, result, many), sha(result), f"more than {MAX_OPS}")
    # 1-byte DATA ops that each make the device read and load a 2 MiB dictionary
    big = bytes(range(256)) * (MAX_REF // 256)
    tiny = big[:3]
    refs = [DataOp(0, MAX_REF, 1, zstd(tiny[i:i + 1], big)) for i in range(3)]
    Workdir(tmp_path, big).refuse(hostile(big, tiny, refs), sha(tiny), "references add up")
