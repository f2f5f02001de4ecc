import pytest

from agent.metrics import Counters
from agent.spool import Spool

pytestmark = pytest.mark.unit


def make(tmp_path, max_messages=1000, max_bytes=1 << 20):
    c = Counters()
    return Spool(tmp_path / "spool.sqlite", max_messages, max_bytes, c), c


def test_commit_pending_ack_in_order(tmp_path):
    s, c = make(tmp_path)
    s.commit([("t/a", b"1"), ("t/a", b"2")], {"src": "cp-2"})
    s.commit([("t/a", b"3")], {"src": "cp-3"})
    rows = s.pending(0, 10)
    assert [r.payload for r in rows] == [b"1", b"2", b"3"]
    assert s.checkpoint("src") == "cp-3"
    s.ack([rows[0].id, rows[1].id])
    assert [r.payload for r in s.pending(0, 10)] == [b"3"]
    assert s.depth() == (1, 1)
    assert c.get("published") == 2


def test_survives_reopen_with_seqs_and_checkpoints(tmp_path):
    s, _ = make(tmp_path)
    assert s.next_seq("results/default") == 1
    assert s.next_seq("results/default") == 2
    s.commit([("t", b"x")], {"f": "42"})
    s.close()
    s2, _ = make(tmp_path)
    assert s2.next_seq("results/default") == 3
    assert s2.checkpoint("f") == "42"
    assert s2.depth() == (1, 1)


def test_bound_drops_oldest_and_counts(tmp_path):
    s, c = make(tmp_path, max_messages=100)
    for i in range(250):
        s.commit([("t", str(i).encode())], {})
    rows = s.pending(0, 1000)
    assert len(rows) == 100
    assert rows[0].payload == b"150" and rows[-1].payload == b"249"
    assert c.get("spool_dropped") == 150


def test_byte_bound(tmp_path):
    s, c = make(tmp_path, max_messages=10_000, max_bytes=1 << 20)
    blob = b"x" * 10_000
    for _ in range(200):
        s.commit([("t", blob)], {})
    count, size = s.depth()
    assert size <= 1 << 20
    assert c.get("spool_dropped") == 200 - count


def test_at_the_bound_results_go_before_alerts_and_ota_events(tmp_path):
    """Review, December 2026: a flood of lines while the broker is away pushed the alerts
    of the outage's start out of the spool with the results."""
    s, c = make(tmp_path, max_messages=100)
    root = "nanofleet/v1/dev/d1"
    s.commit([(f"{root}/alerts", b"alert-0"), (f"{root}/ota", b"ota-0")], {})
    for i in range(300):
        s.commit([(f"{root}/results/logs", str(i).encode())], {})
    rows = s.pending(0, 1000)
    assert len(rows) == 100
    assert [r.payload for r in rows[:2]] == [b"alert-0", b"ota-0"]  # kept, in order
    assert rows[2].payload == b"202" and rows[-1].payload == b"299"
    assert c.get("spool_dropped") == 202 and c.get("spool_dropped_alerts") == 0
    # With nothing but alerts left, the oldest of them go, counted apart.
    s2, c2 = make(tmp_path / "only-alerts", max_messages=10)
    for i in range(15):
        s2.commit([(f"{root}/alerts", str(i).encode())], {})
    assert s2.pending(0, 100)[0].payload == b"5"
    assert c2.get("spool_dropped_alerts") == 5


def test_a_commit_sqlite_rolled_back_itself_leaves_the_counts_true(tmp_path, monkeypatch):
    """Review, December 2026: on a real ENOSPC SQLite rolls the transaction back itself;
    the spool's ROLLBACK then raised "no transaction is active" and skipped the recount,
    so each of the pipeline's held retries (one per 5 s while the disk is full) left the
    counts inflated by the batch. Once they passed the bound, every later commit deleted
    its own results and alerts in the same transaction: nothing was published until a
    restart. Here SQLite's own rollback is made by hand, then the disk-full error."""
    import sqlite3

    s, c = make(tmp_path, max_messages=10)
    for i in range(8):
        s.commit([("dev/results/logs", f"r{i}".encode())], {})
    bound = Spool._enforce_bound

    def full_disk(self, cur):
        bound(self, cur)
        self._db.execute("ROLLBACK")  # what SQLite does on SQLITE_FULL here
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Spool, "_enforce_bound", full_disk)
    for _ in range(20):  # the held batch, retried
        with pytest.raises(sqlite3.OperationalError, match="disk is full"):
            s.commit([("dev/results/logs", b"held"), ("dev/alerts", b"alert")], {})
    assert s.depth()[0] == 8 and c.get("spool_dropped") == 0  # nothing was deleted
    monkeypatch.setattr(Spool, "_enforce_bound", bound)
    s.commit([("dev/results/logs", b"held"), ("dev/alerts", b"alert")], {})
    payloads = [r.payload for r in s.pending(0, 100)]
    assert payloads == [f"r{i}".encode() for i in range(8)] + [b"held", b"alert"]
    assert s.depth()[0] == 10 and c.get("spool_dropped") == 0


def test_an_acknowledgement_the_disk_refuses_leaves_no_transaction_open(tmp_path):
    """A DELETE refused mid-transaction (a full disk) left the transaction open, and the
    next commit's BEGIN failed on it. A trigger refuses the delete here the same way
    (RAISE(FAIL) aborts the statement and keeps the transaction)."""
    import sqlite3

    s, _ = make(tmp_path)
    s.commit([("t", b"1")], {})
    s._db.execute("CREATE TEMP TRIGGER refuse BEFORE DELETE ON outbox "
                  "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END")
    [row] = s.pending(0, 10)
    with pytest.raises(sqlite3.IntegrityError, match="disk is full"):
        s.ack([row.id])
    assert not s._db.in_transaction
    s._db.execute("DROP TRIGGER refuse")
    s.commit([("t", b"2")], {})  # the next commit works
    s.ack([row.id])
    assert [r.payload for r in s.pending(0, 10)] == [b"2"]
