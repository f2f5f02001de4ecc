"""Cut a followed file's bytes into lines, each with the checkpoint that resumes after it.

Pure (no I/O): the file source reads chunks and feeds them here. Memory stays bounded:
at most ``max_line_bytes`` of an unfinished line is held. An over-long line is handed
on once, cut at ``max_line_bytes + 1`` bytes (so that :func:`agent.sources.base.sanitize`
marks it truncated), and the rest of it is skipped up to its newline — across a restart
too, through the checkpoint's ``skip``.
"""

from __future__ import annotations

from typing import Protocol

# (raw line without its newline, checkpoint that resumes after it)
RawLine = tuple[bytes, str | None]


class Marks(Protocol):
    """What gives a line its checkpoint: the file's identity
    (:class:`agent.sources.file_position.FileIdentity`), or nothing (a previous file's late
    lines, :mod:`agent.sources.file_tail`)."""

    def checkpoint(self, off: int, skip: bool = False) -> str | None: ...


class LineSplitter:
    """The line state of one file being read: what follows the last newline."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self.pending = b""      # bytes after the last newline (at most max_line_bytes)
        self.line_start = 0     # file offset of pending[0]: where an unfinished line begins
        self.skipping = False   # inside an over-long line already handed on

    def restart(self, offset: int, skip: bool = False) -> None:
        """Split a file from ``offset`` on; ``skip``: the offset is inside a line that was
        (partly) handed on already, so drop everything up to its newline."""
        self.pending, self.line_start, self.skipping = b"", offset, skip

    def copy(self) -> LineSplitter:
        """A splitter that goes on where this one is (the same unfinished line)."""
        other = LineSplitter(self.max_line_bytes)
        other.pending, other.line_start, other.skipping = (
            self.pending, self.line_start, self.skipping)
        return other

    def split(self, data: bytes, ident: Marks) -> list[RawLine]:
        """The lines that ``data`` (read right after what came before) completes, each
        with ``ident``'s checkpoint after its newline. Blank lines are dropped."""
        limit = self.max_line_bytes
        buf = self.pending + data if self.pending else data
        base, pos = self.line_start, 0
        if self.skipping:
            nl = buf.find(b"\n")
            if nl < 0:
                self.pending, self.line_start = b"", base + len(buf)
                return []
            pos, self.skipping = nl + 1, False
        find, checkpoint = buf.find, ident.checkpoint
        out: list[RawLine] = []
        while (nl := find(b"\n", pos)) >= 0:
            # An over-long line gets limit+1 bytes so that sanitize marks it truncated.
            raw = buf[pos:nl] if nl - pos <= limit else buf[pos:pos + limit + 1]
            if raw and raw != b"\r":
                out.append((raw, checkpoint(base + nl + 1)))
            pos = nl + 1
        if len(buf) - pos > limit:  # no newline in sight: hand on what the limit allows
            out.append((buf[pos:pos + limit + 1], checkpoint(base + pos + limit + 1, skip=True)))
            self.pending, self.line_start, self.skipping = b"", base + len(buf), True
        else:
            self.pending, self.line_start = buf[pos:], base + pos
        return out

    def finish(self, end: int) -> bytes:
        """The file ends at ``end`` and will not grow any more: its unfinished last line
        (b"" when there is none), to hand on with the checkpoint at ``end``."""
        last = self.pending if not self.skipping else b""
        self.restart(end)
        return last
