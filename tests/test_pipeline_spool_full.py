"""A spool that cannot be written (a full disk) holds the batch instead of dropping it: the
real pipeline, the shipped model and a real SQLite spool made full the way a full disk
makes it (SQLITE_FULL: the database may not grow past its page limit). Before (review,
December 2026): the batch was dropped and, once space was back, the next batch committed a
later checkpoint of the same source, so the dropped lines were never read again."""

from __future__ import annotations

import json
import time
from pathlib import Path

from agent.line_queue import LineQueue
from agent.sources.base import Line
from tests.support.line_sink import WAIT_S, wait_until
from tests.support.pipeline_rig import real_pipeline


def queue_whole(queue: LineQueue, lines: list[Line]) -> None:
    """Queue a group of lines at once, so that the pipeline takes them as one batch.
    Queued one by one, a feeding thread held up longer than batch_max_wait_ms (20 ms: a
    loaded CI box) let the pipeline take the first one or two alone, and so small a batch
    still fits the pages of a "full" spool: it committed, and the test saw a checkpoint or
    an acknowledgement past the held batch."""
    assert queue.put_many(lines, time.monotonic()) == len(lines)


def test_a_full_spool_holds_the_batch_and_loses_no_line(tmp_path: Path) -> None:
    pipeline, queue, spool, counters = real_pipeline(tmp_path)
    pipeline.start()

    def feed(group: str, start: int) -> None:
        queue_whole(queue, [Line("file:log", f"{group} pump cycle {i} complete",
                                 time.time(), checkpoint=str(i))
                            for i in range(start, start + 20)])

    def texts() -> list[str]:
        return [item["text"] for m in spool.pending(0, 1000) if "/results/" in m.topic
                for item in json.loads(m.payload)["items"]]

    try:
        feed("A", 0)
        wait_until(lambda: len(texts()) == 20, WAIT_S, "batch A stored")
        pages = spool._db.execute("PRAGMA page_count").fetchone()[0]
        spool._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full now
        feed("B", 20)
        wait_until(lambda: counters.get("spool_commit_retries") >= 2, WAIT_S, "commit retried")
        assert spool.checkpoint("file:log") == "19"  # nothing moved past the held batch
        assert pipeline.holding and "cannot be written" in pipeline.holding  # degraded
        spool._db.execute("PRAGMA max_page_count = 1073741823")  # space is back
        feed("C", 40)
        wait_until(lambda: len(texts()) == 60, WAIT_S, "batches B and C stored")
    finally:
        pipeline.stop()
    got = texts()
    assert [t.split()[0] for t in got] == ["A"] * 20 + ["B"] * 20 + ["C"] * 20
    assert spool.checkpoint("file:log") == "59"
    assert counters.get("batch_errors") == 0 and pipeline.holding is None


def test_a_batch_that_fails_outside_inference_keeps_its_lines(tmp_path: Path) -> None:
    """Review, December 2026: a batch whose processing raised was left uncommitted, and
    the next batch of its source committed a later checkpoint: its lines were lost for
    good. They are published unclassified with their checkpoints now."""
    pipeline, queue, spool, counters = real_pipeline(tmp_path)
    alerts, failures = pipeline._alerts, [1]

    def failing_once(*args: object, **kwargs: object) -> list[tuple[str, bytes]]:
        if failures:
            failures.pop()
            raise RuntimeError("a bug in the alert policy")
        return alerts(*args, **kwargs)  # type: ignore[arg-type]

    pipeline._alerts = failing_once  # type: ignore[method-assign]
    pipeline.start()
    try:
        for i in range(10):
            queue.put(Line("file:log", f"pump cycle {i} complete", time.time(),
                           checkpoint=str(i)))
        wait_until(lambda: spool.checkpoint("file:log") == "9", WAIT_S, "all lines committed")
    finally:
        pipeline.stop()
    items = [item for m in spool.pending(0, 1000) if "/results/" in m.topic
             for item in json.loads(m.payload)["items"]]
    assert [item["text"] for item in items] == [f"pump cycle {i} complete" for i in range(10)]
    assert items[0]["label"] == "unclassified" and counters.get("batch_errors") == 1


def test_a_line_is_acknowledged_only_once_its_result_is_committed(tmp_path: Path) -> None:
    """An MQTT source acknowledges its message to the broker through ``Line.ack``: called
    after the commit, never while the batch is held (a crash then would lose a line the
    broker believes delivered), and for a failed batch once it is kept unclassified."""
    pipeline, queue, spool, counters = real_pipeline(tmp_path)
    acked: list[str] = []
    alerts, failures = pipeline._alerts, [1]

    def failing_once(*args: object, **kwargs: object) -> list[tuple[str, bytes]]:
        if failures and any(line.text.startswith("C") for line in args[1]):  # type: ignore[attr-defined]
            failures.pop()
            raise RuntimeError("a bug in the alert policy")
        return alerts(*args, **kwargs)  # type: ignore[arg-type]

    pipeline._alerts = failing_once  # type: ignore[method-assign]

    events: list[str] = []  # the spool's statements and the acknowledgements, in order
    spool._db.set_trace_callback(
        lambda sql: events.append(sql) if sql.startswith(("PRAGMA synchronous", "COMMIT"))
        else None)

    def feed(group: str) -> None:
        queue_whole(queue, [Line("mqtt:s/#", f"{group} reading {i} ok", time.time(),
                                 ack=lambda text=f"{group}{i}": (acked.append(text),
                                                                 events.append("ack")))
                            for i in range(20)])

    pipeline.start()
    try:
        # Lines nobody acknowledges (a file's) commit as before: no sync of their own.
        queue.put(Line("file:log", "pump cycle 1 complete", time.time(), checkpoint="1"))
        wait_until(lambda: spool.checkpoint("file:log") == "1", WAIT_S, "file line committed")
        assert events == ["COMMIT"]
        feed("A")
        wait_until(lambda: len(acked) == 20, WAIT_S, "batch A acknowledged")
        # Acknowledged only after a commit synced to disk (a power cut after the
        # acknowledgement must not lose what the broker will not send again).
        first_ack = events.index("ack")
        assert events[1:first_ack] == ["PRAGMA synchronous=FULL", "COMMIT",
                                       "PRAGMA synchronous=NORMAL"], events[:first_ack]
        pages = spool._db.execute("PRAGMA page_count").fetchone()[0]
        spool._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full now
        feed("B")
        wait_until(lambda: counters.get("spool_commit_retries") >= 2, WAIT_S, "commit retried")
        assert len(acked) == 20  # held, not acknowledged
        spool._db.execute("PRAGMA max_page_count = 1073741823")
        wait_until(lambda: len(acked) == 40, WAIT_S, "batch B acknowledged")
        feed("C")  # its batch fails outside inference: acknowledged once kept unclassified
        wait_until(lambda: len(acked) == 60, WAIT_S, "batch C acknowledged")
    finally:
        pipeline.stop()
    assert acked == [f"{g}{i}" for g in "ABC" for i in range(20)]
    assert counters.get("batch_errors") == 1
