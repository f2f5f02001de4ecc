"""Thread-safe counters and gauges, published on the metrics topic and by `query metrics`."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable


class Counters:
    """Monotonic counters (lines_in, lines_truncated, ...) and last-value gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._gauges: dict[str, float] = {}
        # Gauges computed only when read (a percentile per batch would cost a sort of
        # the whole window for every few lines; metrics are read every few seconds).
        self._derived: dict[str, Callable[[], float]] = {}

    def derive_gauge(self, name: str, compute: Callable[[], float]) -> None:
        """``name`` is ``compute()`` at the moment the gauges are read."""
        with self._lock:
            self._derived[name] = compute

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def set_gauge(self, name: str, value: float) -> None:
        with self._lock:
            self._gauges[name] = value

    def get(self, name: str) -> int:
        with self._lock:
            return self._counters.get(name, 0)

    def snapshot(self) -> tuple[dict[str, int], dict[str, float]]:
        with self._lock:
            counters, gauges, derived = (dict(self._counters), dict(self._gauges),
                                         dict(self._derived))
        gauges.update({name: compute() for name, compute in derived.items()})
        return counters, gauges


class LatencyWindow:
    """Recent latencies (seconds) for p50/p99 without unbounded memory."""

    def __init__(self, size: int = 2048) -> None:
        self._lock = threading.Lock()
        self._values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append(seconds)

    def add_many(self, values: list[float]) -> None:
        with self._lock:
            self._values.extend(values)

    def percentile(self, q: float) -> float:
        with self._lock:
            values = sorted(self._values)
        if not values:
            return 0.0
        idx = min(len(values) - 1, max(0, round(q / 100.0 * (len(values) - 1))))
        return values[idx]


def resident_high_water() -> float | None:
    """The most resident memory this process has had (``VmHWM``) since it started or since
    :func:`reset_resident_high_water`; None where /proc cannot say. Unlike a sample of
    :func:`resident_bytes` it sees memory taken and given back between two looks."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_resident_high_water() -> bool:
    """Start :func:`resident_high_water` again from the resident memory now (Linux >= 4.0:
    ``5`` to ``/proc/self/clear_refs``). False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def resident_bytes() -> float | None:
    """This process's resident memory (Linux /proc), or None where there is no /proc."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return float(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return None
