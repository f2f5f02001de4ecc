"""The bounded line queue between sources and the model worker."""

from __future__ import annotations

import threading
import time
from collections import deque

from agent.sources.base import Line


class LineQueue:
    """Bounded FIFO. ``put`` never waits: sources that can re-read (files, journal) retry
    until there is room (back-pressure), others (MQTT) count a drop. ``get_batch`` takes
    many lines at once."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: deque[tuple[Line, float]] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, line: Line) -> bool:
        """False when full or closed; sources that may wait retry (Source.emit)."""
        with self._cond:
            if self._closed or len(self._items) >= self.maxsize:
                return False
            self._items.append((line, time.monotonic()))
            self._cond.notify_all()
            return True

    def get_batch(self, max_items: int, max_wait: float,
                  timeout: float) -> list[tuple[Line, float]]:
        """Up to ``max_items`` lines; waits up to ``timeout`` for the first line, then up
        to ``max_wait`` more for the batch to fill."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
                if not self._items:
                    return []
            if len(self._items) < max_items and max_wait > 0:
                deadline = time.monotonic() + max_wait
                while len(self._items) < max_items and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            n = min(max_items, len(self._items))
            batch = [self._items.popleft() for _ in range(n)]
            self._cond.notify_all()
            return batch

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
