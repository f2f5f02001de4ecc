"""One OpenBLAS kernel for every build, so the shipped bundle has the same bytes on any
x86-64 machine.

numpy's OpenBLAS is built with ``DYNAMIC_ARCH``: at load time it picks the matrix
kernels for the CPU it finds (Haswell's AVX2 code on most machines, SkylakeX's AVX-512
code on newer Intel and AMD Zen 4 servers). The kernels sum in different orders, so the
same seeded training gives weights that differ in the last bits, and the committed
``agent/data/default.nfb`` would be "stale" on one CI machine and fresh on the next
(seen: AMD EPYC picks SkylakeX and rebuilt other bytes; ``OPENBLAS_CORETYPE=Haswell`` on
the same machine gives the committed file). The kernel is chosen once, when the library
loads, so the choice has to be in the environment before numpy is imported:
:func:`pinned_env` gives that environment and :func:`reexec_pinned` restarts a build
script under it. Haswell's kernels are the ones every x86-64 CPU with AVX2 and FMA runs;
a CPU without them (or another architecture) keeps OpenBLAS's own choice, and its
builds are reproducible on machines of its kind only.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

CORETYPE = "Haswell"
_VAR = "OPENBLAS_CORETYPE"


def _cpu_runs_haswell_kernels(cpuinfo: str) -> bool:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return {"avx2", "fma"} <= flags
    return False


def pinned_env(env: Mapping[str, str] | None = None, cpuinfo: str | None = None,
               machine: str | None = None) -> dict[str, str] | None:
    """``env`` (default: this process's) with OpenBLAS pinned to :data:`CORETYPE`, or None
    when nothing is to change (already set, not x86-64, or a CPU without AVX2/FMA).
    ``cpuinfo`` and ``machine`` default to this machine's ``/proc/cpuinfo`` and
    ``platform.machine()``."""
    env = dict(os.environ if env is None else env)
    machine = platform.machine() if machine is None else machine
    if _VAR in env or machine not in ("x86_64", "AMD64"):
        return None
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    if not _cpu_runs_haswell_kernels(cpuinfo):
        return None
    env[_VAR] = CORETYPE
    return env


def reexec_pinned() -> None:
    """Restart this Python program with OpenBLAS pinned, unless nothing is to change.
    Call first thing in a build script's ``__main__`` (numpy may already be loaded by
    then: the restarted process loads it afresh under the pinned environment)."""
    env = pinned_env()
    if env is not None:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
