"""A followed file's previous file after a rotation, read on while its writers still write.

A writer appends to the file it opened until it reopens its log (logrotate's postrotate
HUP, a restart). Several writers reopen at different times, and a writer nobody tells
writes on to the old file for ever — as it does when someone who can write the log's
directory renames the log and plants another file in its place, so that everything the
service logs after that went unread (review, December 2026). The file source therefore
keeps its previous file open after switching to the new one and reads what it grows by,
until it has been quiet for ``rotated_drain_s`` (filebeat's ``close_inactive`` and
fluent-bit's ``Rotate_Wait`` do the same). One previous file per source: a second
rotation finishes the first.

Checkpoints: while the new file has given no line since the switch, the previous file's
lines carry its own checkpoint, so a restart resumes in it exactly (found among the
rotated siblings, :mod:`agent.sources.file_position`). After that they carry none: a late
line must not move the source's checkpoint back into the old file, which would make a
restart read the new file again from its start. A restart forgets a previous file that
has no rotated sibling's name (docs/agent.md, "Rotation").
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.sources.file_handles import OpenFile
from agent.sources.line_splitter import LineSplitter, Marks, RawLine

# At most this much of the previous file per wake: a file someone fills as fast as they
# can must not keep the live file from being read.
TAIL_BYTES_PER_WAKE = 1024 * 1024
CHUNK_BYTES = 64 * 1024  # one read of a followed file (the file source's too)

EmitMany = Callable[[Sequence[RawLine]], None]


class _NoCheckpoint:
    """Lines of the previous file once the new file has moved the checkpoint on."""

    def checkpoint(self, off: int, skip: bool = False) -> None:
        return None


def jump_hole(fd: int, pos: int, lines: LineSplitter) -> int:
    """Inside an over-long line of zeros: the offset of the file's next data (``pos`` when
    the file system cannot say). A sparse hole (``truncate -s 16T``, no disk used) was read
    at ~0.5 GB/s, one core for hours while the file's later lines waited (review, December
    2026). The jumped bytes are part of the line being skipped, as the zeros read would
    have been."""
    try:
        nxt = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError as exc:  # ENXIO: no data after here, the hole runs to the end
        if exc.errno != errno.ENXIO:
            return pos
        nxt = os.fstat(fd).st_size
    if nxt > pos:
        lines.line_start += nxt - pos
        os.lseek(fd, nxt, os.SEEK_SET)
        return nxt
    return pos


@dataclass
class RotatedTail:
    """The previous file: its descriptor, its line state and when it last grew."""

    file: OpenFile
    lines: LineSplitter
    pos: int                    # offset of the next byte to read
    grew_at: float              # time.monotonic() of the last read that got data
    live_moved: bool = False    # the new file has given a line since the switch

    def deleted(self) -> bool:
        """No name leads to the file any more (its blocks are freed once it is closed)."""
        return os.fstat(self.file.fd).st_nlink == 0

    def unread(self) -> bool:
        return os.fstat(self.file.fd).st_size != self.pos

    def quiet_for(self, now: float) -> float:
        return now - self.grew_at

    def read(self, emit_many: EmitMany) -> bool:
        """Read what the file grew by (at most TAIL_BYTES_PER_WAKE) and hand its lines on;
        True when it stopped before the end (call again)."""
        fd, done = self.file.fd, 0
        if os.fstat(fd).st_size < self.pos:  # truncated: what it held is gone, start over
            self.pos = 0
            self.lines.restart(0)
        os.lseek(fd, self.pos, os.SEEK_SET)
        marks = self._marks()
        while done < TAIL_BYTES_PER_WAKE:
            data = os.read(fd, CHUNK_BYTES)
            if not data:
                return False
            self.grew_at = time.monotonic()
            done += len(data)
            self.pos += len(data)
            emit_many(self.lines.split(data, marks))
            if self.lines.skipping and not data.strip(b"\0"):
                self.pos = jump_hole(fd, self.pos, self.lines)
        return True

    def finish(self) -> RawLine | None:
        """The file is given up: its unfinished last line, if any, with its checkpoint."""
        last = self.lines.finish(self.pos)
        return (last, self._marks().checkpoint(self.pos)) if last else None

    def _marks(self) -> Marks:
        return _NoCheckpoint() if self.live_moved else self.file.ident
