"""The bounded line queue between sources and the model worker."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

from agent.sources.base import Batching, Line


class LineQueue:
    """Bounded FIFO. ``put`` never waits: sources that can re-read (files, journal) retry
    until there is room (back-pressure), others (MQTT) count a drop. ``get_batch`` takes
    many lines at once."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        # Room only lines that cannot wait (MQTT sensor text) may take: a file or journal
        # backlog refills a full queue within milliseconds of each batch, and sensor lines
        # lost 33-85 % to it while it drained (review, December 2026).
        self.reserve = maxsize // 8
        self._items: deque[tuple[Line, float]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        # How many queued lines wake the waiting worker: 1 while it waits for a first
        # line, the batch size while it waits for a batch to fill. Waking it for every
        # line of a trickle only to find the batch still short costs a thread switch a line.
        self._wake_at = 1
        # How the worker batches (set by the pipeline); file sources size their reads by it.
        self.batching = Batching()
        # A read window (put_many) is queued: take what is there without waiting for more.
        self._windowed = False
        # Lines ever queued: the worker's count of lines done is measured against it
        # (Pipeline.drain).
        self.accepted = 0

    def put(self, line: Line, can_wait: bool = False) -> bool:
        """False when full or closed; sources that may wait retry (Source.emit), and
        leave :attr:`reserve` free for those that cannot."""
        limit = self.maxsize - self.reserve if can_wait else self.maxsize
        with self._cond:
            if self._closed or len(self._items) >= limit:
                return False
            self._items.append((line, time.monotonic()))
            self.accepted += 1
            if len(self._items) == 1 or len(self._items) >= self._wake_at:
                self._cond.notify_all()
            return True

    def put_many(self, lines: Sequence[Line], since: float) -> int:
        """Queue as many of ``lines`` as fit (0 when full or closed), stamped ``since``
        (when their source noticed them); one wake of the worker for all of them.

        The lines are a source's whole read window (it already waited for a batch's
        worth, see agent.sources.windows): the worker takes them at once rather than
        wait for ``min_items`` — a window that brought a few lines less than a batch
        (a writer's jitter, the end of a burst) would otherwise wait a second window."""
        with self._cond:
            if self._closed:
                return 0
            before = len(self._items)
            # Only sources that wait for room read windows: the reserve is not theirs.
            n = min(len(lines), self.maxsize - self.reserve - before)
            if n <= 0:
                return 0
            self._items.extend((line, since) for line in lines[:n])
            self.accepted += n
            self._windowed = True
            self._cond.notify_all()
            return n

    def get_batch(self, max_items: int, max_wait: float, timeout: float,
                  min_items: int | None = None,
                  take_windows: bool = True) -> list[tuple[Line, float]]:
        """Up to ``max_items`` lines; waits up to ``timeout`` for the first line, then
        until ``min_items`` (default ``max_items``) are queued, a source's read window
        is (see put_many; unless ``take_windows`` is False), or the oldest queued line
        has waited ``max_wait`` (counted from its stamp, when its source noticed it)."""
        want = max_items if min_items is None else max(1, min(min_items, max_items))
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
                if not self._items:
                    return []
            if len(self._items) < want and max_wait > 0:
                deadline = self._items[0][1] + max_wait
                self._wake_at = want
                try:
                    while (len(self._items) < want and not self._closed
                           and not (take_windows and self._windowed)):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                finally:
                    self._wake_at = 1
            n = min(max_items, len(self._items))
            batch = [self._items.popleft() for _ in range(n)]
            if not self._items:
                self._windowed = False
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
