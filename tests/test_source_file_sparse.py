"""A sparse hole in a followed file (review, December 2026): ``truncate -s 16T`` uses no
disk, and the source read its zeros at ~0.5 GB/s, one core for hours while the file's
later lines waited. Now a hole inside an over-long line of zeros is jumped (SEEK_DATA).
A real file on the test's file system (ext4, tmpfs and most others keep holes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agent.metrics import Counters
from agent.sources.file import FileSource, FileSourceConfig
from tests.support.line_sink import ListSink

HOLE = 64 * 1024**3  # 64 GiB of nothing: ~130 s to read through before


def test_a_sparse_hole_is_jumped_and_the_next_line_read_at_once(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"before the hole\n")
    cfg = FileSourceConfig.model_validate({"kind": "file", "path": path,
                                           "start_at": "beginning", "poll_interval_s": 0.02})
    sink = ListSink()
    src = FileSource("file:app", cfg, sink, Counters(), 2048)
    src.start(None)
    try:
        sink.wait_for(lambda ls: len(ls) >= 1)
        os.truncate(path, HOLE)
        with open(path, "ab") as fh:  # the hole is one line of zeros: this ends it
            fh.write(b"\nafter the hole\n")
        started = time.monotonic()
        lines = sink.wait_for(lambda ls: any(ln.text == "after the hole" for ln in ls),
                              timeout=20)
        assert time.monotonic() - started < 5.0
        texts = [ln.text for ln in lines]
        # The zeros are one over-long line, cut once (as before), then skipped.
        assert texts[0] == "before the hole" and texts[-1] == "after the hole"
        assert len(texts) == 3 and set(texts[1]) == {"\0"} and lines[1].truncated
        checkpoint = lines[-1].checkpoint
        assert checkpoint is not None
    finally:
        src.stop()
    # A restart from the last line's checkpoint reads nothing again.
    again = ListSink()
    src2 = FileSource("file:app", cfg, again, Counters(), 2048)
    src2.start(checkpoint)
    try:
        with open(path, "ab") as fh:
            fh.write(b"later\n")
        assert [ln.text for ln in again.wait_for(lambda ls: len(ls) >= 1)] == ["later"]
    finally:
        src2.stop()
