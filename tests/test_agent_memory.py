"""agent/memory.py: glibc's allocator knobs, real on this (glibc) machine, inert elsewhere."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from agent.memory import (
    HeapTrimmer,
    limit_malloc_arenas,
    process_libc,
    release_freed_memory,
    trim_due,
    trim_heap,
)

ROOT = Path(__file__).resolve().parents[1]


def test_release_freed_memory_hands_fragmented_heap_pages_back() -> None:
    """64 KiB chunks (below glibc's mmap threshold: they live in the heap), every
    eighth kept so the freed ones cannot be trimmed from the heap's top by free()."""
    script = textwrap.dedent("""
        import os
        from agent.memory import release_freed_memory

        def rss_mib():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

        chunks = [b"x" * 65536 for _ in range(1600)]  # 100 MiB, touched
        kept = chunks[::8]
        del chunks
        before = rss_mib()
        released = release_freed_memory()
        print(before, rss_mib(), released, len(kept))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, check=True).stdout.split()
    before, after, released = float(out[0]), float(out[1]), out[2]
    assert released == "True"
    assert before - after > 60, (before, after)  # ~87 MiB of the 100 were freed chunks


class _LibcWithout:
    """A C library without glibc's malloc extensions (musl has neither function)."""


class _RecordingLibc:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


def test_without_glibc_both_knobs_do_nothing() -> None:
    assert release_freed_memory(libc=_LibcWithout()) is False
    assert limit_malloc_arenas(libc=_LibcWithout(), environ={}) is False


def test_arena_cap_defers_to_the_environment() -> None:
    """The unit's (or an operator's) MALLOC_ARENA_MAX wins; without it, two arenas."""
    libc = _RecordingLibc()
    assert limit_malloc_arenas(libc=libc, environ={"MALLOC_ARENA_MAX": "4"}) is False
    assert libc.calls == []
    assert limit_malloc_arenas(libc=libc, environ={}) is True
    assert libc.calls == [(-8, 2)]  # M_ARENA_MAX from glibc's <malloc.h>
    # and the real glibc of this machine accepts it
    assert process_libc() is not None
    assert limit_malloc_arenas(environ={}) is True


def test_trim_rule() -> None:
    assert trim_due(100.0, None, 2.0)  # the first batch trims
    assert not trim_due(101.9, 100.0, 2.0)
    assert trim_due(102.0, 100.0, 2.0)
    assert not trim_due(1e9, None, 0)  # 0: off
    assert not trim_due(1e9, 100.0, 0)


class _Trims:
    """A C library that records malloc_trim calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(pad)
        return 1


def test_heap_trimmer_trims_at_most_once_per_interval() -> None:
    libc, now = _Trims(), [0.0]
    trimmer = HeapTrimmer(2.0, libc=libc, clock=lambda: now[0])
    done = []
    for step in range(50):  # 5 s of batches every 100 ms
        now[0] = step * 0.1
        done.append(trimmer.after_work())
    assert libc.calls == [0, 0, 0]  # at 0, 2.0 and 4.0 s
    assert [round(i * 0.1, 1) for i, d in enumerate(done) if d] == [0.0, 2.0, 4.0]
    assert trimmer.trims == 3
    off = HeapTrimmer(0, libc=libc, clock=lambda: now[0])
    assert not any(off.after_work() for _ in range(10))
    assert len(libc.calls) == 3


def test_trim_heap_without_glibc_does_nothing() -> None:
    assert trim_heap(libc=_LibcWithout()) is False
    assert HeapTrimmer(1.0, libc=_LibcWithout()).after_work() is True  # due, harmless


def test_trim_heap_returns_freed_pages_on_glibc() -> None:
    """The real call, as the pipeline makes it (no garbage collection first)."""
    script = textwrap.dedent("""
        import os
        from agent.memory import trim_heap

        def rss_mib():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

        chunks = [b"x" * 65536 for _ in range(800)]  # 50 MiB in the heap, touched
        kept = chunks[::8]
        del chunks
        before = rss_mib()
        released = trim_heap()
        print(released, before - rss_mib(), len(kept))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, check=True).stdout.split()
    assert out[0] == "True"
    assert float(out[1]) > 30, out  # ~43 of the 50 MiB were freed chunks
