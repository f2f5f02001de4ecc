"""Follow a text log file: appends, rotation by rename, copytruncate, restarts.

Reads in chunks (never a whole line into unbounded memory), emits one line per
newline, and blocks on the sink (back-pressure: file lines are never dropped —
they can always be re-read). Where to resume is decided by
:func:`agent.sources.file_position.plan_resume`, when to read by
:mod:`agent.sources.windows` (read windows: a trickle is read once per batch, not
once per write); this module does the I/O.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.metrics import Counters
from agent.sources.base import LineSink, Source
from agent.sources.file_config import FileSourceConfig
from agent.sources.file_position import (
    HEAD_BYTES,
    Candidate,
    FileCheckpoint,
    FileIdentity,
    is_rotated_sibling,
    plan_resume,
)
from agent.sources.inotify import DirectoryWatch
from agent.sources.windows import ReadWindows

__all__ = ["FileSource", "FileSourceConfig"]

CHUNK_BYTES = 64 * 1024


class _Stopped(Exception):
    """The source was stopped while waiting for room in the sink."""


@dataclass
class _OpenFile:
    fd: int
    ident: FileIdentity
    key: str        # the path it was opened at
    live: bool      # opened at the configured path (else a rotated file to finish)


def _read_head(fd: int) -> bytes:
    return os.pread(fd, HEAD_BYTES, 0)


def _candidate(f: _OpenFile) -> Candidate:
    st = os.fstat(f.fd)
    return Candidate(f.key, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, f.ident.head)


class FileSource(Source):
    kind = "file"

    def __init__(self, name: str, cfg: FileSourceConfig, sink: LineSink, counters: Counters,
                 max_line_bytes: int) -> None:
        super().__init__(name, sink, counters, max_line_bytes)
        self.cfg = cfg
        self.path = str(cfg.path)
        self.rotations = 0
        self.truncations = 0
        self.state = "not started"
        self.resume_note = ""
        self._cur: _OpenFile | None = None
        self._queue: list[tuple[_OpenFile, int, bool]] = []  # files to read after _cur
        self._read_pos = 0       # offset of the next byte to read from _cur
        self._line_start = 0     # offset of _pending[0]: where an unfinished line begins
        self._pending = b""      # bytes after the last newline (at most max_line_bytes)
        self._skipping = False   # inside an over-long line already emitted
        self._size_seen = 0
        self._rotation_seen: float | None = None  # monotonic time a rotation was noticed
        self._resumed = False
        self._at_eof = False
        self._tick = True  # check the path on the first wake
        self._watch: DirectoryWatch | None = None
        self._windows = ReadWindows(cfg.read_coalesce_ms / 1000.0)

    # -- lifecycle --------------------------------------------------------------------
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
            self._resume(self._decode(checkpoint))
            self._resumed = True
        except OSError as exc:  # retried by the thread
            self.last_error = f"{type(exc).__name__}: {exc}"
        super().start(checkpoint)

    def _run(self, checkpoint: str | None) -> None:
        try:
            if not self._resumed:
                self._resume(self._decode(checkpoint))
            watch = DirectoryWatch(self.cfg.path.parent)
            self._watch = watch
            while not self._stop.is_set():
                try:
                    if self._step():
                        continue
                    if self._windows.since is not None:  # a window's read caught up
                        self._windows.close(self.lines_read, self._read_pos)
                        # Writes made during the read queued events although the read
                        # took their data: drop them (each would wake us for nothing,
                        # or open a window sized for nothing), then look once.
                        watch.drain()
                        if self._news(watch):
                            self._open_window(watch)
                            continue
                    # Sleep until the directory changes (inotify) or the poll interval
                    # passes; stop() is honoured within one interval.
                    if not watch.wait(self.cfg.poll_interval_s):
                        self._tick = True  # a poll tick: look at the path too
                        continue
                    if self._news(watch):
                        self._open_window(watch)
                except OSError as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self.counters.inc("source_errors")
                    self._stop.wait(max(1.0, self.cfg.poll_interval_s))
        except _Stopped:
            pass
        finally:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
            self._close_all()

    def _open_window(self, watch: DirectoryWatch) -> None:
        """The directory changed: wait a read window (sources.windows), then read."""
        windows = self._windows
        window = windows.open(self.sink.batching, self.lines_read, self._read_pos)
        windows.sleep(self._stop, window, self.sink.batching.min_lines, self._unread_bytes)
        # Events of writes made so far describe data this read will see; without this
        # each of them would wake us again for an empty read.
        watch.drain()
        windows.reading()

    def _unread_bytes(self) -> int | None:
        cur = self._cur
        return None if cur is None else os.fstat(cur.fd).st_size - self._read_pos

    def _news(self, watch: DirectoryWatch) -> bool:
        """Is there anything to read or check (else a wake must not open a window: it
        would hold the next lines for a window sized by nothing)?"""
        cur = self._cur
        if cur is None or not cur.live or watch.structural_pending:
            return True
        return os.fstat(cur.fd).st_size != self._read_pos

    def _decode(self, checkpoint: str | None) -> FileCheckpoint | None:
        if checkpoint is None:
            return None
        try:
            return FileCheckpoint.decode(checkpoint)
        except ValueError as exc:
            self.last_error = f"{exc}; starting as if there were none"
            self.counters.inc("source_errors")
            return None

    def _resume(self, cp: FileCheckpoint | None) -> None:
        """Open the live file and its rotated siblings, plan, keep only what the plan reads.

        The live file is opened before its siblings are listed, so a rename in between
        leaves the file in view under one name or the other; a rotation racing the
        listing can still hide it, hence a second look when the plan did not find it."""
        for attempt in range(3):
            opened = self._open_candidates(cp)
            facts = {k: _candidate(f) for k, f in opened.items()}
            plan = plan_resume(cp, self.path, self.cfg.start_at, facts.get(self.path),
                               [c for k, c in facts.items() if k != self.path])
            if not plan.lost or attempt == 2:
                break
            for f in opened.values():
                os.close(f.fd)
            self._stop.wait(0.05)
        self.resume_note = plan.note
        if plan.lost:
            self.counters.inc("source_gaps")
        keep = [(opened[s.key], s.offset, s.skip) for s in plan.backlog]
        live = opened.get(self.path)
        if live is not None:
            offset, skip = plan.live_offset, plan.live_skip
            if offset is None:  # start_at=end: skip a line being written as we start
                offset = facts[self.path].size
                skip = offset > 0 and os.pread(live.fd, 1, offset - 1) != b"\n"
            keep.append((live, offset, skip))
        for f in opened.values():
            if not any(f is k[0] for k in keep):
                os.close(f.fd)
        self._queue = keep
        self._next_file()

    def _open_candidates(self, cp: FileCheckpoint | None) -> dict[str, _OpenFile]:
        opened: dict[str, _OpenFile] = {}
        live = self._open(self.path, live=True)
        if live is not None:
            opened[self.path] = live
        if cp is not None:
            folder, live_path = Path(self.path).parent, Path(self.path)
            with contextlib.suppress(OSError):
                for name in sorted(os.listdir(folder)):
                    if is_rotated_sibling(live_path, name):
                        f = self._open(str(folder / name), live=False)
                        if f is not None:
                            opened[f.key] = f
        return opened

    def _open(self, key: str, live: bool) -> _OpenFile | None:
        try:
            fd = os.open(key, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:  # e.g. no permission: retried every poll, counted once
            message = f"cannot open {key}: {exc}"
            if message != self.last_error:
                self.last_error = message
                self.counters.inc("source_errors")
            return None
        st = os.fstat(fd)
        return _OpenFile(fd, FileIdentity(self.path, st.st_dev, st.st_ino, _read_head(fd)),
                         key, live)

    def _next_file(self) -> bool:
        """Move to the next queued file; False when there is none (waiting for the file)."""
        if self._cur is not None:
            os.close(self._cur.fd)
            self._cur = None
        if not self._queue:
            self.state = f"waiting for {self.path} to appear"
            return False
        self._cur, offset, skip = self._queue.pop(0)
        os.lseek(self._cur.fd, offset, os.SEEK_SET)
        self._read_pos = self._line_start = offset
        self._pending, self._skipping = b"", skip
        self.state = "following" if self._cur.live else f"finishing rotated {self._cur.key}"
        return True

    def _close_all(self) -> None:
        for f in [*(q[0] for q in self._queue), *([self._cur] if self._cur else [])]:
            with contextlib.suppress(OSError):
                os.close(f.fd)
        self._queue, self._cur = [], None

    # -- one wake: read everything available, then look for rotation ----------------------

    def _step(self) -> bool:
        """Returns True when something happened (loop again at once)."""
        if self._cur is None:
            f = self._open(self.path, live=True)
            if f is None:
                return False
            self._queue.append((f, 0, False))  # a file that appears later: from its start
            return self._next_file()
        if self._cur.live and self._truncated():
            return True
        if self._pump() and not self._at_eof:
            return True
        # At the end of the file (read returned nothing): go on to the rotation check in
        # this same wake instead of looping for a second truncation check and an empty
        # read; a write after that read is an inotify event, which wakes us again.
        if not self._cur.live:
            self._finish_file()
            self._next_file()
            return True
        if not self._path_check_due():
            return False
        return self._check_path()

    def _path_check_due(self) -> bool:
        """Is a ``stat`` of the path worth it? With inotify, only after a create, move or
        delete in the directory, on a poll tick, or while a rotation is being handled:
        a trickle of writes then costs no ``stat`` per wake."""
        watch = self._watch
        due = (watch is None or not watch.active or self._tick
               or self._rotation_seen is not None or self.state != "following")
        if watch is not None and watch.take_structural():
            due = True
        if due:
            self._tick = False
        return due

    def _pump(self) -> bool:
        """Read what the file holds; sets ``_at_eof`` when the last read returned nothing."""
        cur = self._cur
        assert cur is not None
        got = False
        self._at_eof = False
        while True:
            if self._stop.is_set():
                raise _Stopped  # never treat a chunk boundary as the end of a file
            data = os.read(cur.fd, CHUNK_BYTES)
            if not data:
                self._at_eof = True
                break
            got = True
            if len(cur.ident.head) < HEAD_BYTES:
                head = _read_head(cur.fd)
                if cur.live and not head.startswith(cur.ident.head):
                    # Rewritten under us: _truncated() handles it on the next step.
                    os.lseek(cur.fd, self._read_pos, os.SEEK_SET)
                    break
                cur.ident.set_head(head)
            self._read_pos += len(data)
            self._consume(data, cur.ident)
        return got

    def _consume(self, data: bytes, ident: FileIdentity) -> None:
        """Split ``data`` (following ``_pending``) into lines and emit them."""
        limit = self.max_line_bytes
        buf = self._pending + data if self._pending else data
        base, pos, ts = self._line_start, 0, time.time()
        if self._skipping:
            nl = buf.find(b"\n")
            if nl < 0:
                self._pending, self._line_start = b"", base + len(buf)
                return
            pos, self._skipping = nl + 1, False
        find, checkpoint = buf.find, ident.checkpoint
        out: list[tuple[bytes, str | None]] = []
        while (nl := find(b"\n", pos)) >= 0:
            # An over-long line gets limit+1 bytes so that sanitize marks it truncated.
            raw = buf[pos:nl] if nl - pos <= limit else buf[pos:pos + limit + 1]
            if raw and raw != b"\r":
                out.append((raw, checkpoint(base + nl + 1)))
            pos = nl + 1
        skip = len(buf) - pos > limit
        if skip:  # no newline in sight: emit what the limit allows, skip the rest
            end = base + pos + limit + 1
            out.append((buf[pos:pos + limit + 1], checkpoint(end, skip=True)))
        # One hand-off per read: the pipeline wakes once for all of them.
        since = self._windows.since
        if since is None:  # not in a window (a poll tick, a rotation): noticed now
            since = time.monotonic()
        if not self.emit_many(out, ts, since):
            raise _Stopped
        if skip:
            self._pending, self._line_start, self._skipping = b"", base + len(buf), True
        else:
            self._pending, self._line_start = buf[pos:], base + pos

    def _finish_file(self) -> None:
        """End of a file that will not grow any more: its last line needs no newline."""
        cur = self._cur
        assert cur is not None
        last = self._pending if not self._skipping else b""
        if last and not self.emit(last, time.time(), cur.ident.checkpoint(self._read_pos)):
            raise _Stopped
        self._pending, self._line_start, self._skipping = b"", self._read_pos, False

    def _truncated(self) -> bool:
        """Before reading the live file: was it truncated or rewritten in place?

        Checked before reading, so that content written after a copytruncate beyond
        our old offset is not taken for the rest of the old file."""
        cur = self._cur
        assert cur is not None
        size = os.fstat(cur.fd).st_size
        self._size_seen = size
        head = cur.ident.head
        if size >= self._read_pos and (not head or _read_head(cur.fd)[:len(head)] == head):
            return False
        # copytruncate: the old content is gone and what the file holds now is new.
        # A partial line we held is emitted, not lost.
        self._finish_file()
        self._note_rotation("truncations")
        cur.ident.set_head(_read_head(cur.fd))
        os.lseek(cur.fd, 0, os.SEEK_SET)
        self._read_pos = self._line_start = 0
        return True

    def _check_path(self) -> bool:
        """At the end of the live file: does the path still name it?"""
        cur = self._cur
        assert cur is not None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.state = f"{self.path} is missing; still reading the file it was"
            return False
        if (st.st_dev, st.st_ino) != (cur.ident.dev, cur.ident.ino):
            return self._switch_after_rotation(st.st_size)
        self._rotation_seen = None
        self.state = "following"
        return False

    def _switch_after_rotation(self, new_size: int) -> bool:
        """The path now names another file (renamed or deleted, then recreated).

        The writer keeps appending to the old file until it reopens its log, so switch
        only once the new file has data (the writer moved) or the old one has been quiet
        for rotate_grace_s; drain the old file once more just before switching."""
        now = time.monotonic()
        if self._rotation_seen is None:
            self._rotation_seen = now
        if new_size == 0 and now - self._rotation_seen < self.cfg.rotate_grace_s:
            self.state = f"{self.path} was rotated; finishing the old file"
            return False
        new = self._open(self.path, live=True)
        if new is None:
            return False
        self._pump()
        self._finish_file()
        self._note_rotation("rotations")
        self._rotation_seen = None
        self._queue.append((new, 0, False))
        return self._next_file()

    def _note_rotation(self, what: Literal["rotations", "truncations"]) -> None:
        setattr(self, what, getattr(self, what) + 1)
        self.counters.inc("source_rotations")

    # -- queries ------------------------------------------------------------------------

    @property
    def reads(self) -> int:
        """Read windows so far (a trickle: about one per batch_max_wait_ms)."""
        return self._windows.count

    def describe(self) -> dict[str, Any]:
        cur = self._cur
        info = super().describe()
        info.update({
            "path": self.path, "state": self.state,
            "file": cur.key if cur else None,
            "dev": cur.ident.dev if cur else None, "inode": cur.ident.ino if cur else None,
            "offset": self._line_start, "size_seen": self._size_seen,
            "rotations": self.rotations, "truncations": self.truncations,
            "reads": self._windows.count,
            "queued_files": [q[0].key for q in self._queue], "resume": self.resume_note,
        })
        return info
