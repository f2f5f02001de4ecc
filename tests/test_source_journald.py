"""The journald source against real journal files written by systemd-journal-remote."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.metrics import Counters
from agent.sources.journald import JournaldSource, JournaldSourceConfig, journal_matches
from tests.support.journal import JournalWriter, journal_remote_available
from tests.support.journal_harness import POLL, Harness, running_harness
from tests.support.line_sink import ListSink, wait_until

# No skip: scripts/bootstrap.sh installs systemd-journal-remote and systemd-python.
assert journal_remote_available(), "systemd-journal-remote is missing: run scripts/bootstrap.sh"


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    yield from running_harness(tmp_path)


def test_reads_messages_with_timestamps_and_cursors(h: Harness) -> None:
    h.writer.messages(["pump started", "pressure 3.1 bar"])
    src, sink = h.start()
    lines = sink.wait_for(lambda ls: len(ls) >= 2)
    assert [ln.text for ln in lines] == ["pump started", "pressure 3.1 bar"]
    assert lines[0].ts == pytest.approx(1_700_000_000.001)
    assert all(ln.checkpoint and ln.checkpoint.startswith("s=") for ln in lines)
    wait_until(lambda: src.describe()["state"] == "following")
    info = src.describe()
    assert info["cursor"] == lines[1].checkpoint and info["units"] == {"pump.service": 2}


def test_unit_priority_and_identifier_matches(h: Harness) -> None:
    h.writer.append([
        {"MESSAGE": "a-err", "_SYSTEMD_UNIT": "a.service", "PRIORITY": "3"},
        {"MESSAGE": "a-info", "_SYSTEMD_UNIT": "a.service", "PRIORITY": "6"},
        {"MESSAGE": "b-crit", "_SYSTEMD_UNIT": "b.service", "PRIORITY": "2"},
        {"MESSAGE": "c-err", "_SYSTEMD_UNIT": "c.service", "PRIORITY": "3"},
        {"MESSAGE": "a-warn-x", "_SYSTEMD_UNIT": "a.service", "PRIORITY": "4",
         "SYSLOG_IDENTIFIER": "x"},
    ])
    _, sink = h.start(units=["a", "b.service"], priority_max=4)
    assert sink.wait_count(3) == ["a-err", "b-crit", "a-warn-x"]
    _, sink2 = h.start(identifiers=["x"])
    assert sink2.wait_count(1) == ["a-warn-x"]
    time.sleep(5 * POLL)
    assert len(sink.lines) == 3 and len(sink2.lines) == 1


def test_matches_are_built_per_field() -> None:
    cfg = JournaldSourceConfig(kind="journald", units=["pump"], priority_max=1,
                               identifiers=["kernel"])
    assert journal_matches(cfg, coredump_uid=None).describe() == {
        "any_of": [["_SYSTEMD_UNIT=pump.service"],
                   ["MESSAGE_ID=fc2e22bc6ee647b6b90729ab34a250b1", "_UID=0",
                    "COREDUMP_UNIT=pump.service"],
                   ["_PID=1", "UNIT=pump.service"],
                   ["_UID=0", "OBJECT_SYSTEMD_UNIT=pump.service"]],
        "all_of": ["PRIORITY=0", "PRIORITY=1", "SYSLOG_IDENTIFIER=kernel"]}
    assert journal_matches(JournaldSourceConfig(kind="journald")).describe() == {
        "any_of": [], "all_of": []}
    assert journal_matches(cfg, coredump_uid=998).describe()["any_of"][1] == [
        "MESSAGE_ID=fc2e22bc6ee647b6b90729ab34a250b1", "_UID=0", "_UID=998",
        "COREDUMP_UNIT=pump.service"]


def test_a_units_source_sees_what_the_service_manager_says_about_it(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """As `journalctl -u`: the unit's own lines and PID 1's about it (`Failed to start X`,
    which carries `_SYSTEMD_UNIT=init.scope` and `UNIT=X`), its core dumps and root
    daemons' lines about it; not another process's claim that a line is about it, and the
    priority filter still holds for all of them. A core dump also from the systemd-coredump
    user (here uid 998): systemd-coredump becomes it before it logs the crash of a system
    user's process, which journalctl's root-only match misses."""
    monkeypatch.setattr("agent.sources.journald_config.coredump_user_uid", lambda: 998)
    h.writer.append([
        {"MESSAGE": "own line", "_SYSTEMD_UNIT": "pump.service", "PRIORITY": "3"},
        {"MESSAGE": "Failed to start pump.service - Pump.", "_SYSTEMD_UNIT": "init.scope",
         "UNIT": "pump.service", "_PID": "1", "_UID": "0", "PRIORITY": "3"},
        {"MESSAGE": "Started pump.service - Pump.", "_SYSTEMD_UNIT": "init.scope",
         "UNIT": "pump.service", "_PID": "1", "_UID": "0", "PRIORITY": "6"},
        {"MESSAGE": "Process 812 (pump) dumped core.", "_UID": "0", "PRIORITY": "2",
         "MESSAGE_ID": "fc2e22bc6ee647b6b90729ab34a250b1", "COREDUMP_UNIT": "pump.service",
         "_SYSTEMD_UNIT": "systemd-coredump@0-1-0.service"},
        {"MESSAGE": "Process 813 (pump) of user 105 dumped core.", "_UID": "998",
         "PRIORITY": "2", "MESSAGE_ID": "fc2e22bc6ee647b6b90729ab34a250b1",
         "COREDUMP_UNIT": "pump.service", "_SYSTEMD_UNIT": "systemd-coredump@1-2-0.service"},
        {"MESSAGE": "a claim", "UNIT": "pump.service", "_PID": "4242", "_UID": "1000",
         "PRIORITY": "3"},
        {"MESSAGE": "a core dump claim", "_UID": "1000", "PRIORITY": "2",
         "MESSAGE_ID": "fc2e22bc6ee647b6b90729ab34a250b1", "COREDUMP_UNIT": "pump.service"},
        {"MESSAGE": "other unit", "_SYSTEMD_UNIT": "init.scope", "UNIT": "fan.service",
         "_PID": "1", "_UID": "0", "PRIORITY": "3"},
        {"MESSAGE": "object", "OBJECT_SYSTEMD_UNIT": "pump.service", "_UID": "0",
         "_SYSTEMD_UNIT": "systemd-logind.service", "PRIORITY": "4"},
    ])
    _, sink = h.start(units=["pump"], priority_max=4)
    assert sink.wait_count(5) == ["own line", "Failed to start pump.service - Pump.",
                                  "Process 812 (pump) dumped core.",
                                  "Process 813 (pump) of user 105 dumped core.", "object"]
    time.sleep(5 * POLL)
    assert len(sink.lines) == 5


def test_appended_entries_are_picked_up(h: Harness) -> None:
    h.writer.messages(["one"])
    _, sink = h.start()
    sink.wait_count(1)
    h.writer.messages(["two", "three"])
    assert sink.wait_count(3) == ["one", "two", "three"]


def test_start_at_end_reads_only_new_entries(h: Harness) -> None:
    h.writer.messages(["old1", "old2"])
    _, sink = h.start(start_at="end")
    h.writer.messages(["new1"])  # at once: start() fixed the position already
    assert sink.wait_count(1) == ["new1"]


def test_cursor_resume_neither_repeats_nor_skips(h: Harness) -> None:
    h.writer.messages([f"m{i}" for i in range(5)])
    src, sink = h.start()
    sink.wait_count(5)
    src.stop()
    h.writer.messages(["m5", "m6"])
    _, sink2 = h.start(sink.last_checkpoint())
    assert sink2.wait_count(2) == ["m5", "m6"]
    # Resuming from a cursor in the middle, with matches, still starts right after it.
    _, sink3 = h.start(sink.lines[1].checkpoint, priority_max=6)
    assert sink3.wait_count(5) == ["m2", "m3", "m4", "m5", "m6"]
    time.sleep(5 * POLL)
    assert len(sink2.lines) == 2 and len(sink3.lines) == 5


def test_a_cursor_whose_boot_is_gone_reads_all_the_journal_holds(
        h: Harness, tmp_path: Path) -> None:
    """A volatile journal (/run/log/journal) after a reboot holds nothing of the old boot,
    and on a device without a real-time clock the new boot's clock may be behind the saved
    cursor's time: placed by time, the new boot's first lines were skipped until the clock
    caught up. Nothing of the cursor's boot left (a reboot, or vacuumed: the oldest go
    first) means everything the journal holds came after it."""
    run = tmp_path / "run"
    run.mkdir()
    before = JournalWriter(run / "system.journal", start_us=1_700_000_500_000_000)
    before.messages(["old boot 1", "old boot 2"])
    src, sink = h.start(files=[], directory=run)
    sink.wait_count(2)
    src.stop()
    (run / "system.journal").unlink()  # the reboot empties /run
    after = JournalWriter(run / "system.journal", start_us=1_700_000_000_000_000,
                          boot_id="fedcba9876543210fedcba9876543210")  # clock behind
    after.messages(["early pump line"], unit="pump.service")
    after.messages(["new boot 1", "new boot 2"], unit="fan.service")
    src2, sink2 = h.start(sink.last_checkpoint(), files=[], directory=run)
    assert sink2.wait_count(3) == ["early pump line", "new boot 1", "new boot 2"]
    assert h.counters.get("journal_cursor_gone") == 1
    # A cursor whose boot the journal holds, but that a changed filter no longer matches
    # (a fan line, now units = ["pump"]), is placed exactly: the pump line before it is not
    # read again.
    src2.stop()
    after.messages(["a later pump line"], unit="pump.service")
    _, sink3 = h.start(sink2.last_checkpoint(), files=[], directory=run, units=["pump"])
    assert sink3.wait_count(1) == ["a later pump line"]
    time.sleep(5 * POLL)
    assert len(sink3.lines) == 1 and h.counters.get("journal_cursor_gone") == 1


def test_a_cursor_entry_lost_within_its_boot_is_placed_not_reread(
        h: Harness, tmp_path: Path) -> None:
    """A power cut before the last entries reached the disk (or /run flushed to /var, whose
    copies are new entries): the cursor's entry is gone but its boot is not, and within a
    boot the exact placement holds — reading from the head would send the boot's lines
    (and their alerts) again (review, December 2026)."""
    var = tmp_path / "var"
    var.mkdir()
    lines = [f"boot line {i}" for i in range(5)]
    JournalWriter(var / "system.journal").messages(lines)
    src, sink = h.start(files=[], directory=var)
    sink.wait_count(5)
    src.stop()
    (var / "system.journal").unlink()
    JournalWriter(var / "system.journal").messages(lines[:3])  # the last two never landed
    later = JournalWriter(var / "system@next.journal", start_us=1_700_000_900_000_000,
                          boot_id="fedcba9876543210fedcba9876543210")
    later.messages(["next boot 1", "next boot 2"])
    _, sink2 = h.start(sink.last_checkpoint(), files=[], directory=var)
    assert sink2.wait_count(2) == ["next boot 1", "next boot 2"]
    time.sleep(5 * POLL)
    assert len(sink2.lines) == 2 and h.counters.get("journal_cursor_gone") == 0


def test_invalid_cursor_falls_back_to_start_at(h: Harness) -> None:
    h.writer.messages(["only"])
    src, sink = h.start("not-a-cursor")
    assert sink.wait_count(1) == ["only"]
    assert src.last_error and "cursor" in src.last_error


def test_binary_and_long_messages(h: Harness) -> None:
    h.writer.append([{"MESSAGE": b"bad \xff byte"}, {"MESSAGE": "y" * 500},
                     {"MESSAGE": "first\nsecond"}, {"OTHER": "no message here"}])
    src, sink = h.start(max_line_bytes=100)
    lines = sink.wait_for(lambda ls: len(ls) >= 3)
    assert [ln.text for ln in lines] == ["bad \ufffd byte", "y" * 100, "first\nsecond"]
    assert lines[1].truncated
    assert h.counters.get("lines_invalid_utf8") == 1 and h.counters.get("lines_truncated") == 1
    wait_until(lambda: src.describe()["entries_without_message"] == 1)


def test_directory_reader_follows_appends(h: Harness) -> None:
    h.writer.messages(["d1"])
    _, sink = h.start(files=[], directory=h.writer.path.parent)
    assert sink.wait_count(1) == ["d1"]
    h.writer.messages(["d2"])
    assert sink.wait_count(2) == ["d1", "d2"]


def test_missing_file_is_retried_and_reported(h: Harness, tmp_path: Path) -> None:
    later = JournalWriter(tmp_path / "later.journal")
    src, sink = h.start(files=[later.path])
    wait_until(lambda: src.last_error is not None)
    assert "cannot open" in (src.last_error or "")
    later.messages(["finally"])
    assert sink.wait_count(1, timeout=10) == ["finally"]


def test_config_errors() -> None:
    with pytest.raises(ValidationError, match="not both"):
        JournaldSourceConfig.model_validate(
            {"kind": "journald", "files": ["/a.journal"], "directory": "/d"})
    with pytest.raises(ValidationError, match="less than or equal to 7"):
        JournaldSourceConfig.model_validate({"kind": "journald", "priority_max": 9})
    with pytest.raises(ValidationError, match="extra"):
        JournaldSourceConfig.model_validate({"kind": "journald", "unit": "x"})


def test_throughput(h: Harness) -> None:
    n = 20_000
    h.writer.messages([f"pump[42]: pressure {i} bar nominal" for i in range(n)])
    t = time.monotonic()
    _, sink = h.start()
    sink.wait_count(n, timeout=60)
    rate = n / (time.monotonic() - t)
    print(f"journald source: {rate:,.0f} lines/s")
    assert rate > 5_000


def test_each_line_carries_its_entry_priority(h: Harness) -> None:
    """The program's level travels with the line (agent.level_evidence weighs it in);
    an entry without a usable PRIORITY gives a line without a level, not an error."""
    h.writer.append([
        {"MESSAGE": "disk gone", "PRIORITY": "3"},
        {"MESSAGE": "lease renewed", "PRIORITY": "6"},
        {"MESSAGE": "no level", "PRIORITY": ""},
        {"MESSAGE": "odd level", "PRIORITY": "loud"},
        {"MESSAGE": "too high", "PRIORITY": "12"},
        # A service's stdout: info is journald's default there, not the program's word;
        # a "<3>" prefix the program wrote (journald strips it) is.
        {"MESSAGE": "printed", "PRIORITY": "6", "_TRANSPORT": "stdout"},
        {"MESSAGE": "printed <3>", "PRIORITY": "3", "_TRANSPORT": "stdout"},
        {"MESSAGE": "syslog info", "PRIORITY": "6", "_TRANSPORT": "syslog"},
    ])
    _, sink = h.start()
    sink.wait_count(8)
    assert [(ln.text, ln.level) for ln in sink.lines] == [
        ("disk gone", 3), ("lease renewed", 6), ("no level", None), ("odd level", None),
        ("too high", None), ("printed", None), ("printed <3>", 3), ("syslog info", 6)]


def test_only_a_system_users_level_is_weighed(h: Harness) -> None:
    """PRIORITY is what the logging process says; journald's `_UID` is not (review,
    December 2026: `logger -t sshd -p crit` by an ordinary user gave a line identical to
    the real sshd's, and its forged level made it the likelier alert)."""
    h.writer.append([
        {"MESSAGE": "real sshd", "PRIORITY": "3", "_UID": "0", "SYSLOG_IDENTIFIER": "sshd"},
        {"MESSAGE": "forged sshd", "PRIORITY": "2", "_UID": "1000",
         "SYSLOG_IDENTIFIER": "sshd"},
        {"MESSAGE": "a daemon", "PRIORITY": "3", "_UID": "106"},
        {"MESSAGE": "the kernel", "PRIORITY": "2", "_TRANSPORT": "kernel"},
        {"MESSAGE": "odd uid", "PRIORITY": "3", "_UID": "x"},
    ])
    src, sink = h.start()
    sink.wait_count(5)
    assert [(ln.text, ln.level, ln.uid) for ln in sink.lines] == [
        ("real sshd", 3, 0), ("forged sshd", None, 1000), ("a daemon", 3, 106),
        ("the kernel", 2, None), ("odd uid", None, -1)]  # the uid groups alerts apart
    assert src.describe()["levels_not_weighed"] == 2


def test_only_the_owners_catalog_id_travels_with_the_line(h: Harness) -> None:
    """systemd's MESSAGE_ID goes with the line for agent.journal_catalog, as 32 lowercase
    hex digits, when the program that owns the id logged it (PID 1 as root; for a core
    dump, systemd-coredump's service): any other process, a system user's (www-data) too,
    may put any id in its entries (review, December 2026)."""
    failed, core = "be02cf6855d2428ba40df7e9d022f03d", "fc2e22bc6ee647b6b90729ab34a250b1"
    pid1 = {"_UID": "0", "_PID": "1", "PRIORITY": "3"}
    coredumpd = {"_UID": "1000", "_PID": "4242", "PRIORITY": "2",
                 "_SYSTEMD_UNIT": "systemd-coredump@0-4242-0.service"}
    h.writer.append([
        {"MESSAGE": "Failed to start x.service.", "MESSAGE_ID": failed, **pid1},
        {"MESSAGE": "upper case", "MESSAGE_ID": failed.upper(), **pid1},
        {"MESSAGE": "uuid form", "MESSAGE_ID": "be02cf68-55d2-428b-a40d-f7e9d022f03d", **pid1},
        {"MESSAGE": "www-data", "PRIORITY": "3", "_UID": "33", "_PID": "812",
         "MESSAGE_ID": failed},
        {"MESSAGE": "root, not pid 1", "PRIORITY": "3", "_UID": "0", "_PID": "77",
         "MESSAGE_ID": failed},
        {"MESSAGE": "pid 1, not root", "PRIORITY": "3", "_UID": "1000", "_PID": "1",
         "MESSAGE_ID": failed},
        {"MESSAGE": "not an id", "MESSAGE_ID": "zz" * 16, **pid1},
        {"MESSAGE": "no id", **pid1},
        # A core dump's id counts from systemd-coredump's service (the cgroup PID 1 put it
        # in), whichever user it dropped to: an ordinary user's crash too.
        {"MESSAGE": "Process 77 (pump) of user 1000 dumped core.", "MESSAGE_ID": core,
         **coredumpd},
        {"MESSAGE": "a core dump's id from elsewhere", "MESSAGE_ID": core, "_UID": "0",
         "_PID": "900", "_SYSTEMD_UNIT": "pump.service", "PRIORITY": "2"},
        {"MESSAGE": "pid 1's id from the core dump service", "MESSAGE_ID": failed,
         **coredumpd},
        {"MESSAGE": "the core dump's id from pid 1", "MESSAGE_ID": core, **pid1},
    ])
    _, sink = h.start()
    sink.wait_count(12)
    assert [(ln.text, ln.message_id) for ln in sink.lines] == [
        ("Failed to start x.service.", failed), ("upper case", failed), ("uuid form", failed),
        ("www-data", None), ("root, not pid 1", None), ("pid 1, not root", None),
        ("not an id", None), ("no id", None),
        ("Process 77 (pump) of user 1000 dumped core.", core),
        ("a core dump's id from elsewhere", None),
        ("pid 1's id from the core dump service", None),
        ("the core dump's id from pid 1", None)]


def test_a_named_journals_fields_are_believed_only_when_told(h: Harness) -> None:
    """In a file or directory the operator names (a container's journal, an uploaded one)
    _UID and _PID are whatever wrote the file: by default neither the level nor the
    catalog id is weighed there (review, December 2026: a container's root tagged
    `Failed password for root` "unit succeeded", and forged systemd's failures)."""
    h.writer.append([{"MESSAGE": "Failed to start x.service.", "PRIORITY": "3", "_UID": "0",
                      "_PID": "1", "MESSAGE_ID": "be02cf6855d2428ba40df7e9d022f03d"}])
    for where in ({}, {"files": [], "directory": h.writer.path.parent}):
        src, sink = h.start(trust_fields=None, **where)
        sink.wait_count(1)
        line = sink.lines[0]
        # Nor the uid: forged ones would split one alert into many (grouped per uid).
        assert (line.level, line.message_id, line.uid) == (None, None, None), where
        assert src.describe()["trust_fields"] is False
        assert src.describe()["levels_not_weighed"] == 1
    system = JournaldSourceConfig.model_validate({"kind": "journald"})
    assert system.trust_fields is None  # the system journal: journald's own fields
    on_system = JournaldSource("journald", system, ListSink(), Counters(), 4096)
    assert on_system.trust_fields
    # ... whose boot the kernel names (read on with it after an earlier boot's cursor)
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
    assert on_system.current_boot == boot and src.current_boot is None


def test_an_entry_of_many_large_fields_costs_only_the_fields_a_line_needs(
        h: Harness) -> None:
    """Any local process may log an entry with hundreds of large fields of its own. The
    source reads only the few it uses: before, get_next() copied all of them (~60 MB of
    peak memory for one entry)."""
    import os
    import tracemalloc

    from systemd import journal

    from agent.sources.journal_entries import next_entry

    bulk: dict[str, str | bytes] = {f"JUNK_{i}": os.urandom(32 * 1024).hex()
                                    for i in range(300)}
    h.writer.append([{"MESSAGE": "pump started", "_SYSTEMD_UNIT": "pump.service",
                      "PRIORITY": "3", **bulk}])

    def peak_of(read: Any) -> tuple[Any, int]:
        reader = journal.Reader(files=[str(h.writer.path)],
                                converters={"MESSAGE": lambda v: v})
        reader.data_threshold = 64 * 1024
        reader.seek_head()
        tracemalloc.start()
        try:
            entry = read(reader)
            return entry, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            reader.close()

    entry, peak = peak_of(next_entry)
    assert entry is not None and entry["MESSAGE"] == b"pump started"
    assert entry["PRIORITY"] == 3 and entry["_SYSTEMD_UNIT"] == "pump.service"
    assert "JUNK_0" not in entry
    assert peak < 1_000_000, peak
    _, all_fields_peak = peak_of(lambda r: r.get_next())
    assert all_fields_peak > 15_000_000, all_fields_peak  # what the source no longer does

    src, sink = h.start()
    assert [ln.text for ln in sink.wait_for(lambda ls: len(ls) >= 1)] == ["pump started"]
    assert sink.lines[0].level == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to read as another user")
def test_journal_files_the_user_cannot_read_are_reported(h: Harness) -> None:
    """sd-journal skips files it may not read: the source said "following" and read
    nothing, without a word (review, December 2026: a hand-made unit without the journal's
    group). It names them now."""
    h.writer.messages(["hidden"])
    shared = Path(tempfile.mkdtemp(prefix="journal-perm-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        copy = shared / "system.journal"
        shutil.copyfile(h.writer.path, copy)
        copy.chmod(0o600)  # root's only
        script = (
            "import time; from agent.metrics import Counters; "
            "from agent.sources.journald import JournaldSource, JournaldSourceConfig; "
            "from tests.support.line_sink import ListSink; "
            f"cfg = JournaldSourceConfig(kind='journald', directory='{shared}', "
            "start_at='beginning', poll_interval_s=0.02); c = Counters(); s = ListSink(); "
            "src = JournaldSource('journald', cfg, s, c, 4096); src.start(None); "
            "time.sleep(1.0); src.stop(); "
            "print(len(s.lines), c.get('source_errors'), src.last_error)")
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              sys.executable, "-c", script], capture_output=True, text=True,
                             timeout=60, cwd=Path(__file__).resolve().parents[1])
        assert out.returncode == 0, out.stderr
        lines, errors, message = out.stdout.strip().split(" ", 2)
        assert lines == "0" and int(errors) >= 1
        assert "1 of 1 journal files are not readable by uid 65534" in message
        assert "systemd-journal" in message
    finally:
        shutil.rmtree(shared)
