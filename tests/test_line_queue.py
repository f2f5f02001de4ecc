"""The bounded line queue keeps room for lines that cannot wait (review, December 2026: a
file backlog refilled the queue within milliseconds of each batch, and MQTT sensor lines,
which cannot be read again, lost 33-85 % to it while it drained)."""

from __future__ import annotations

import time

import pytest

from agent.line_queue import LineQueue
from agent.sources.base import Line

pytestmark = pytest.mark.unit


def line(i: int, source: str = "file:log") -> Line:
    return Line(source, f"line {i}", time.time())


def test_sources_that_wait_leave_the_reserve_to_those_that_cannot() -> None:
    queue = LineQueue(64)
    assert queue.reserve == 8
    # A file's read window, then a journal line: both stop short of the reserve.
    assert queue.put_many([line(i) for i in range(100)], time.monotonic()) == 56
    assert not queue.put(line(100, "journald"), can_wait=True)
    # A sensor line that would be dropped takes the reserve, up to the bound.
    assert all(queue.put(line(200 + i, "mqtt:sensors/#")) for i in range(8))
    assert not queue.put(line(300, "mqtt:sensors/#")) and len(queue) == 64
    batch = queue.get_batch(16, 0.0, 1.0)
    assert len(batch) == 16 and len(queue) == 48
    assert queue.put(line(400, "journald"), can_wait=True)  # room below the reserve again
