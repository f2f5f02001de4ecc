"""Keep the C allocator's share of the agent's resident memory small (glibc only).

Three knobs, all optional tuning (nothing depends on them for correctness, and all
are no-ops where the C library is not glibc, e.g. musl):

* :func:`limit_malloc_arenas`: glibc gives each thread that allocates its own malloc
  arena (up to 8 per core), each keeping the memory it freed. Two are plenty for a
  daemon with a few threads. The systemd unit sets ``MALLOC_ARENA_MAX=2`` too (it then
  applies from the first allocation); an operator's value in a drop-in wins.
* :func:`release_freed_memory`: ``malloc_trim(0)`` hands the pages of freed heap
  chunks back to the OS. glibc keeps them mapped otherwise, so the transient buffers
  of start-up (the bundle read and verified, the model loaded and smoke-tested) and
  of a model swap would stay resident for the life of the process.
* :class:`HeapTrimmer`: the same ``malloc_trim(0)`` (without a garbage collection)
  while the pipeline works, at most every few seconds. Between batches glibc keeps the
  chunks a batch freed (feature arrays, runtime buffers, messages) scattered over its
  arenas; handing their pages back every 2 s keeps 1-3 MB less resident at 1,000
  lines/s for ~0.5 ms of CPU per trim. Only after work: an idle agent never trims.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import time
from collections.abc import Callable
from typing import Any

ARENA_ENV = "MALLOC_ARENA_MAX"
DEFAULT_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt parameter number in glibc's <malloc.h>


def process_libc() -> Any:
    """The C library this process runs on (None where ctypes cannot open it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None)  # the process's own symbols: its libc, whichever it is
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS, libc: Any = None,
                        environ: dict[str, str] | None = None) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` unless ``MALLOC_ARENA_MAX`` is set (the
    unit's or an operator's setting wins). True when the cap was applied here."""
    env = os.environ if environ is None else environ
    if ARENA_ENV in env:
        return False
    libc = process_libc() if libc is None else libc
    mallopt = getattr(libc, "mallopt", None)  # glibc only; musl has no arenas to cap
    if mallopt is None:
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


def release_freed_memory(libc: Any = None) -> bool:
    """Collect garbage, then return freed heap pages to the OS (``malloc_trim(0)``).

    True when glibc released something; False when nothing was freed or the C library
    has no ``malloc_trim`` (musl, other systems): then it does nothing."""
    libc = process_libc() if libc is None else libc
    trim = getattr(libc, "malloc_trim", None)
    gc.collect()
    if trim is None:
        return False
    return bool(trim(0))


def trim_heap(libc: Any = None) -> bool:
    """``malloc_trim(0)`` alone (no garbage collection: a full one over the agent's
    ~200,000 objects costs tens of milliseconds). False where there is no such call."""
    libc = process_libc() if libc is None else libc
    trim = getattr(libc, "malloc_trim", None)
    return False if trim is None else bool(trim(0))


def trim_due(now: float, last: float | None, interval_s: float) -> bool:
    """Whether work done at ``now`` should be followed by a trim: never when the interval
    is 0 (off), otherwise when ``interval_s`` passed since the last one (or none yet)."""
    if interval_s <= 0:
        return False
    return last is None or now - last >= interval_s


class HeapTrimmer:
    """Call :meth:`after_work` when a unit of work is done; it trims the C heap at most
    every ``interval_s`` seconds (0: never)."""

    def __init__(self, interval_s: float, libc: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._libc = process_libc() if libc is None else libc  # resolved once, not per trim
        self._clock = clock
        self._last: float | None = None
        self.trims = 0

    def after_work(self) -> bool:
        """True when it trimmed now."""
        now = self._clock()
        if not trim_due(now, self._last, self.interval_s):
            return False
        self._last = now
        self.trims += 1
        trim_heap(self._libc)
        return True
