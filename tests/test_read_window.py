"""Time-windowed reads and batches: the pure window rule, the queue's deadline counted
from when a source noticed its lines, and a real file source reading a trickle in
windows (real files, real inotify)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.line_queue import LineQueue
from agent.metrics import Counters
from agent.sources.base import Batching, Line
from agent.sources.file import FileSource, FileSourceConfig
from agent.sources.windows import read_window
from tests.support.line_sink import ListSink

BATCHING = Batching(min_lines=20, max_wait_s=0.2)


def _file_source(tmp_path: Path, **extra: object) -> tuple[Path, FileSource, ListSink]:
    """A started file source following an empty ``app.log`` from its end."""
    path = tmp_path / "app.log"
    path.write_text("")
    cfg = FileSourceConfig.model_validate({"kind": "file", "path": path, "start_at": "end",
                                           "poll_interval_s": 5.0, **extra})
    sink = ListSink(batching=BATCHING)
    src = FileSource("f", cfg, sink, Counters(), 4096)
    src.start(None)
    return path, src, sink


def _paced(n: int, per_s: float) -> Iterator[int]:
    """0 .. n-1, each yielded at its slot of a steady ``per_s`` rate (one write each)."""
    start = time.monotonic()
    for i in range(n):
        delay = start + i / per_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield i


@pytest.mark.parametrize(("lines", "elapsed", "quiet", "window"), [
    (0, 0.02, 0.0, 0.04),    # nothing (the writer paused): twice the window,
    (1, 0.04, 0.0, 0.08),    # then twice again ...
    (1, 0.16, 0.0, 0.2),     # ... up to batch_max_wait_ms
    (1, 0.2, 0.0, 0.2),      # a lone line per window: no sign of more, the whole window
    (21, 0.2, 0.01, 0.2),    # 100 lines/s: 20 lines take 200 ms
    (21, 0.1, 0.01, 0.1),    # 200 lines/s: 100 ms
    (21, 0.02, 0.0, 0.02),   # 1,000 lines/s: 20 ms
    (201, 0.02, 0.0, 0.02),  # faster still: never under the floor (read_coalesce_ms)
    (3, 0.2, 0.05, 0.2),     # slower than a batch per window: capped at batch_max_wait_ms
    (21, 0.2, 0.5, 0.02),    # quiet for longer than a window: the old rate says nothing,
    (1, 0.02, 30.0, 0.02),   # read soon (a stream starting now, or a lone line)
])
def test_read_window_is_the_time_a_batch_takes_to_arrive(lines: int, elapsed: float,
                                                         quiet: float, window: float) -> None:
    assert read_window(BATCHING, 0.02, lines, elapsed, quiet) == pytest.approx(window)


def test_read_window_without_batching_is_the_floor() -> None:
    assert read_window(Batching(), 0.02, 1, 0.0, 0.0) == 0.02
    assert read_window(Batching(), 0.0, 5, 0.01, 0.0) == 0.0
    assert read_window(Batching(20, 0.01), 0.05, 1, 0.0, 0.0) == 0.05  # floor above max
    # read_coalesce_ms = 0: a trickle still grows its window (from 10 ms), to the max.
    assert read_window(BATCHING, 0.0, 1, 0.0, 0.0) == pytest.approx(0.02)


def line(i: int) -> Line:
    return Line("s", f"line {i}", 0.0, False, str(i))


def test_queue_deadline_counts_from_when_the_source_noticed_the_lines() -> None:
    q = LineQueue(100)
    # A source that already waited 150 ms of a 200 ms budget: the batch runs after ~50 ms
    # (offline the pipeline does not take read windows as they come: fuller batches).
    q.put_many([line(i) for i in range(5)], time.monotonic() - 0.15)
    t0 = time.monotonic()
    batch = q.get_batch(64, 0.2, timeout=1.0, min_items=20, take_windows=False)
    waited = time.monotonic() - t0
    assert [ln.text for ln, _ in batch] == [f"line {i}" for i in range(5)]
    assert 0.02 < waited < 0.15, waited
    # Already past the budget: at once.
    q.put_many([line(i) for i in range(5)], time.monotonic() - 0.3)
    t0 = time.monotonic()
    assert len(q.get_batch(64, 0.2, timeout=1.0, min_items=20, take_windows=False)) == 5
    assert time.monotonic() - t0 < 0.02
    # One line at a time (journal, MQTT): stamped when queued, the same budget.
    q.put(line(1))
    t0 = time.monotonic()
    assert len(q.get_batch(64, 0.1, timeout=1.0, min_items=20)) == 1
    assert 0.07 < time.monotonic() - t0 < 0.3


def test_queue_takes_a_read_window_at_once() -> None:
    # A file source's read window is a batch's worth (or all a trickle brought in
    # batch_max_wait_ms): waiting for more would hold it a second window.
    q = LineQueue(100)
    q.put_many([line(i) for i in range(5)], time.monotonic())
    t0 = time.monotonic()
    assert len(q.get_batch(64, 0.2, timeout=1.0, min_items=20)) == 5
    assert time.monotonic() - t0 < 0.05
    # ... and what a full batch left of a window goes next, also at once.
    q.put_many([line(i) for i in range(30)], time.monotonic())
    assert len(q.get_batch(20, 0.2, timeout=1.0, min_items=20)) == 20
    t0 = time.monotonic()
    assert len(q.get_batch(20, 0.2, timeout=1.0, min_items=20)) == 10
    assert time.monotonic() - t0 < 0.05


def test_queue_put_many_takes_what_fits_and_wakes_a_full_batch() -> None:
    q = LineQueue(10)
    # a read window fills the queue up to the room kept for lines that cannot wait
    assert q.put_many([line(i) for i in range(25)], time.monotonic()) == 10 - q.reserve == 9
    assert q.put_many([line(99)], time.monotonic()) == 0
    got: list[int] = []
    worker = threading.Thread(target=lambda: got.append(len(q.get_batch(
        8, 5.0, timeout=5.0, min_items=8))))
    worker.start()
    worker.join(1.0)
    assert got == [8]  # 9 queued >= min_items: no waiting
    q.close()
    assert q.put_many([line(1)], time.monotonic()) == 0


def test_file_source_reads_a_trickle_once_per_window(tmp_path: Path) -> None:
    path, src, sink = _file_source(tmp_path)
    try:
        time.sleep(0.2)
        with open(path, "a", buffering=1) as f:
            for i in _paced(200, 100):  # 100 lines/s for 2 s, one write each
                f.write(f"line {i}\n")
        lines = sink.wait_for(lambda ls: len(ls) >= 200)
        assert [ln.text for ln in lines] == [f"line {i}" for i in range(200)]
        # One read (and one hand-off to the sink) per ~200 ms window: ~10 in 2 s, where
        # a read per write (or per 20 ms) made 50-200.
        assert src.reads <= 16 and sink.puts <= 16, (src.reads, sink.puts)
        # The stamps tell the pipeline when the lines were noticed, not when read.
        assert src.describe()["reads"] == src.reads
    finally:
        src.stop(timeout=10)


def test_file_source_reads_a_burst_at_the_floor_window(tmp_path: Path) -> None:
    path, src, sink = _file_source(tmp_path, read_coalesce_ms=10)
    try:
        time.sleep(0.2)
        with open(path, "a", buffering=1) as f:  # 1,000 lines/s for 1 s
            for i in _paced(1000, 1000):
                f.write(f"line {i}\n")
        sink.wait_for(lambda ls: len(ls) >= 1000)
        # After the first (whole) window the rate is known: ~20 lines per read, not 200
        # per 200 ms window (which would hold a line up to 200 ms at this rate).
        assert src.reads >= 25, src.reads
    finally:
        src.stop(timeout=10)


def test_file_source_reads_early_when_a_trickle_turns_into_a_stream(tmp_path: Path) -> None:
    path, src, sink = _file_source(tmp_path)
    try:
        time.sleep(0.2)
        with open(path, "a", buffering=1) as f:
            for i in _paced(100, 100):  # 100 lines/s for 1 s: 200 ms windows
                f.write(f"slow {i} {time.time():.6f}\n")
            time.sleep(0.1)  # a pause shorter than a window: the next one is sized by 100/s
            for i in _paced(500, 1000):  # then at once 1,000 lines/s for 0.5 s
                f.write(f"fast {i} {time.time():.6f}\n")
        lines = sink.wait_for(lambda ls: len(ls) >= 600)
        waits = sorted(ln.ts - float(ln.text.rsplit(" ", 1)[1]) for ln in lines[100:])
        # The window the first fast line opens is sized by the trickle (200 ms): it
        # would hold ~200 of the fast lines up to 200 ms (p90 ~150 ms); the early look
        # ends it once the file grows twice as fast as assumed.
        assert waits[len(waits) * 9 // 10] < 0.06, waits[len(waits) * 9 // 10]
    finally:
        src.stop(timeout=10)
