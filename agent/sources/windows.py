"""Read windows: when a source that can choose when to read (a followed file) reads.

Every read, batch, commit and publish has a fixed cost that dominates at low rates, so
a file source does not read on every write: a write wakes it, and it waits a *read
window* (more lines may be on their way), then reads everything at once. The window
is sized so that one read brings about one batch (:class:`agent.sources.base.Batching`).
:func:`read_window` is the rule (pure); :class:`ReadWindows` keeps one source's state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from agent.sources.base import Batching

# Where a growing window starts when read_coalesce_ms is 0 (else it would stay at 0).
_GROW_FROM_S = 0.01
# During a long window, look (fstat) once whether the file grows faster than the
# window assumed, at read_coalesce_ms (at least this) into it.
EARLY_CHECK_MIN_S = 0.01


def read_window(batching: Batching, floor_s: float, lines: int, elapsed_s: float,
                quiet_s: float) -> float:
    """How long to wait after new data is noticed before reading it (seconds).

    The last read brought ``lines`` lines ``elapsed_s`` after its data was noticed: the
    first of them woke us, the others came at about ``(lines - 1) / elapsed_s`` lines/s.
    Wait as long as ``batching.min_lines`` take at that rate, at least ``floor_s`` and at
    most ``batching.max_wait_s``: a trickle is read once per ``max_wait_s`` (one batch,
    one wake-up), a steady stream just often enough to fill batches (low latency).
    After ``quiet_s`` (since that read) longer than a whole window the last rate says
    nothing: read after ``floor_s`` and learn the rate again, so that a stream starting
    after a quiet spell is not held a whole window (and a lone line is not either).
    A window that brought one line (or none: a writer that paused) doubles the next
    rather than jumping to the longest, so a short pause in a fast stream costs its
    lines at most twice the window they had."""
    ceiling = max(floor_s, batching.max_wait_s)
    if quiet_s > ceiling:
        return floor_s
    if lines <= 1:
        return min(ceiling, 2 * max(elapsed_s, floor_s, _GROW_FROM_S))
    fill = elapsed_s * batching.min_lines / (lines - 1)
    return min(ceiling, max(floor_s, fill))


class ReadWindows:
    """One source's windows: ``open`` when a change is noticed (returns how long to
    wait), ``sleep`` that long, ``reading`` when the read begins, ``close`` when it
    has caught up. ``since`` stamps the window's lines: the pipeline counts their batch
    deadline from when they were noticed, not from when they were read."""

    def __init__(self, floor_s: float) -> None:
        self.floor_s = floor_s
        self.since: float | None = None  # the open window's start (monotonic)
        self.count = 0                   # windows read so far
        self._base_lines = 0
        self._base_pos = 0
        self._read_at = -1e9  # long ago: the first window is a short one
        self._lines = 0       # what the last window's read brought ...
        self._elapsed = 0.0   # ... and how long after its start it began
        self._line_bytes = 100.0  # average line length seen (to count waiting lines)

    def open(self, batching: Batching, lines_read: int, read_pos: int) -> float:
        self.since = time.monotonic()
        self._base_lines, self._base_pos = lines_read, read_pos
        return read_window(batching, self.floor_s, self._lines, self._elapsed,
                           self.since - self._read_at)

    def sleep(self, stop: threading.Event, window: float, min_lines: int,
              unread_bytes: Callable[[], int | None]) -> None:
        """Sleep out the window, but end it early when the file grows much faster than
        it assumed (one look, ``unread_bytes()``, at the floor): a trickle that turns
        into a stream within a long window is read after ~20 ms, and the next window
        learns the new rate. (Each look is a thread wake-up, which at a trickle costs
        about as much as the read: one look per window, not several.)"""
        start = self.since if self.since is not None else time.monotonic()
        end, check = start + window, start + max(self.floor_s, EARLY_CHECK_MIN_S)
        if check < end and not stop.wait(max(0.0, check - time.monotonic())):
            waiting = unread_bytes()
            # The window assumed min_lines arrive in it; read early at twice that rate.
            early = 2 * min_lines * (time.monotonic() - start) / window
            if waiting is not None and waiting / self._line_bytes - 1 >= early:
                return
        left = end - time.monotonic()
        if left > 0:
            stop.wait(left)

    def reading(self) -> None:
        self._read_at = time.monotonic()
        self.count += 1

    def close(self, lines_read: int, read_pos: int) -> None:
        """The window's data is read: remember what it brought, to size the next."""
        if self.since is None:
            return
        lines = lines_read - self._base_lines
        self._lines, self._elapsed = lines, self._read_at - self.since
        read = read_pos - self._base_pos
        if lines > 0 and read > 0:
            self._line_bytes = read / lines
        self.since = None
