"""An in-test LineSink (our own interface): a list with a lock and an optional capacity."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from agent.sources.base import Batching, Line

# How long a wait for another thread (a source's reader, a broker's delivery, the
# pipeline's commit) may take before the test fails: CI runs two workers on a loaded
# two-core box, where 10 s was not always enough. Only a failing wait takes this long.
WAIT_S = 30.0


class ListSink:
    def __init__(self, capacity: int | None = None, batching: Batching | None = None) -> None:
        self.lines: list[Line] = []
        self.capacity = capacity
        self.cond = threading.Condition()
        self.refused = 0
        self.batching = batching or Batching()
        self.puts = 0  # calls that queued something: one per read for a file source

    def put(self, line: Line, can_wait: bool = False) -> bool:
        with self.cond:
            if self.capacity is not None and len(self.lines) >= self.capacity:
                self.refused += 1
                return False
            self.lines.append(line)
            self.cond.notify_all()
            return True

    def put_many(self, lines: Sequence[Line], since: float) -> int:
        with self.cond:
            room = len(lines) if self.capacity is None else self.capacity - len(self.lines)
            n = max(0, min(room, len(lines)))
            if n < len(lines):
                self.refused += 1
            if n:
                self.lines.extend(lines[:n])
                self.puts += 1
                self.cond.notify_all()
            return n

    def texts(self) -> list[str]:
        with self.cond:
            return [ln.text for ln in self.lines]

    def last_checkpoint(self) -> str | None:
        with self.cond:
            return self.lines[-1].checkpoint if self.lines else None

    def wait_for(self, pred: Callable[[list[Line]], bool], timeout: float = WAIT_S) -> list[Line]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = [ln.text for ln in self.lines[-5:]]
                    raise TimeoutError(f"condition not met; {len(self.lines)} lines, last {tail}")
                self.cond.wait(min(left, 0.1))
            return list(self.lines)

    def wait_count(self, n: int, timeout: float = WAIT_S) -> list[str]:
        return [ln.text for ln in self.wait_for(lambda lines: len(lines) >= n, timeout)]


def wait_until(pred: Callable[[], bool], timeout: float = WAIT_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout} s")
        time.sleep(0.01)
