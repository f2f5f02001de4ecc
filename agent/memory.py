"""Keep the C allocator's share of the agent's resident memory small (glibc only).

Two knobs, both optional tuning (nothing depends on them for correctness, and both
are no-ops where the C library is not glibc, e.g. musl):

* :func:`limit_malloc_arenas`: glibc gives each thread that allocates its own malloc
  arena (up to 8 per core), each keeping the memory it freed. Two are plenty for a
  daemon with a few threads. The systemd unit sets ``MALLOC_ARENA_MAX=2`` too (it then
  applies from the first allocation); an operator's value in a drop-in wins.
* :func:`release_freed_memory`: ``malloc_trim(0)`` hands the pages of freed heap
  chunks back to the OS. glibc keeps them mapped otherwise, so the transient buffers
  of start-up (the bundle read and verified, the model loaded and smoke-tested) and
  of a model swap would stay resident for the life of the process.
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
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
