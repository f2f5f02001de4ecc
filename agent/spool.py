"""The durable outbox: every result and alert is written here before it is sent.

One SQLite database (WAL) holds the outgoing messages, the sources' checkpoints
and the per-stream sequence numbers. A batch's messages, the checkpoints of the
lines it covers and the sequence counters are committed in *one* transaction, so
after a crash or kill -9 the agent resumes each source exactly after the last
line whose result is durable: nothing re-read, nothing skipped. The sender
deletes a message only after the broker's PUBACK.

Bounded by message count and bytes: at the bound the oldest messages are dropped
and counted (``spool_dropped``) — like Greengrass's spooler, and for the same
reason: on a full device the newest data is the most useful.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.metrics import Counters

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (source TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS seqs (stream TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Outgoing:
    id: int
    topic: str
    payload: bytes
    created: float


class Spool:
    def __init__(self, path: Path, max_messages: int, max_bytes: int, counters: Counters) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.counters = counters
        self._lock = threading.Lock()
        self._seq_lock = threading.Lock()  # never held while taking _lock: no lock-order cycle
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        try:
            self._open()
        except BaseException:
            self._db.close()  # a full disk refused it; the caller may try again
            raise

    def _open(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed transaction survives a process crash (kill -9);
        # only a power cut may lose the last few, which the sources then re-read.
        self._db.execute("PRAGMA synchronous=NORMAL")
        # 1 MiB page cache (default 2): the outbox is written and read sequentially.
        self._db.execute("PRAGMA cache_size=-1024")
        self._db.executescript(SCHEMA)
        row = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])
        self._seqs: dict[str, int] = dict(self._db.execute("SELECT stream, value FROM seqs"))
        self._publish_gauges()

    # --- sequence numbers --------------------------------------------------------------
    def next_seq(self, stream: str) -> int:
        """Next sequence number of a stream; made durable by the next commit()."""
        # A lock of its own: the main loop takes a number for each metrics message, and
        # must not wait behind a commit holding the spool's lock through its fsync.
        with self._seq_lock:
            value = self._seqs.get(stream, 0) + 1
            self._seqs[stream] = value
            return value

    def last_seq(self, stream: str) -> int:
        """The last number :meth:`next_seq` gave for ``stream`` (0: none yet)."""
        with self._seq_lock:
            return self._seqs.get(stream, 0)

    # --- writing -----------------------------------------------------------------------
    def commit(self, messages: list[tuple[str, bytes]], checkpoints: dict[str, str],
               durable: bool = False) -> None:
        """Append messages and move checkpoints forward, atomically. ``durable``: on disk
        before this returns (the WAL synced: ``synchronous=FULL`` for this transaction),
        for lines whose source is told they are safe (an MQTT acknowledgement: unlike a
        file, the broker cannot send them again after a power cut)."""
        now = time.time()
        with self._lock:
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")
            try:
                self._commit_locked(messages, checkpoints, now)
            finally:
                if durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")
        self.counters.inc("spool_written", len(messages))
        self._publish_gauges()

    def _commit_locked(self, messages: list[tuple[str, bytes]], checkpoints: dict[str, str],
                       now: float) -> None:
        try:
            with self._transaction() as cur:
                cur.executemany("INSERT INTO outbox(topic, payload, created) VALUES (?, ?, ?)",
                                [(t, p, now) for t, p in messages])
                cur.executemany("INSERT OR REPLACE INTO checkpoints(source, value) "
                                "VALUES (?, ?)", list(checkpoints.items()))
                with self._seq_lock:
                    seqs = list(self._seqs.items())
                cur.executemany("INSERT OR REPLACE INTO seqs(stream, value) VALUES (?, ?)",
                                seqs)
                self._count += len(messages)
                self._bytes += sum(len(p) for _, p in messages)
                dropped, dropped_other = self._enforce_bound(cur)
        except BaseException:
            # Recount whatever happened: a held retry that left the counts inflated made
            # each later commit delete its own results (review, December 2026).
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM outbox").fetchone()
            self._count, self._bytes = int(row[0]), int(row[1])
            raise
        # Counted once the deletions are committed (a rolled-back one dropped nothing).
        if dropped:
            self.counters.inc("spool_dropped", dropped)
        if dropped_other:
            self.counters.inc("spool_dropped_alerts", dropped_other)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """BEGIN ... COMMIT (the caller holds the spool's lock). On an error the
        transaction is rolled back only while it is still open: SQLite rolls some back
        itself (a real ENOSPC), and a ROLLBACK then raised "no transaction is active" in
        place of the real error; a statement the disk refuses can leave it open, and the
        next BEGIN failed on it (review, December 2026)."""
        cur = self._db.cursor()
        cur.execute("BEGIN")
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                cur.execute("ROLLBACK")
            raise

    def _enforce_bound(self, cur: sqlite3.Cursor) -> tuple[int, int]:
        """At the bound the oldest *results* go first, alerts and OTA events only when
        nothing else is left: a flood of lines while the broker is away must not push
        the alerts of the outage's start out (review, December 2026). Returns how many
        were deleted, and how many of them were not results."""
        dropped = dropped_other = 0
        while self._count > self.max_messages or self._bytes > self.max_bytes:
            # Over the count: drop exactly the excess. Over the bytes: drop a small chunk
            # and look again (message sizes vary).
            n = min(max(self._count - self.max_messages,
                        64 if self._bytes > self.max_bytes else 1), 10_000)
            rows = cur.execute("SELECT id, LENGTH(payload) FROM outbox WHERE topic GLOB "
                               "'*/results/*' ORDER BY id LIMIT ?", (n,)).fetchall()
            if not rows:
                rows = cur.execute("SELECT id, LENGTH(payload) FROM outbox ORDER BY id LIMIT ?",
                                   (n,)).fetchall()
                dropped_other += len(rows)
            if not rows:
                break
            cur.executemany("DELETE FROM outbox WHERE id = ?", [(r[0],) for r in rows])
            self._count -= len(rows)
            self._bytes -= sum(int(r[1]) for r in rows)
            dropped += len(rows)
        return dropped, dropped_other

    # --- reading / acknowledging ---------------------------------------------------------
    def pending(self, after_id: int, limit: int) -> list[Outgoing]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, created FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit)).fetchall()
        return [Outgoing(int(r[0]), r[1], bytes(r[2]), float(r[3])) for r in rows]

    def ack(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._lock:
            with self._transaction() as cur:
                sizes = cur.execute(
                    f"SELECT COALESCE(SUM(LENGTH(payload)), 0), COUNT(*) FROM outbox "
                    f"WHERE id IN ({','.join('?' * len(ids))})", ids).fetchone()
                cur.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(ids))})",
                            ids)
            self._bytes -= int(sizes[0])
            self._count -= int(sizes[1])
        self.counters.inc("published", int(sizes[1]))
        self._publish_gauges()

    def depth(self) -> tuple[int, int]:
        """(messages, bytes) waiting. Without the lock: the main loop's status line and
        watchdog ping call this every tick, and a commit holds the lock through its fsync
        (seconds on a slow card); two int reads may be a commit apart, which a status
        line can bear."""
        return self._count, self._bytes

    def checkpoint(self, source: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM checkpoints WHERE source = ?",
                                   (source,)).fetchone()
        return None if row is None else str(row[0])

    def _publish_gauges(self) -> None:
        self.counters.set_gauge("spool_depth", float(self._count))
        self.counters.set_gauge("spool_bytes", float(self._bytes))

    def close(self) -> None:
        with self._lock:
            self._db.close()
