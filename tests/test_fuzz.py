"""The fuzz harness in the suite: a quick pass of every target, every crash ever found
replayed, and the engine itself shown to catch what it must catch.

The long runs (>= 100,000 cases per target) are ``benchmarks/fuzz.py``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from contract.delta import DataOp, encode_op
from tests.fuzz_targets import all_targets
from tests.fuzz_targets.base import FuzzTarget
from tests.support.fuzzer import fuzz, peak_rss, reset_peak_rss

QUICK_CASES = 200
REGRESSIONS = Path(__file__).parent / "fuzz_targets" / "regressions"
TARGETS = {t.name: t for t in all_targets()}


def regression_files() -> list[Path]:
    return sorted(p for p in REGRESSIONS.glob("*/*") if p.suffix == ".bin")


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_quick_pass(name: str, tmp_path: Path) -> None:
    report = fuzz(TARGETS[name], QUICK_CASES, out_dir=tmp_path, seed=int(time.time()) % 1000)
    details = "\n".join(f"{c.kind} at case {c.index} (saved {c.path}):\n{c.detail}"
                        for c in report.crashes)
    assert not report.crashes, f"{name}: {len(report.crashes)} crashes\n{details}"
    assert report.cases == QUICK_CASES


@pytest.mark.parametrize("path", regression_files(),
                         ids=[f"{p.parent.name}/{p.stem}" for p in regression_files()])
def test_saved_crash_stays_fixed(path: Path) -> None:
    """Each file is an input that once crashed the target named by its folder."""
    TARGETS[path.parent.name].run(path.read_bytes())


def _rle_bomb(produce: int, declared: int) -> bytes:
    out = bytearray([0xC0, 13 << 3]) + declared.to_bytes(8, "little")
    left = produce
    while left:
        n = min(128 << 10, left)
        left -= n
        out += ((n << 3) | (1 << 1) | (0 if left else 1)).to_bytes(3, "little") + b"\x00"
    return bytes(out)


@pytest.mark.parametrize("op", [
    DataOp(0, 0, 1000, _rle_bomb(1 << 30, 1 << 30)),
    DataOp(0, 1024, 1000, _rle_bomb(1000, 1 << 62)),
], ids=["declares-1GiB", "declares-2**62"])
def test_delta_bombs_found_by_review_stay_fixed(op: DataOp) -> None:
    """The decompression bombs of issue 8.3, as inputs of the delta-ops target: refused,
    and the process's peak RSS does not grow by what the frames declare."""
    data = bytes([0]) + encode_op(op) + bytes([0])
    TARGETS["ota.delta-ops"].run(data)  # builds the world: not part of the measurement
    reset_peak_rss()
    before = peak_rss()
    TARGETS["ota.delta-ops"].run(data)
    assert peak_rss() - before < 64 << 20


# --- the engine catches crashes, hangs and memory growth, and saves the input -------------

def _index_error(data: bytes) -> None:
    if data != b"seed":
        raise IndexError("parser bug")


def _hang(data: bytes) -> None:
    if data != b"seed":
        time.sleep(5)


_HOLD: list[bytes] = []


def _hoard(data: bytes) -> None:
    if data != b"seed":
        _HOLD.append(b"x" * (80 << 20))  # touched pages: resident


@pytest.mark.parametrize("run, kind, deadline_s", [(_index_error, "exception", 5.0),
                                                  (_hang, "timeout", 0.5),
                                                  (_hoard, "memory", 30.0)])
def test_engine_reports_and_saves_crashes(tmp_path: Path, run: object, kind: str,
                                          deadline_s: float) -> None:
    target = FuzzTarget(f"selftest.{kind}", lambda: [b"seed"], run)  # type: ignore[arg-type]
    try:
        report = fuzz(target, 300, out_dir=tmp_path, deadline_s=deadline_s,
                      rss_bound=64 << 20, max_crashes=1)
    finally:
        _HOLD.clear()
    assert [c.kind for c in report.crashes] == [kind]
    crash = report.crashes[0]
    assert crash.path is not None and crash.path.parent.name == f"selftest.{kind}"
    assert crash.path.read_bytes() and crash.path.with_suffix(".txt").read_text()
