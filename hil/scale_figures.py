"""Measuring a scale run: CPU per part of the rig, report rates, summed simulator
counters, and what machine it ran on (used by :mod:`hil.scale`)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import psutil


class CpuMeter:
    """CPU seconds (user + system) the rig's processes used from now until :meth:`used`."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.procs = {name: [psutil.Process(pid) for pid in pids]
                      for name, pids in groups.items()}
        self.start = {name: self._total(procs) for name, procs in self.procs.items()}
        self.t0 = time.monotonic()

    @staticmethod
    def _total(procs: list[psutil.Process]) -> float:
        total = 0.0
        for p in procs:
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    def used(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        result = {name: round(self._total(procs) - self.start[name], 2)
                  for name, procs in self.procs.items()}
        result["wall"] = round(wall, 2)
        return result


def peak_rate(samples: list[tuple[float, int]], window_s: float = 1.0) -> float:
    """Best rate over any span of at least ``window_s`` between two samples."""
    best, j = 0.0, 0
    for i in range(len(samples)):
        while j < i and samples[i][0] - samples[j + 1][0] >= window_s:
            j += 1
        span = samples[i][0] - samples[j][0]
        if span >= window_s:
            best = max(best, (samples[i][1] - samples[j][1]) / span)
    return best


def merge_stats(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum the per-process counters (dicts key by key, numbers as numbers)."""
    total: dict[str, Any] = {}
    for s in stats:
        for key, value in s.items():
            if isinstance(value, dict):
                into = total.setdefault(key, {})
                for k, v in value.items():
                    into[k] = into.get(k, 0) + v
            elif isinstance(value, bool):
                total[key] = total.get(key, True) and value
            elif isinstance(value, int | float):
                total[key] = (max if key.endswith("_max_s") else _add)(total.get(key, 0), value)
    total["work_s"] = round(total.get("work_s", 0.0), 3)
    return total


def _add(a: float, b: float) -> float:
    return a + b


def machine() -> dict[str, Any]:
    """What this ran on, for the record."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    return {"cpus": os.cpu_count(), "cpu": model, "memory_mib": mem,
            "python": sys.version.split()[0],
            # other work on the machine skews every figure: recorded with them
            "load_1m": round(os.getloadavg()[0], 2)}
