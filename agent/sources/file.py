"""Follow a text log file: appends, rotation by rename, copytruncate, restarts.

Reads in chunks (never a whole line into unbounded memory), emits one line per
newline, and blocks on the sink (back-pressure: file lines are never dropped —
they can always be re-read). Where to resume is decided by
:func:`agent.sources.file_position.plan_resume` (the files are opened for it by
:mod:`agent.sources.file_handles`), how bytes become lines by
:class:`agent.sources.line_splitter.LineSplitter`, when to read by
:mod:`agent.sources.windows` (read windows: a trickle is read once per batch, not
once per write), the waiting by :mod:`agent.sources.file_waiting`, a rotated file that
is still written by :mod:`agent.sources.file_tail`; this module is what is read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, Literal

from agent.metrics import Counters
from agent.sources.base import LineSink
from agent.sources.file_config import FileSourceConfig
from agent.sources.file_handles import (
    OpenFile,
    QueuedFile,
    close_files,
    open_file,
    open_for_resume,
    open_newer_siblings,
    read_head,
    stat_path,
)
from agent.sources.file_position import HEAD_BYTES, FileCheckpoint, FileIdentity
from agent.sources.file_tail import CHUNK_BYTES, RotatedTail, jump_hole
from agent.sources.file_waiting import Stopped, WatchedFileSource
from agent.sources.line_splitter import LineSplitter, RawLine

__all__ = ["FileSource", "FileSourceConfig"]


class FileSource(WatchedFileSource):
    kind = "file"

    def __init__(self, name: str, cfg: FileSourceConfig, sink: LineSink, counters: Counters,
                 max_line_bytes: int) -> None:
        super().__init__(name, cfg, sink, counters, max_line_bytes)
        self.rotations = 0
        self.truncations = 0
        self.state = "not started"
        self.resume_note = ""
        self._cur: OpenFile | None = None
        self._queue: list[QueuedFile] = []  # files to read after _cur
        self._tail: RotatedTail | None = None  # the previous file, read while it grows
        self._read_pos = 0       # offset of the next byte to read from _cur
        self._lines = LineSplitter(max_line_bytes)
        self._size_seen = 0
        self._rotation_seen: float | None = None  # monotonic time a rotation was noticed
        self._at_eof = False
        self._open_failing = False  # the live path exists but cannot be opened

    # -- what the waiting (file_waiting.WatchedFileSource) asks ----------------------------
    def _settled(self) -> bool:
        return (self._rotation_seen is None and not self._open_failing and self._tail is None
                and (self._cur is None or self.state == "following"))

    def _position(self) -> int:
        return self._read_pos

    def _changed_unseen(self) -> bool:
        cur = self._cur
        if cur is None:
            changed = os.path.exists(self.path)
        else:
            changed = cur.live and os.fstat(cur.fd).st_size != self._read_pos
        return changed or (self._tail is not None and self._tail.unread())

    def _unread_bytes(self) -> int | None:
        cur = self._cur
        return None if cur is None else os.fstat(cur.fd).st_size - self._read_pos

    def _has_news(self) -> bool:
        cur = self._cur
        if cur is None or not cur.live or (self._tail is not None and self._tail.unread()):
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

    def _resume(self, checkpoint: str | None) -> None:
        """Queue the files to read, from where the checkpoint (or start_at) says."""
        self._queue, plan = open_for_resume(self._decode(checkpoint), self.path,
                                            self.cfg.start_at, self._open, self._stop.wait)
        self.resume_note = plan.note
        if plan.lost:
            self.counters.inc("source_gaps")
        self._next_file()

    def _open(self, key: str, live: bool) -> OpenFile | None:
        try:
            opened = open_file(self.path, key, live)
        except OSError as exc:  # e.g. no permission: retried every poll, counted once
            if live:
                self._open_failing = True
            message = f"cannot open {key}: {exc}"
            if message != self.last_error:
                self.last_error = message
                self.counters.inc("source_errors")
            return None
        if live:
            self._open_failing = False
        return opened

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
        self._read_pos = offset
        self._lines.restart(offset, skip)
        self.state = "following" if self._cur.live else f"finishing rotated {self._cur.key}"
        return True

    def _close_all(self) -> None:
        close_files([*(q[0] for q in self._queue), *([self._cur] if self._cur else []),
                     *([self._tail.file] if self._tail else [])])
        self._queue, self._cur, self._tail = [], None, None

    # -- one wake: read everything available, then look for rotation ----------------------

    def _step(self) -> bool:
        """Returns True when something happened (loop again at once). The previous file
        gets at most TAIL_BYTES_PER_WAKE, then the current one its turn: a flooded old
        file must not keep the new one from being read."""
        tail_more = self._tail is not None and self._read_tail()
        return self._step_current() or tail_more

    def _step_current(self) -> bool:
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
            if self._queue and self._queue[0][0].live:
                # The file just before the live one (found at a restart, or missed while we
                # waited): its writer may not have reopened its log yet, so it is drained
                # like a file rotated while we run (review, December 2026: what was written
                # to it after the restart was lost, its last line cut).
                self._keep_as_tail(self._cur)
            else:
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
                raise Stopped  # never treat a chunk boundary as the end of a file
            data = os.read(cur.fd, CHUNK_BYTES)
            if not data:
                self._at_eof = True
                break
            got = True
            if len(cur.ident.head) < HEAD_BYTES:
                head = read_head(cur.fd)
                if cur.live and not head.startswith(cur.ident.head):
                    # Rewritten under us: _truncated() handles it on the next step.
                    os.lseek(cur.fd, self._read_pos, os.SEEK_SET)
                    break
                cur.ident.set_head(head)
            elif cur.live and self._rewritten(cur, os.fstat(cur.fd).st_size):
                # A copytruncate while we waited for room in the queue (review, December
                # 2026): these bytes may be the new content at the old offset, read as the
                # rest of the old file and then again from the new start. Dropped unread;
                # _truncated() starts the new content from its beginning.
                os.lseek(cur.fd, self._read_pos, os.SEEK_SET)
                break
            self._read_pos += len(data)
            self._consume(data, cur.ident)
            if self._lines.skipping and not data.strip(b"\0"):
                self._read_pos = jump_hole(cur.fd, self._read_pos, self._lines)
        return got

    def _rewritten(self, cur: OpenFile, size: int) -> bool:
        """Is the file (``size`` bytes now) shorter than what we have read, or does it
        begin otherwise than the file we read? Before a read (:meth:`_truncated`) and after
        one (:meth:`_pump`: unchanged then means the bytes read were the old file's)."""
        head = cur.ident.head
        return size < self._read_pos or (bool(head)
                                         and read_head(cur.fd)[:len(head)] != head)

    def _consume(self, data: bytes, ident: FileIdentity) -> None:
        """Hand the lines ``data`` completes to the sink, in one hand-off per read: the
        pipeline wakes once for all of them."""
        ts = time.time()
        out = self._lines.split(data, ident)
        if out and self._tail is not None:
            self._tail.live_moved = True
        since = self._windows.since
        if since is None:  # not in a window (a poll tick, a rotation): noticed now
            since = time.monotonic()
        if not self.emit_many(out, ts, since):
            raise Stopped

    def _finish_file(self) -> None:
        """End of a file that will not grow any more: its last line needs no newline."""
        cur = self._cur
        assert cur is not None
        last = self._lines.finish(self._read_pos)
        if last and not self.emit(last, time.time(), cur.ident.checkpoint(self._read_pos)):
            raise Stopped

    def _truncated(self) -> bool:
        """Before reading the live file: was it truncated or rewritten in place?

        Checked before reading, so that content written after a copytruncate beyond
        our old offset is not taken for the rest of the old file."""
        cur = self._cur
        assert cur is not None
        size = os.fstat(cur.fd).st_size
        self._size_seen = size
        if not self._rewritten(cur, size):
            return False
        # copytruncate: the old content is gone and what the file holds now is new.
        # A partial line we held is emitted, not lost.
        self._finish_file()
        self._note_rotation("truncations")
        cur.ident.set_head(read_head(cur.fd))
        os.lseek(cur.fd, 0, os.SEEK_SET)
        self._read_pos = 0
        self._lines.restart(0)
        return True

    def _check_path(self) -> bool:
        """At the end of the live file: does the path still name it?"""
        cur = self._cur
        assert cur is not None
        try:
            st = stat_path(self.path)  # by open_file's rule: no link it would not follow
        except FileNotFoundError:
            self.state = f"{self.path} is missing; still reading the file it was"
            return False
        except PermissionError as exc:  # a link on the path that is not followed
            message = f"cannot open {self.path}: {exc}"
            if message != self.last_error:
                self.last_error = message
                self.counters.inc("source_errors")
            self.state = (f"{self.path} leads through a link that is not followed; still "
                          "reading the file it was")
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
        self._note_rotation("rotations")
        self._rotation_seen = None
        cur = self._cur
        assert cur is not None
        old = os.fstat(cur.fd)
        known = {(old.st_dev, old.st_ino), (new.ident.dev, new.ident.ino)}
        if self._tail is not None:  # the file before: read already, not a missed one
            known.add((self._tail.file.ident.dev, self._tail.file.ident.ino))
        self._keep_as_tail(cur)
        # Rotated more than once since we last looked (we waited on a full queue): the
        # files live in between are read first, oldest first.
        missed = open_newer_siblings(self.path, old.st_mtime_ns, known, self._open)
        if missed:
            self._note_rotation("rotations")
        self._queue.extend([(f, 0, False) for f in missed])
        self._queue.append((new, 0, False))
        return self._next_file()

    def _keep_as_tail(self, cur: OpenFile) -> None:
        """The file the path no longer names: read on while it grows (file_tail), or
        finish it now (``rotated_drain_s`` 0)."""
        self._drop_tail()
        if self.cfg.rotated_drain_s <= 0:
            self._finish_file()
            return
        self._tail = RotatedTail(OpenFile(cur.fd, cur.ident, cur.key, live=False),
                                 self._lines.copy(), self._read_pos, time.monotonic())
        self._cur = None  # its descriptor is the tail's now

    def _read_tail(self) -> bool:
        """Read the previous file's growth; True when there is more to read at once."""
        tail = self._tail
        assert tail is not None
        more = tail.read(self._emit_raw)
        quiet = tail.quiet_for(time.monotonic())
        # A deleted old file (logrotate's compress, `rm`) is let go once read to its end and
        # quiet for the grace: kept open, its blocks stay used on a small device's disk.
        if not more and (quiet >= self.cfg.rotated_drain_s
                         or (tail.deleted() and quiet >= self.cfg.rotate_grace_s)):
            self._drop_tail()
        return more

    def _drop_tail(self) -> None:
        tail, self._tail = self._tail, None
        if tail is not None:
            last = tail.finish()
            os.close(tail.file.fd)
            if last is not None:
                self._emit_raw([last])

    def _emit_raw(self, out: Sequence[RawLine]) -> None:
        if not self.emit_many(out, time.time(), time.monotonic()):
            raise Stopped

    def _note_rotation(self, what: Literal["rotations", "truncations"]) -> None:
        setattr(self, what, getattr(self, what) + 1)
        self.counters.inc("source_rotations")

    # -- queries ------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        cur = self._cur
        info = super().describe()
        info.update({
            "path": self.path, "state": self.state,
            "file": cur.key if cur else None,
            "dev": cur.ident.dev if cur else None, "inode": cur.ident.ino if cur else None,
            "offset": self._lines.line_start, "size_seen": self._size_seen,
            "rotations": self.rotations, "truncations": self.truncations,
            "reads": self._windows.count, "idle_tick_s": self._idle_tick(),
            "inotify_misses": self._inotify_misses(),
            "queued_files": [q[0].key for q in self._queue], "resume": self.resume_note,
            "draining": self._tail.file.key if self._tail else None,
        })
        return info
