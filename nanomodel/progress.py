"""Progress output that fits where it goes (training runs on operator machines and in CI).

On a terminal: one bar redrawn in place with carriage returns. On anything else (a
log file, a pipe, CI): no frames at all, one plain line per finished step
(``epoch 3/10: 1600/1600 in 2.1s, loss 0.1234``) — what well-kept CLIs do, so logs
stay greppable. ``enabled=False`` prints nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal (streams without ``isatty`` are not)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # closed or detached stream
        return False


class Progress:
    """``with Progress("epoch 1/8", total) as bar: bar.update(n)``; silent when disabled.

    ``interactive`` defaults to whether ``stream`` is a terminal."""

    def __init__(self, label: str, total: int, enabled: bool = True,
                 stream: TextIO | None = None, interactive: bool | None = None) -> None:
        self.label, self.total, self.enabled = label, max(total, 1), enabled
        self.stream = stream or sys.stderr
        self.interactive = is_terminal(self.stream) if interactive is None else interactive
        self.done = 0
        self.suffix = ""
        self._start = time.monotonic()
        self._last_draw = 0.0

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        if self.interactive:
            self._draw(force=True)
            self.stream.write("\n")
        else:
            elapsed = time.monotonic() - self._start
            tail = f", {self.suffix}" if self.suffix else ""
            self.stream.write(f"{self.label}: {self.done}/{self.total} in {elapsed:.1f}s"
                              f"{tail}\n")
        self.stream.flush()

    def update(self, n: int = 1, suffix: str | None = None) -> None:
        self.done = min(self.done + n, self.total)
        if suffix is not None:
            self.suffix = suffix
        self._draw()

    def _draw(self, force: bool = False) -> None:
        if not (self.enabled and self.interactive):
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        width = 30
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        elapsed = now - self._start
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} "
                          f"{elapsed:5.1f}s {self.suffix}")
        self.stream.flush()
