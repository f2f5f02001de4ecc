"""The fuzzer engine: structure-aware mutation of real seeds, run in-process.

Why our own loop and not atheris or hypothesis (docs/security-updates.md, "Fuzzing"):

- The formats we parse are guarded by checks that blind coverage feedback barely
  gets past (sha256 of the base, CRC-32, signatures), so the targets themselves do
  the structure work (re-signing mutated metadata with the real keys, fixing up
  the delta's CRC) and the engine only needs good byte-level mutators of *real*
  artifacts: bit flips, boundary integers written over fixed-width fields and
  varints, chunk deletion/duplication, crossover between seeds, and for text seeds
  numbers and nesting. hypothesis generates from strategies, not from seed files.
- atheris hands the process to libFuzzer (it exits when done), so the suite's quick
  pass would need a child process per target; ours is a function call that pytest
  runs per target, with the same code as ``benchmarks/fuzz.py``.
- Every case is reproducible from (target, seed, index), with no instrumentation.

A *crash* is any exception escaping ``target.run`` (``run`` catches the product's
documented refusal itself), a case running past the per-case deadline, or a case
after which the process's peak RSS grew past the bound. The input is saved under
the output directory as ``<target>/crash-<sha1>.bin`` with a ``.txt`` next to it.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import resource
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from tests.fuzz_targets.base import FuzzTarget

DEFAULT_DEADLINE_S = 2.0
DEFAULT_RSS_BOUND = 64 << 20  # peak RSS may grow this much over a run (after warm-up)
INTERESTING_INTS = (0, 1, 2, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 511, 512,
                    1023, 1024, 4095, 4096, 65535, 65536, (1 << 20) - 1, 1 << 20, (1 << 20) + 1,
                    (1 << 24), (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 40,
                    (1 << 62), (1 << 63) - 1, 1 << 63, (1 << 64) - 1)
_NUMBER = re.compile(rb"-?\d+(\.\d+)?([eE][-+]?\d+)?")


class CaseTimeout(BaseException):
    """Raised in the target by the per-case alarm (a BaseException: product code that
    catches ``Exception`` must not swallow it)."""


@dataclass
class Crash:
    target: str
    index: int
    kind: str  # exception | timeout | memory
    detail: str
    path: Path | None


@dataclass
class RunReport:
    target: str
    cases: int = 0
    seconds: float = 0.0
    crashes: list[Crash] = field(default_factory=list)
    rss_growth: int = 0  # bytes of peak RSS gained during the run (after warm-up)

    @property
    def rate(self) -> float:
        return self.cases / self.seconds if self.seconds else 0.0


def peak_rss() -> int:
    """Peak resident set size of this process in bytes (VmHWM, which
    :func:`reset_peak_rss` can lower; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) << 10
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10


def reset_peak_rss() -> None:
    """Lower the peak to the current RSS (Linux >= 4.0), so a run inside a process that
    peaked earlier (the test suite) still measures its own growth."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise CaseTimeout(f"case ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Mutator:
    """Byte-level mutations of real seeds; deterministic for a given ``random.Random``."""

    def __init__(self, seeds: list[bytes], max_len: int) -> None:
        if not seeds:
            raise ValueError("a fuzz target needs at least one seed")
        self.seeds = seeds
        self.max_len = max_len
        self.ops: list[Callable[[random.Random, bytearray], None]] = [
            self.flip_bit, self.set_byte, self.write_int, self.write_varint, self.delete,
            self.duplicate, self.insert_random, self.truncate, self.splice, self.number,
            self.nest, self.swap_chunks]

    def mutate(self, rng: random.Random) -> bytes:
        data = bytearray(rng.choice(self.seeds))
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
            rng.choice(self.ops)(rng, data)
        return bytes(data[:self.max_len])

    @staticmethod
    def _pos(rng: random.Random, data: bytearray) -> int:
        # Headers and op tables sit at the start: bias a third of positions there.
        if data and rng.random() < 0.33:
            return rng.randrange(min(len(data), 256))
        return rng.randrange(len(data) + 1)

    def flip_bit(self, rng: random.Random, data: bytearray) -> None:
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)

    def set_byte(self, rng: random.Random, data: bytearray) -> None:
        if data:
            pos = min(self._pos(rng, data), len(data) - 1)
            data[pos] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))

    def write_int(self, rng: random.Random, data: bytearray) -> None:
        """A boundary integer over a 1/2/4/8-byte field, either endianness."""
        width = rng.choice((1, 2, 4, 8))
        value = (rng.choice(INTERESTING_INTS) + rng.choice((0, 0, 0, -1, 1))) % (1 << 8 * width)
        raw = value.to_bytes(width, rng.choice(("little", "big")))
        pos = min(self._pos(rng, data), max(0, len(data) - width))
        data[pos:pos + width] = raw

    def write_varint(self, rng: random.Random, data: bytearray) -> None:
        """A LEB128 varint of a boundary value, replacing one (or inserted)."""
        value = rng.choice(INTERESTING_INTS)
        out = bytearray()
        while True:
            byte, value = value & 0x7F, value >> 7
            out.append(byte | (0x80 if value else 0))
            if not value:
                break
        pos = self._pos(rng, data)
        end = pos
        while end < len(data) and data[end] & 0x80 and end - pos < 10:
            end += 1
        data[pos:min(len(data), end + 1) if rng.random() < 0.7 else pos] = out

    def delete(self, rng: random.Random, data: bytearray) -> None:
        if data:
            pos = rng.randrange(len(data))
            del data[pos:pos + rng.choice((1, 2, 4, 8, 64, 512, 4096))]

    def duplicate(self, rng: random.Random, data: bytearray) -> None:
        if data and len(data) < self.max_len:
            pos = rng.randrange(len(data))
            chunk = data[pos:pos + rng.choice((1, 4, 16, 512, 4096))]
            at = rng.randrange(len(data) + 1)
            data[at:at] = chunk * rng.choice((1, 1, 2, 16))

    def insert_random(self, rng: random.Random, data: bytearray) -> None:
        at = self._pos(rng, data)
        data[at:at] = rng.randbytes(rng.choice((1, 2, 4, 8, 32)))

    def truncate(self, rng: random.Random, data: bytearray) -> None:
        if data:
            del data[rng.randrange(len(data)):]

    def splice(self, rng: random.Random, data: bytearray) -> None:
        """Crossover: a piece of another seed at the same offset."""
        other = rng.choice(self.seeds)
        if other and data:
            pos = rng.randrange(min(len(data), len(other)))
            length = rng.choice((4, 64, 512, 4096))
            data[pos:pos + length] = other[pos:pos + length]

    def number(self, rng: random.Random, data: bytearray) -> None:
        """For text seeds (JSON, TOML): a decimal number replaced by a boundary value."""
        found = list(_NUMBER.finditer(data[:1 << 16]))
        if found:
            m = rng.choice(found)
            value = rng.choice(INTERESTING_INTS) * rng.choice((1, 1, -1))
            text = rng.choice((str(value), f"{value}.5", "1e309", "-0", "NaN", "1" * 5000))
            data[m.start():m.end()] = text.encode()

    def nest(self, rng: random.Random, data: bytearray) -> None:
        """Deep nesting at a structural character (recursion limits of parsers)."""
        for _ in range(8):
            pos = rng.randrange(len(data)) if data else 0
            if pos < len(data) and data[pos:pos + 1] in (b"[", b"{", b":", b","):
                depth = rng.choice((64, 1000, 100_000))
                opener = rng.choice((b"[", b'{"a":'))
                data[pos + 1:pos + 1] = opener * depth
                return

    def swap_chunks(self, rng: random.Random, data: bytearray) -> None:
        if len(data) > 16:
            a, b = sorted(rng.sample(range(len(data)), 2))
            n = min(rng.choice((1, 4, 8, 32)), b - a)
            data[a:a + n], data[b:b + n] = data[b:b + n], data[a:a + n]


def _save(out_dir: Path, target: str, data: bytes, text: str) -> Path:
    folder = out_dir / target.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"crash-{hashlib.sha1(data).hexdigest()}.bin"
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(text)
    return path


def run_case(target: FuzzTarget, data: bytes, deadline_s: float) -> tuple[str, str] | None:
    """Feed one input; None if it was accepted or refused the documented way, else
    (kind, detail) of the crash."""
    started = time.perf_counter()
    try:
        with deadline(deadline_s):
            target.run(data)
    except CaseTimeout:
        return "timeout", traceback.format_exc()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:
        return "exception", traceback.format_exc()
    elapsed = time.perf_counter() - started
    if elapsed > deadline_s:  # a C call cannot be interrupted: measured instead
        return "timeout", f"case took {elapsed:.2f} s (deadline {deadline_s} s)"
    return None


def fuzz(target: FuzzTarget, cases: int, *, out_dir: Path, seed: int = 0,
         deadline_s: float = DEFAULT_DEADLINE_S, rss_bound: int = DEFAULT_RSS_BOUND,
         max_crashes: int = 20, progress: Callable[[RunReport], None] | None = None
         ) -> RunReport:
    """Run ``cases`` mutated inputs (the seeds themselves first) through ``target``."""
    with quiet_logs():
        return _fuzz(target, cases, out_dir=out_dir, seed=seed, deadline_s=deadline_s,
                     rss_bound=rss_bound, max_crashes=max_crashes, progress=progress)


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Refusals are logged as warnings by the product: millions of lines otherwise."""
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _fuzz(target: FuzzTarget, cases: int, *, out_dir: Path, seed: int, deadline_s: float,
          rss_bound: int, max_crashes: int, progress: Callable[[RunReport], None] | None
          ) -> RunReport:
    seeds = target.seeds()
    mutator = Mutator(seeds, target.max_len)
    report = RunReport(target.name)
    for data in seeds:  # warm-up: the seeds must pass, and caches fill before measuring
        failure = run_case(target, data, deadline_s * 5)
        if failure is not None:
            path = _save(out_dir, target.name, data, failure[1])
            report.crashes.append(Crash(target.name, -1, failure[0], failure[1], path))
    reset_peak_rss()
    baseline = peak_rss()
    started = time.perf_counter()
    for index in range(cases):
        data = mutator.mutate(random.Random(f"{target.name}/{seed}/{index}"))
        failure = run_case(target, data, deadline_s)
        if failure is None and peak_rss() - baseline > rss_bound:
            failure = ("memory", f"peak RSS grew {(peak_rss() - baseline) >> 20} MiB over the "
                       f"{rss_bound >> 20} MiB bound after this case")
            reset_peak_rss()  # report the next offender too, not every later case
            baseline = peak_rss()
        if failure is not None:
            path = _save(out_dir, target.name, data, failure[1])
            report.crashes.append(Crash(target.name, index, failure[0], failure[1], path))
            if len(report.crashes) >= max_crashes:
                break
        report.cases = index + 1
        if progress is not None and index % 10_000 == 9_999:
            report.seconds = time.perf_counter() - started
            progress(report)
    report.seconds = time.perf_counter() - started
    report.rss_growth = max(0, peak_rss() - baseline)
    return report
