"""The file source sleeps on inotify: a slow poll interval does not slow lines down."""

from __future__ import annotations

import os
import time

from agent.metrics import Counters
from agent.sources.file import FileSource, FileSourceConfig
from agent.sources.inotify import DirectoryWatch
from tests.support.line_sink import ListSink


def test_directory_watch_wakes_on_append_and_rename(tmp_path):
    w = DirectoryWatch(tmp_path)
    assert w.active
    assert not w.wait(0.05)
    (tmp_path / "a.log").write_text("x\n")
    assert w.wait(2.0)
    os.rename(tmp_path / "a.log", tmp_path / "a.log.1")
    assert w.wait(2.0)
    w.close()


def test_directory_watch_tells_writes_from_rotations(tmp_path):
    """Plain writes need no stat of the path; a create, rename or delete does."""
    log = tmp_path / "a.log"
    log.write_text("")
    w = DirectoryWatch(tmp_path)
    assert w.take_structural()  # nothing seen yet: check once
    assert not w.take_structural()
    with open(log, "a") as fh:
        for i in range(5):
            fh.write(f"line {i}\n")
            fh.flush()
    assert w.wait(2.0)
    assert not w.take_structural()
    os.rename(log, tmp_path / "a.log.1")
    assert w.wait(2.0)
    assert w.take_structural()
    (tmp_path / "a.log").write_text("new\n")
    assert w.wait(2.0)
    assert w.take_structural()
    os.unlink(tmp_path / "a.log.1")
    assert w.wait(2.0)
    assert w.take_structural()
    w.close()


def test_missing_directory_falls_back_to_polling(tmp_path):
    w = DirectoryWatch(tmp_path / "nope")
    assert not w.active
    t0 = time.monotonic()
    assert not w.wait(0.05)
    assert time.monotonic() - t0 >= 0.04


def test_lines_arrive_fast_even_with_a_long_poll_interval(tmp_path):
    path = tmp_path / "pump.log"
    path.write_text("")
    cfg = FileSourceConfig.model_validate({"kind": "file", "path": path, "start_at": "end",
                                           "poll_interval_s": 5.0})
    sink = ListSink()
    src = FileSource("f", cfg, sink, Counters(), 4096)
    src.start(None)
    try:
        time.sleep(0.3)  # the source is asleep on its watch now
        delays = []
        for i in range(5):
            t0 = time.monotonic()
            with open(path, "a") as f:
                f.write(f"line {i}\n")
            sink.wait_for(lambda lines, n=i: len(lines) > n, timeout=4.0)
            delays.append(time.monotonic() - t0)
            time.sleep(0.1)
        assert max(delays) < 1.0, delays  # without inotify each would take ~5 s
    finally:
        src.stop(timeout=10)
