"""When a followed file is read: the file source's thread, its waits and its wakes.

The thread sleeps until the file's directory changes (inotify), stop() or the idle tick
(:mod:`agent.sources.idle_tick`) passes, then waits a read window
(:mod:`agent.sources.windows`) so that a trickle of writes is read once per batch. What is
read, and how rotation is followed, is the subclass's (:class:`agent.sources.file.FileSource`):
this base only asks it a few questions (the abstract methods below).
"""

from __future__ import annotations

from abc import abstractmethod

from agent.metrics import Counters
from agent.sources.base import LineSink, Source
from agent.sources.file_config import FileSourceConfig
from agent.sources.idle_tick import idle_tick_s, look_why_events_miss_file
from agent.sources.inotify import DirectoryWatch
from agent.sources.windows import ReadWindows


class Stopped(Exception):
    """The source was stopped while waiting for room in the sink."""


class WatchedFileSource(Source):
    """A source that follows one path: its thread's loop of read, wait and wake."""

    def __init__(self, name: str, cfg: FileSourceConfig, sink: LineSink, counters: Counters,
                 max_line_bytes: int) -> None:
        super().__init__(name, sink, counters, max_line_bytes)
        self.cfg = cfg
        self.path = str(cfg.path)
        self._resumed = False
        self._tick = True  # check the path on the first wake
        self._watch: DirectoryWatch | None = None
        # Why the directory's events do not show this file's changes (None: they do).
        self._events_miss: str | None = "not watching yet"
        self._windows = ReadWindows(cfg.read_coalesce_ms / 1000.0)

    # -- what the subclass answers ----------------------------------------------------------
    @abstractmethod
    def _resume(self, checkpoint: str | None) -> None:
        """Open the files to read, from where ``checkpoint`` (or start_at) says."""

    @abstractmethod
    def _step(self) -> bool:
        """Read what there is; True when something happened (loop again at once)."""

    @abstractmethod
    def _close_all(self) -> None:
        """Close every file held (the thread ends)."""

    @abstractmethod
    def _settled(self) -> bool:
        """Following the live file with nothing pending (the idle tick may be long)."""

    @abstractmethod
    def _position(self) -> int:
        """Offset of the next byte to read in the current file (sizes read windows)."""

    @abstractmethod
    def _changed_unseen(self) -> bool:
        """Did anything change that is worth a read (asked on a safety tick)?"""

    @abstractmethod
    def _unread_bytes(self) -> int | None:
        """Bytes written and not read yet in the current file (None: no file)."""

    @abstractmethod
    def _has_news(self) -> bool:
        """Anything to read or check, leaving the directory's events aside?"""

    # -- lifecycle ----------------------------------------------------------------------
    def _wake(self) -> None:
        watch = self._watch
        if watch is not None:
            watch.interrupt()

    def start(self, checkpoint: str | None) -> None:
        """Fix the starting position before returning, so that (with start_at=end) a line
        written right after start() is read, not taken for old content."""
        self._stop.clear()
        self._resumed = False
        try:
            self._resume(checkpoint)
            self._resumed = True
        except OSError as exc:  # retried by the thread
            self.last_error = f"{type(exc).__name__}: {exc}"
        super().start(checkpoint)

    def _run(self, checkpoint: str | None) -> None:
        try:
            if not self._resumed:
                self._resume(checkpoint)
            watch = DirectoryWatch(self.cfg.path.parent)
            self._watch = watch
            self._events_miss = look_why_events_miss_file(self.cfg.path)
            while not self._stop.is_set():
                try:
                    if self._step():
                        continue
                    if self._windows.since is not None:  # a window's read caught up
                        self._windows.close(self.lines_read, self._position())
                        # Writes made during the read queued events although the read
                        # took their data: drop them (each would wake us for nothing,
                        # or open a window sized for nothing), then look once.
                        watch.drain()
                        if self._news(watch):
                            self._open_window(watch)
                            continue
                    # Sleep until the directory changes (inotify), stop() or the idle
                    # tick (sources.idle_tick) passes.
                    tick = self._idle_tick()
                    if not watch.wait(tick):
                        self._tick = True  # a poll tick: look at the path too
                        if tick > self.cfg.poll_interval_s and self._missed_change(watch):
                            self._events_miss = "a change raised no event: polling"
                        continue
                    if self._news(watch):
                        self._open_window(watch)
                except OSError as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self.counters.inc("source_errors")
                    self._stop.wait(max(1.0, self.cfg.poll_interval_s))
        except Stopped:
            pass
        finally:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
            self._close_all()

    def _idle_tick(self) -> float:
        watch = self._watch
        return idle_tick_s(self.cfg.poll_interval_s,
                           watching=watch is not None and watch.active,
                           events_show_file=self._events_miss is None, settled=self._settled())

    def _inotify_misses(self) -> str | None:
        """Why inotify alone cannot be trusted with this file now (None: it can)."""
        if self._watch is not None and not self._watch.active:
            return "no inotify watch on the directory (missing, gone, or no inotify)"
        return self._events_miss

    def _missed_change(self, watch: DirectoryWatch) -> bool:
        """On a safety tick: did the file change (or appear) with no event to say so?"""
        # An event queued since the timeout (a write racing the tick) was not missed.
        return self._changed_unseen() and not watch.wait(0)

    def _open_window(self, watch: DirectoryWatch) -> None:
        """The directory changed: wait a read window (sources.windows), then read."""
        windows = self._windows
        window = windows.open(self.sink.batching, self.lines_read, self._position())
        windows.sleep(self._stop, window, self.sink.batching.min_lines, self._unread_bytes)
        # Events of writes made so far describe data this read will see; without this
        # each of them would wake us again for an empty read.
        watch.drain()
        windows.reading()

    def _news(self, watch: DirectoryWatch) -> bool:
        """Is there anything to read or check (else a wake must not open a window: it
        would hold the next lines for a window sized by nothing)?"""
        return watch.structural_pending or self._has_news()

    # -- queries ------------------------------------------------------------------------
    @property
    def reads(self) -> int:
        """Read windows so far (a trickle: about one per batch_max_wait_ms)."""
        return self._windows.count
