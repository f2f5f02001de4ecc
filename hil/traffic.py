"""Device traffic: lines appended to a device's log at a steady rate.

Every line ends in `` #<n>`` (n counts up per device from 0), so that each result
can be traced back to the line it classifies and a line without a result is
noticed: that is how the rig proves no line was lost."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from hil.scenario import TrafficSpec
from nanomodel.corpus import generate

LINE_TAG = re.compile(r" #(\d+)$")


def base_lines(spec: TrafficSpec, sample: Path | None) -> list[str]:
    """The lines a device's traffic cycles through."""
    if spec.source == "sample":
        if sample is None:
            raise ValueError("source = sample needs a sample file")
        lines = [ln.strip() for ln in sample.read_text(encoding="utf-8").splitlines()]
        lines = [ln for ln in lines if ln]
        if not lines:
            raise ValueError(f"{sample}: the sample file has no lines")
        return lines
    return [e.text for e in generate(500, spec.seed)]


def tagged(text: str, n: int) -> str:
    return f"{text} #{n}"


def line_number(text: str) -> int | None:
    """The ``n`` of a line the rig wrote, from the text in a result."""
    m = LINE_TAG.search(text)
    return int(m.group(1)) if m else None


class TrafficWriter:
    """Writes ``lines_per_s`` lines a second through ``write`` (the device driver's
    ``append_lines``) while running; a paused writer writes nothing and does not catch
    up afterwards (a powered-off device makes no logs)."""

    def __init__(self, device_id: str, lines: list[str], lines_per_s: float,
                 write: Callable[[list[str]], None]) -> None:
        self.device_id = device_id
        self.lines = lines
        self.rate = lines_per_s
        self._write = write
        self.written = 0  # lines 0..written-1 are in the device's log
        self.written_at: list[float] = []  # wall-clock time each line was written
        self._run = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"traffic-{device_id}",
                                        daemon=True)

    def start(self) -> TrafficWriter:
        self._run.set()
        self._thread.start()
        return self

    def pause(self) -> None:
        with self._lock:  # returns only once no write is half done
            self._run.clear()

    def resume(self) -> None:
        self._run.set()

    @property
    def paused(self) -> bool:
        return not self._run.is_set()

    def _loop(self) -> None:
        credit = 0.0
        last = time.monotonic()
        while not self._stop.is_set():
            if not self._run.wait(0.1):
                last = time.monotonic()
                credit = 0.0
                continue
            time.sleep(0.02)
            now = time.monotonic()
            credit += (now - last) * self.rate
            last = now
            due = int(credit)
            if due == 0:
                continue
            credit -= due
            with self._lock:
                if self._stop.is_set() or not self._run.is_set():
                    continue
                start = self.written
                batch = [tagged(self.lines[(start + i) % len(self.lines)], start + i)
                         for i in range(due)]
                self._write(batch)
                stamp = time.time()
                self.written_at.extend([stamp] * due)
                self.written = start + due

    def stop(self) -> int:
        self._stop.set()
        self._run.set()
        if self._thread.is_alive():
            self._thread.join(5)
        return self.written
