"""The file source against real files: appends, rotation, copytruncate, restarts."""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from agent.config import MqttConfig
from agent.metrics import Counters
from agent.sources.file import FileSource, FileSourceConfig
from agent.sources.file_position import (
    Candidate,
    FileCheckpoint,
    FileIdentity,
    is_rotated_sibling,
    plan_resume,
)
from agent.sources.mqtt_topic import AgentBroker
from agent.sources.registry import SourceConfig, build_source, default_source_name
from tests.support.line_sink import ListSink, wait_until

POLL = 0.02


class Harness:
    """Starts sources on one path; every source gets its own sink, counters shared."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counters = Counters()
        self.sources: list[FileSource] = []

    def start(self, checkpoint: str | None = None, start_at: str = "beginning",
              max_line_bytes: int = 4096, sink: ListSink | None = None,
              grace: float = 2.0, drain: float = 300.0) -> tuple[FileSource, ListSink]:
        cfg = FileSourceConfig.model_validate({
            "kind": "file", "path": self.path, "start_at": start_at,
            "poll_interval_s": POLL, "rotate_grace_s": grace, "rotated_drain_s": drain})
        sink = sink or ListSink()
        src = FileSource(f"file:{self.path}", cfg, sink, self.counters, max_line_bytes)
        src.start(checkpoint)
        self.sources.append(src)
        return src, sink


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path / "pump.log")
    yield harness
    for s in harness.sources:
        s.stop()


def append(path: Path, *lines: str, raw: bytes = b"") -> None:
    with open(path, "ab") as f:
        f.write("".join(f"{ln}\n" for ln in lines).encode() + raw)


def test_follows_appends_and_waits_for_partial_line(h: Harness) -> None:
    append(h.path, "a1", "a2")
    src, sink = h.start()
    assert sink.wait_count(2) == ["a1", "a2"]
    append(h.path, raw=b"half of a li")
    time.sleep(5 * POLL)
    assert len(sink.lines) == 2  # no newline yet: not a line
    append(h.path, raw=b"ne\r\n\n\nb3\n")
    assert sink.wait_count(4) == ["a1", "a2", "half of a line", "b3"]  # blank lines skipped
    assert h.counters.get("lines_in") == 4
    info = src.describe()
    assert info["state"] == "following" and info["offset"] == h.path.stat().st_size
    assert info["inode"] == h.path.stat().st_ino


def test_start_at_end_reads_only_new_lines(h: Harness) -> None:
    append(h.path, "old1", raw=b"old partial")
    _, sink = h.start(start_at="end")
    append(h.path, raw=b" rest\nnew1\n")  # at once: start() fixed the position already
    assert sink.wait_count(1) == ["new1"]  # the line being written at start is skipped


def test_missing_file_waits_then_reads_from_start(h: Harness) -> None:
    src, sink = h.start(start_at="end")
    wait_until(lambda: "waiting" in src.describe()["state"])
    append(h.path, "first", "second")
    assert sink.wait_count(2) == ["first", "second"]


def test_rename_rotation_finishes_old_file_then_switches(h: Harness) -> None:
    append(h.path, "a1")
    src, sink = h.start(drain=0)  # the old file let go at the switch
    sink.wait_count(1)
    os.rename(h.path, h.path.with_name("pump.log.1"))
    h.path.touch()                      # logrotate `create`: new empty file at once
    time.sleep(5 * POLL)
    append(h.path.with_name("pump.log.1"), "a2", raw=b"a3 no newline")  # not reopened yet
    time.sleep(5 * POLL)
    append(h.path, "b1", "b2")          # the writer reopened its log
    assert sink.wait_count(5) == ["a1", "a2", "a3 no newline", "b1", "b2"]
    assert src.rotations == 1 and h.counters.get("source_rotations") == 1
    append(h.path, "b3")
    assert sink.wait_count(6)[-1] == "b3"


def test_rotation_to_empty_file_switches_after_grace(h: Harness) -> None:
    append(h.path, "a1")
    src, sink = h.start(grace=0.1)
    sink.wait_count(1)
    os.rename(h.path, h.path.with_name("pump.log.1"))
    h.path.touch()
    wait_until(lambda: src.rotations == 1)
    append(h.path, "b1")
    assert sink.wait_count(2) == ["a1", "b1"]


def test_copytruncate(h: Harness) -> None:
    append(h.path, "a1", "a2")
    src, sink = h.start()
    sink.wait_count(2)
    shutil.copyfile(h.path, h.path.with_name("pump.log.1"))
    os.truncate(h.path, 0)
    wait_until(lambda: src.truncations == 1)
    append(h.path, "b1")
    assert sink.wait_count(3) == ["a1", "a2", "b1"]


def test_copytruncate_while_waiting_for_room_reads_the_new_content_once(h: Harness) -> None:
    """Review, December 2026: a copytruncate while the source waited on a full queue, and
    the writer past the old offset before room came back: the new content was read at the
    old offset as the rest of the old file, then again from its start (1,943 of 3,000 new
    lines twice)."""
    old = [f"2026-01-01 old {i:05d} " + "x" * 40 for i in range(3000)]
    append(h.path, *old)
    sink = ListSink(capacity=100)  # a slow pipeline: the source waits mid-file
    src, sink = h.start(sink=sink)
    sink.wait_count(100)
    time.sleep(5 * POLL)
    shutil.copyfile(h.path, h.path.with_name("pump.log.1"))
    os.truncate(h.path, 0)
    new = [f"2026-01-02 new {i:05d} " + "y" * 40 for i in range(3000)]
    append(h.path, *new)
    with sink.cond:  # room again
        sink.capacity = None
        sink.cond.notify_all()
    wait_until(lambda: sum(" new " in t for t in sink.texts()) >= 3000, timeout=30,
               what="the new content")
    time.sleep(10 * POLL)
    got = [t for t in sink.texts() if " new " in t]
    assert got == new  # each once, in order
    # the old lines read before, the last one maybe cut where the old file ended for us
    assert all(any(o.startswith(t) for o in old) for t in sink.texts() if " new " not in t)
    assert src.truncations == 1


def test_truncated_and_rewritten_past_offset_is_noticed(h: Harness) -> None:
    append(h.path, "2024-01-01 first")
    src, sink = h.start()
    sink.wait_count(1)
    wait_until(lambda: src.state == "following")
    time.sleep(3 * POLL)                # idle at the end of the file
    with open(h.path, "r+b") as f:      # rewritten in place, longer than before
        f.write(b"2024-02-02 other content\nand more\n")
    assert sink.wait_count(3) == ["2024-01-01 first", "2024-02-02 other content", "and more"]
    assert src.truncations == 1


def test_long_lines_truncated_in_bounded_memory_and_invalid_utf8(h: Harness) -> None:
    big = b"x" * 300_000                # spans several read chunks
    append(h.path, raw=b"short\n" + big + b"\n" + b"bad \xff\xfe byte\n" + b"y" * 150)
    src, sink = h.start(max_line_bytes=100)
    lines = sink.wait_for(lambda ls: len(ls) >= 4)
    assert [ln.text for ln in lines[:3]] == ["short", "x" * 100, "bad \ufffd\ufffd byte"]
    assert lines[1].truncated and not lines[0].truncated
    # The unfinished 150-byte line is emitted once it exceeds the limit.
    assert lines[3].text == "y" * 100 and lines[3].truncated
    assert h.counters.get("lines_truncated") == 2
    assert h.counters.get("lines_invalid_utf8") == 1
    # Its rest is skipped up to the newline, also across a restart.
    src.stop()
    append(h.path, raw=b"y" * 50 + b"\nafter\n")
    _, sink2 = h.start(sink.last_checkpoint())
    assert sink2.wait_count(1) == ["after"]


def _restart(h: Harness, sink: ListSink, src: FileSource,
             checkpoint: str | None) -> tuple[FileSource, ListSink, list[str], str | None]:
    """Stop, collect what the stopped source delivered, start anew from the last
    checkpoint (the pipeline keeps the last one it persisted, from any run)."""
    src.stop()
    assert not src.alive()
    texts = sink.texts()
    checkpoint = sink.last_checkpoint() or checkpoint
    src2, sink2 = h.start(checkpoint)
    return src2, sink2, texts, checkpoint


def test_restart_resumes_exactly(h: Harness) -> None:
    append(h.path, "a1", "a2")
    src, sink = h.start()
    sink.wait_count(2)
    src.stop()
    append(h.path, "a3")
    _, sink2 = h.start(sink.last_checkpoint())
    assert sink2.wait_count(1) == ["a3"]
    time.sleep(5 * POLL)
    assert sink2.texts() == ["a3"]
    cp = FileCheckpoint.decode(sink2.last_checkpoint() or "")
    assert cp.off == h.path.stat().st_size and cp.ino == h.path.stat().st_ino


def test_restart_after_rotations_while_stopped(h: Harness) -> None:
    append(h.path, "a1", "a2")
    src, sink = h.start()
    sink.wait_count(2)
    src.stop()
    append(h.path, "a3")                          # written after our checkpoint
    os.rename(h.path, h.path.with_name("pump.log.2"))
    append(h.path, "b1")
    time.sleep(0.01)
    os.rename(h.path, h.path.with_name("pump.log.1"))
    append(h.path, "c1")
    src2, sink2 = h.start(sink.last_checkpoint())
    assert sink2.wait_count(3) == ["a3", "b1", "c1"]
    assert "rotated while stopped" in src2.resume_note


def test_restart_when_rotated_file_is_gone_starts_new_file(h: Harness) -> None:
    append(h.path, "a1")
    src, sink = h.start()
    sink.wait_count(1)
    src.stop()
    os.rename(h.path, h.path.with_name("pump.log.1.gz"))  # compressed: not readable as text
    append(h.path, "b1")
    src2, sink2 = h.start(sink.last_checkpoint())
    assert sink2.wait_count(1) == ["b1"]
    assert "gone" in src2.resume_note


def test_restart_after_copytruncate_while_stopped(h: Harness) -> None:
    append(h.path, "a1 with a long enough line", "a2 with a long enough line")
    src, sink = h.start()
    sink.wait_count(2)
    src.stop()
    os.truncate(h.path, 0)
    append(h.path, "b1")                          # shorter than the old offset
    _, sink2 = h.start(sink.last_checkpoint())
    assert sink2.wait_count(1) == ["b1"]


def test_restart_after_a_copytruncate_reads_the_rest_of_the_copy(h: Harness) -> None:
    """Review, December 2026: logrotate's copytruncate while the agent was stopped put the
    lines after our checkpoint in a new inode (pump.log.1), and they were never read."""
    first = [f"2026-01-01T00:00:0{i} a{i} a line long enough to name its file" for i in (1, 2)]
    append(h.path, *first)
    src, sink = h.start()
    sink.wait_count(2)
    src.stop()
    append(h.path, "2026-01-01T00:00:04 a3 written after our checkpoint")
    shutil.copyfile(h.path, h.path.with_name("pump.log.1"))  # copytruncate
    os.truncate(h.path, 0)
    append(h.path, "2026-01-01T00:00:05 b1 after the rotation")
    src2, sink2 = h.start(sink.last_checkpoint())
    assert sink2.wait_count(2) == ["2026-01-01T00:00:04 a3 written after our checkpoint",
                                   "2026-01-01T00:00:05 b1 after the rotation"]
    assert "copied away (copytruncate) while stopped" in src2.resume_note
    assert h.counters.get("source_gaps") == 0


def test_restart_into_a_rotated_file_its_writer_still_writes(h: Harness) -> None:
    """Review, December 2026: resumed in pump.log.1 after a rotation while stopped, the
    source read it to its end and let go; the writer, not yet told to reopen its log,
    wrote on there, and those lines were lost."""
    with open(h.path, "ab", buffering=0) as writer:  # keeps its descriptor
        writer.write(b"2026 a1\n2026 a2\n")
        src, sink = h.start()
        sink.wait_count(2)
        src.stop()
        os.rename(h.path, h.path.with_name("pump.log.1"))  # rotated while stopped
        h.path.touch()
        writer.write(b"2026 a3 before restart\n")
        src2, sink2 = h.start(sink.last_checkpoint())
        sink2.wait_count(1)
        wait_until(lambda: src2.state == "following", what="on to the live file")
        writer.write(b"2026 a4 writer not reopened yet\n")
        sink2.wait_count(2)
    append(h.path, "2026 b1 new file")  # reopened (postrotate)
    assert sink2.wait_count(3) == ["2026 a3 before restart", "2026 a4 writer not reopened yet",
                                   "2026 b1 new file"]


def test_bad_checkpoint_is_reported_and_ignored(h: Harness) -> None:
    append(h.path, "a1")
    src, sink = h.start("not json")
    assert sink.wait_count(1) == ["a1"]
    assert src.last_error and "checkpoint" in src.last_error


def test_backpressure_blocks_without_loss_and_stop_is_prompt(h: Harness) -> None:
    append(h.path, *[f"l{i}" for i in range(50)])
    sink = ListSink(capacity=10)
    src, _ = h.start(sink=sink)
    wait_until(lambda: sink.refused > 0)
    assert len(sink.lines) == 10
    sink.capacity = None                          # room again: the rest arrives, in order
    assert sink.wait_count(50) == [f"l{i}" for i in range(50)]
    sink.capacity = 50
    append(h.path, "blocked")
    wait_until(lambda: sink.refused > 1)
    t = time.monotonic()
    src.stop()
    assert not src.alive() and time.monotonic() - t < 1.0


def test_random_restarts_during_rotations_lose_and_repeat_nothing(h: Harness) -> None:
    """A writer appends and rotates (rename, numbered) while the source is stopped and
    restarted at random moments from its last checkpoint."""
    total = 3000
    rng = random.Random(7)
    done = threading.Event()

    def writer() -> None:
        for i in range(total):
            append(h.path, f"line {i:05d} {'z' * rng.randrange(0, 80)}")
            if i % 400 == 399:
                os.rename(h.path, h.path.with_name(f"pump.log.{i // 400 + 1}"))
            if i % 20 == 0:
                time.sleep(0.005)
        done.set()

    h.path.touch()
    src, sink = h.start()
    got: list[str] = []
    cp: str | None = None
    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        time.sleep(rng.uniform(0.01, 0.05))
        src, sink, texts, cp = _restart(h, sink, src, cp)
        got += texts
    thread.join()
    deadline = time.monotonic() + 20
    while len(got) + len(sink.lines) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    got += sink.texts()
    assert [g.split()[1] for g in got] == [f"{i:05d}" for i in range(total)]


def test_config_rejects_relative_path_and_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="absolute"):
        FileSourceConfig.model_validate({"kind": "file", "path": "var/log/x"})
    with pytest.raises(ValidationError, match="extra"):
        FileSourceConfig.model_validate({"kind": "file", "path": "/x", "follow": True})


def test_throughput(h: Harness) -> None:
    n = 50_000
    append(h.path, *[f"2024-05-01T12:00:00 pump[42]: pressure {i} bar nominal" for i in range(n)])
    t = time.monotonic()
    _, sink = h.start()
    sink.wait_count(n, timeout=60)
    rate = n / (time.monotonic() - t)
    print(f"file source: {rate:,.0f} lines/s")
    assert rate > 5_000


def test_rotated_sibling_names() -> None:
    live = Path("/var/log/pump.log")
    assert is_rotated_sibling(live, "pump.log.1")
    assert is_rotated_sibling(live, "pump.log-20240501")
    assert is_rotated_sibling(live, "pump.log.2024-05-01")
    assert not is_rotated_sibling(live, "pump.log.1.gz")
    assert not is_rotated_sibling(live, "pump.log.bak")
    assert not is_rotated_sibling(live, "other.log.1")


def test_plan_resume_decisions() -> None:
    ident = FileIdentity("/l/pump.log", 1, 10, b"2024-05-01 first line\n")
    cp = FileCheckpoint.decode(ident.checkpoint(22))
    live = Candidate("/l/pump.log", 1, 10, 40, 5, b"2024-05-01 first line\nmore\n")
    assert plan_resume(cp, "/l/pump.log", "end", live, []).live_offset == 22
    other = plan_resume(cp, "/l/other.log", "end", live, [])
    assert other.live_offset is None and "ignored" in other.note
    reused = Candidate("/l/pump.log", 1, 10, 40, 5, b"2024-06-01 a new file\n")
    assert plan_resume(cp, "/l/pump.log", "end", reused, []).lost
    new = Candidate("/l/pump.log", 1, 11, 40, 9, b"x")
    old = Candidate("/l/pump.log.2", 1, 10, 30, 3, ident.head)
    mid = Candidate("/l/pump.log.1", 1, 12, 30, 4, b"y")
    stale = Candidate("/l/pump.log.3", 1, 13, 30, 1, b"z")
    plan = plan_resume(cp, "/l/pump.log", "end", new, [stale, mid, old])
    assert [(s.key, s.offset) for s in plan.backlog] == [("/l/pump.log.2", 22),
                                                         ("/l/pump.log.1", 0)]
    assert plan.live_offset == 0


def test_registry_parses_and_builds_each_kind(tmp_path: Path) -> None:
    adapter = TypeAdapter(SourceConfig)
    cfg = adapter.validate_python({"kind": "file", "path": str(tmp_path / "a.log")})
    assert isinstance(cfg, FileSourceConfig)
    assert default_source_name(cfg) == f"file:{tmp_path / 'a.log'}"
    src = build_source(cfg, ListSink(), Counters(), 100, AgentBroker(MqttConfig(host="127.0.0.1")))
    assert isinstance(src, FileSource) and src.name == default_source_name(cfg)
    jcfg = adapter.validate_python({"kind": "journald", "units": ["pump"], "name": "j"})
    assert default_source_name(jcfg) == "journald:pump.service"
    assert build_source(jcfg, ListSink(), Counters(), 100,
                        AgentBroker(MqttConfig(host="127.0.0.1"))).name == "j"
    with pytest.raises(ValidationError, match="serial"):
        adapter.validate_python({"kind": "serial"})


def test_a_fifo_at_the_path_is_not_read_and_does_not_block(h: Harness) -> None:
    """Whoever writes the log's directory put a FIFO there (review, December 2026: open()
    blocked for ever; at start, in the daemon's main thread, so the agent was never ready
    and ignored SIGTERM). Refused as not a regular file, retried; a real file is read."""
    os.mkfifo(h.path)
    started = threading.Thread(target=h.start, daemon=True)
    started.start()
    started.join(5)
    assert not started.is_alive(), "start() blocked on the FIFO"
    src = h.sources[0]
    wait_until(lambda: src.last_error is not None and "not a regular file" in src.last_error)
    h.path.unlink()
    append(h.path, "after the fifo")
    sink = src.sink
    assert isinstance(sink, ListSink) and sink.wait_count(1) == ["after the fifo"]


@pytest.mark.skipif(os.geteuid() != 0, reason="making a symlink owned by another user needs root")
def test_a_symlink_another_user_made_is_not_followed(h: Harness, tmp_path: Path) -> None:
    """The log replaced by a link to a file the agent may read and its writer may not (the
    agent's device key, auth.log): before, its lines were read and published. A link made
    by root or the agent itself (a packaged `current` link) is followed."""
    secret = tmp_path / "device.key"
    secret.write_text("-----BEGIN EC PRIVATE KEY-----\n")
    h.path.symlink_to(secret)
    os.lchown(h.path, 65534, 65534)
    src, sink = h.start()
    wait_until(lambda: src.last_error is not None and "symbolic link" in src.last_error)
    assert sink.lines == []
    h.path.unlink()
    real = tmp_path / "pump-2026.log"
    append(real, "through a link root made")
    h.path.symlink_to(real)
    assert sink.wait_count(1) == ["through a link root made"]


ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0,
                               reason="files owned by another user need root to make")


def _wait_refused(src: FileSource, sink: ListSink, link: Path) -> str:
    """The source's last_error once it names ``link`` as a symbolic link not followed;
    nothing may have been read (checked first: a line read ends the wait)."""
    def refused() -> bool:
        return src.last_error is not None and "symbolic link" in src.last_error \
            and str(link) in src.last_error
    wait_until(lambda: refused() or bool(sink.lines), what="the refusal naming the link")
    assert sink.texts() == []
    assert refused(), src.last_error
    assert src.last_error is not None
    return src.last_error


@ROOT_ONLY
def test_a_root_link_into_a_directory_another_user_writes_does_not_lead_on(
        h: Harness, tmp_path: Path) -> None:
    """Review, December 2026 (second round): root made `live -> d/app.log`, `d` belongs to
    another user, who put a link of theirs at `d/app.log` pointing at a file only the
    agent (group adm) may read. Only the last component was checked, then open() followed
    the rest of the chain: the secret was read and published. Every link of the chain is
    now checked, and the user's link (in a directory they write) is not followed."""
    secret = tmp_path / "secret" / "shadow"
    secret.parent.mkdir()
    secret.write_text("root:$6$SECRETHASH:19000:0:99999:7:::\n")
    d = tmp_path / "d"
    d.mkdir(mode=0o755)
    os.chown(d, 65534, 65534)
    (d / "app.log").symlink_to(secret)
    os.lchown(d / "app.log", 65534, 65534)
    h.path = tmp_path / "live"
    h.path.symlink_to("d/app.log")  # root's, in a directory only root writes
    src, sink = h.start()
    error = _wait_refused(src, sink, d / "app.log")
    assert "65534" in error
    time.sleep(5 * POLL)
    assert sink.lines == []


@ROOT_ONLY
def test_a_directory_on_the_path_replaced_by_a_link_is_not_followed(
        h: Harness, tmp_path: Path) -> None:
    """Review, December 2026 (second round): the followed path is `base/app/logs/x.log`
    and `base/app` belongs to another user, who replaced `logs` with a link to another
    service's log directory; the directories on the path were never checked, so that
    service's log (which the user may not read, the agent may) was read and published."""
    other = tmp_path / "apache2"
    other.mkdir()
    (other / "x.log").write_text("client 10.0.0.9 GET /admin?token=SECRET-TOKEN\n")
    app = tmp_path / "base" / "app"
    app.mkdir(parents=True, mode=0o755)
    os.chown(app, 65534, 65534)
    (app / "logs").symlink_to(other)
    os.lchown(app / "logs", 65534, 65534)
    h.path = app / "logs" / "x.log"
    src, sink = h.start()
    _wait_refused(src, sink, app / "logs")
    time.sleep(5 * POLL)
    assert sink.lines == []


@ROOT_ONLY
def test_a_packaged_link_root_made_is_followed_also_when_re_pointed(
        h: Harness, tmp_path: Path) -> None:
    """A root-owned `current` link in a root-owned 0755 directory (a package's, a deploy
    tool's) is followed; re-pointed by root to a new release (like a rotation), the
    source moves to the new file. A relative target is resolved from the link's
    directory, `..` included."""
    srv = tmp_path / "srv"
    for v in ("v2", "v3"):
        (srv / "releases" / v).mkdir(parents=True)
    os.chmod(srv, 0o755)
    append(srv / "releases" / "v2" / "app.log", "v2 line 1")
    h.path = srv / "current"
    h.path.symlink_to("releases/v2/app.log")
    src, sink = h.start()
    assert sink.wait_count(1) == ["v2 line 1"]
    append(srv / "releases" / "v2" / "app.log", "v2 line 2")
    assert sink.wait_count(2)[-1] == "v2 line 2"
    append(srv / "releases" / "v3" / "app.log", "v3 line 1")
    tmp_link = srv / ".current.new"
    tmp_link.symlink_to("../srv/releases/v3/app.log")
    os.rename(tmp_link, h.path)  # as `ln -sfn` then mv -T: atomic
    assert sink.wait_count(3) == ["v2 line 1", "v2 line 2", "v3 line 1"]
    assert src.last_error is None and src.rotations == 1


@ROOT_ONLY
def test_a_link_in_a_group_writable_directory_is_not_followed(
        h: Harness, tmp_path: Path) -> None:
    """Even root's own link is not followed where others may write its directory (0775):
    anyone in the group could have swapped it in between."""
    real = tmp_path / "real.log"
    append(real, "through a link in a shared directory")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o775)
    h.path = shared / "app.log"
    h.path.symlink_to(real)
    src, sink = h.start()
    error = _wait_refused(src, sink, h.path)
    assert "0775" in error
    time.sleep(5 * POLL)
    assert sink.lines == []


def test_a_directory_full_of_rotated_names_costs_bounded_fds_and_time(h: Harness) -> None:
    """Whoever may write the log's directory may fill it with rotated-looking names
    (review, December 2026): each restart and reload opened every one of them at once
    (5,000 ran the agent out of file descriptors). Now the newest 64 are looked at."""
    import resource

    append(h.path, "a1")
    src, sink = h.start()
    sink.wait_count(1)
    src.stop()
    append(h.path, "a2")  # after the checkpoint, then rotated away while stopped
    past = time.time() - 86_400
    for i in range(5_000):  # older than the real rotation: decoys
        decoy = h.path.with_name(f"pump.log.{i + 10}")
        decoy.write_bytes(b"decoy\n")
        os.utime(decoy, (past, past))
    os.rename(h.path, h.path.with_name("pump.log.1"))
    append(h.path, "b1")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 200, hard))
    try:
        started = time.monotonic()
        src2, sink2 = h.start(sink.last_checkpoint())
        took = time.monotonic() - started
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert sink2.wait_count(2) == ["a2", "b1"]
    assert src2.last_error is None and took < 5.0, (src2.last_error, took)
    assert "rotated while stopped" in src2.resume_note


def test_two_rotations_while_waiting_on_the_queue_lose_nothing(h: Harness) -> None:
    """Review, December 2026: the source waited on a full queue (back-pressure) while
    the log was rotated twice; it switched to the newest file, and the one live in
    between (B) was never read, with nothing counted."""
    append(h.path, *[f"A{i}" for i in range(10)])
    src, sink = h.start(sink=ListSink(capacity=3))
    sink.wait_count(3)
    time.sleep(0.3)  # blocked on the full sink
    os.rename(h.path, h.path.with_name("pump.log.1"))
    append(h.path, *[f"B{i}" for i in range(5)])
    time.sleep(0.01)
    os.rename(h.path.with_name("pump.log.1"), h.path.with_name("pump.log.2"))
    os.rename(h.path, h.path.with_name("pump.log.1"))
    append(h.path, "C0", "C1")
    with sink.cond:
        sink.capacity = None
        sink.cond.notify_all()
    assert sink.wait_count(17) == [*(f"A{i}" for i in range(10)),
                                   *(f"B{i}" for i in range(5)), "C0", "C1"]
    time.sleep(0.3)
    assert len(sink.lines) == 17 and src.rotations == 2


def test_the_old_file_is_read_on_while_its_writer_still_writes(h: Harness) -> None:
    """logrotate without a HUP, several writers, or someone who renamed the log and planted
    another: what the service writes to the old file after the switch is read too (it was
    lost: review, December 2026), and the old file is let go once quiet."""
    append(h.path, "a1")
    src, sink = h.start(drain=0.5)
    sink.wait_count(1)
    hidden = h.path.with_name("zz-not-a-rotated-name")
    os.rename(h.path, hidden)
    append(h.path, "planted")                     # the new file has data: switch at once
    wait_until(lambda: src.rotations == 1)
    assert src.describe()["draining"] == str(h.path)
    append(hidden, "service goes on 1", raw=b"service goes on 2 no newline")
    texts = sink.wait_count(3)
    assert texts == ["a1", "planted", "service goes on 1"]
    # Late lines after a line of the new file carry no checkpoint: a restart must not go
    # back into the old file (and read the new one again from its start).
    assert sink.lines[1].checkpoint is not None and sink.lines[2].checkpoint is None
    append(hidden, raw=b" ends\n")
    assert sink.wait_count(4)[-1] == "service goes on 2 no newline ends"
    time.sleep(0.3)
    append(hidden, "still writing after 0.3 s")   # growth keeps it open
    assert sink.wait_count(5)[-1] == "still writing after 0.3 s"
    append(hidden, raw=b"last words")
    wait_until(lambda: src.describe()["draining"] is None, timeout=5)
    assert sink.wait_count(6)[-1] == "last words"  # the partial line, when let go
    append(hidden, "after it was let go")
    append(h.path, "new file goes on")
    assert sink.wait_count(7)[-1] == "new file goes on"
    assert "after it was let go" not in sink.texts()


def test_a_late_line_before_the_new_file_speaks_resumes_exactly(h: Harness) -> None:
    """The writer reopens late: the new file stays empty past the grace, and the old file's
    late lines still carry its checkpoint, so a restart resumes inside it (a rotated
    sibling) with nothing repeated or lost."""
    append(h.path, "a1")
    src, sink = h.start(grace=0.05, drain=30)
    sink.wait_count(1)
    rotated = h.path.with_name("pump.log.1")
    os.rename(h.path, rotated)
    h.path.touch()
    wait_until(lambda: src.rotations == 1)
    append(rotated, "a2 late")
    assert sink.wait_count(2)[-1] == "a2 late"
    cp = sink.last_checkpoint()
    assert cp is not None and FileCheckpoint.decode(cp).ino == rotated.stat().st_ino
    src.stop()
    append(rotated, "a3 while stopped")
    append(h.path, "b1")
    _, sink2 = h.start(checkpoint=cp, drain=30)
    assert sink2.wait_count(2) == ["a3 while stopped", "b1"]


def test_a_second_rotation_lets_the_first_old_file_go(h: Harness) -> None:
    append(h.path, "a1")
    src, sink = h.start(drain=60)
    sink.wait_count(1)
    first = h.path.with_name("pump.log.1")
    os.rename(h.path, first)
    append(h.path, "b1", raw=b"b2 partial")
    wait_until(lambda: src.rotations == 1)
    append(first, raw=b"a2 partial")
    wait_until(lambda: "a2 partial" in sink.texts() or src.describe()["draining"] == str(h.path))
    os.rename(h.path, h.path.with_name("pump.log.2"))
    append(h.path, "c1")
    wait_until(lambda: src.rotations == 2)
    texts = sink.wait_for(lambda ls: any(ln.text == "c1" for ln in ls))
    got = [ln.text for ln in texts]
    assert "a2 partial" in got and got.index("a2 partial") < got.index("c1")
    assert src.describe()["draining"] == str(h.path)  # the second old file: one at a time
    append(h.path.with_name("pump.log.2"), raw=b" done\n")
    assert sink.wait_count(len(got) + 1)[-1] == "b2 partial done"


def test_a_deleted_old_file_is_let_go_after_the_grace(h: Harness) -> None:
    """logrotate's compress deletes the rotated file: held open for rotated_drain_s its
    blocks would stay used; it is read to its end and let go after rotate_grace_s."""
    append(h.path, "a1")
    src, sink = h.start(grace=0.2, drain=300)
    sink.wait_count(1)
    rotated = h.path.with_name("pump.log.1")
    os.rename(h.path, rotated)
    append(h.path, "b1")
    wait_until(lambda: src.rotations == 1)
    assert src.describe()["draining"] == str(h.path)
    append(rotated, raw=b"a2 last words")
    rotated.unlink()
    wait_until(lambda: src.describe()["draining"] is None, timeout=5)
    assert sink.wait_count(3) == ["a1", "b1", "a2 last words"]


def test_a_flooded_old_file_does_not_keep_the_new_one_from_being_read(h: Harness) -> None:
    """The old file is read at most 1 MiB per wake, then the new file has its turn: a
    writer (or someone) filling the old file as fast as it can does not hold back the
    service's new lines until the flood is read."""
    append(h.path, "a1")
    src, sink = h.start(drain=60)
    sink.wait_count(1)
    old = h.path.with_name("pump.log.1")
    os.rename(h.path, old)
    append(h.path, "b1")
    wait_until(lambda: src.rotations == 1)
    flood = b"".join(b"old flood line %07d\n" % i for i in range(600_000))  # ~15 MiB
    with open(old, "ab") as f:
        f.write(flood + b"old last\n")
    append(h.path, "b2 new line")
    texts = sink.wait_for(lambda ls: len(ls) >= 600_000 + 4, timeout=60)
    order = [ln.text for ln in texts]
    assert order.index("b2 new line") < order.index("old last")
    assert len(order) == 600_000 + 4
