"""The file source's line splitting (pure): lines across reads, blank lines, over-long
lines handed on once and skipped to their newline, the unfinished last line."""

from __future__ import annotations

from agent.sources.file_position import FileCheckpoint, FileIdentity
from agent.sources.line_splitter import LineSplitter


def _offsets(lines: list[tuple[bytes, str | None]]) -> list[tuple[bytes, int, bool]]:
    out = []
    for raw, cp in lines:
        assert cp is not None
        decoded = FileCheckpoint.decode(cp)
        out.append((raw, decoded.off, decoded.skip))
    return out


def test_lines_across_reads_with_their_resume_offsets() -> None:
    ident = FileIdentity("/var/log/a.log", 1, 2, b"head")
    s = LineSplitter(100)
    assert _offsets(s.split(b"one\ntw", ident)) == [(b"one", 4, False)]
    assert (s.pending, s.line_start) == (b"tw", 4)
    assert _offsets(s.split(b"o\n\n\r\nthree\n", ident)) == [(b"two", 8, False),
                                                            (b"three", 17, False)]
    assert s.finish(17) == b"" and s.line_start == 17


def test_over_long_line_is_handed_on_once_then_skipped_to_its_newline() -> None:
    ident = FileIdentity("/var/log/a.log", 1, 2)
    s = LineSplitter(4)
    # limit + 1 bytes, so that sanitize marks it truncated; resume skips the rest
    assert _offsets(s.split(b"abcdefgh", ident)) == [(b"abcde", 5, True)]
    assert s.skipping and s.pending == b""
    assert s.split(b"ijk", ident) == []
    assert _offsets(s.split(b"lm\nok\n", ident)) == [(b"ok", 17, False)]


def test_restart_inside_a_line_and_unfinished_last_line() -> None:
    ident = FileIdentity("/var/log/a.log", 1, 2)
    s = LineSplitter(100)
    s.restart(50, skip=True)  # a checkpoint taken inside an over-long line
    assert _offsets(s.split(b"rest of it\nnext\nhalf", ident)) == [(b"next", 66, False)]
    assert s.finish(70) == b"half"
    assert (s.pending, s.line_start, s.skipping) == (b"", 70, False)
    s.restart(0, skip=True)
    s.split(b"no newline yet", ident)
    assert s.finish(14) == b""  # the rest of a line handed on already
