"""The journald source on the system journal reads boot by boot (agent.sources.journal_boots):
real journal files of several boots and sequences (systemd-journal-remote; one file is one
sequence), the kernel's boot id given to the source as the system journal's would be."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.sources.journal_boots import (
    CursorPlace,
    boots_after,
    boots_in_order,
    parse_cursor,
    same_entry,
)
from agent.sources.journald import JournaldSource
from tests.support.journal import JournalWriter
from tests.support.journal_harness import POLL, Harness, running_harness

BOOT = {**{k: k * 32 for k in "abcdef"}, "g": "6" * 32, "t": "7" * 32}  # t: this boot


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    yield from running_harness(tmp_path)


def boot_a_read(h: Harness, tmp_path: Path) -> tuple[Path, JournalWriter, str]:
    """A journal directory with boot A's ``a 1``, read by a source that then stopped:
    (the directory, A's writer, the source's saved cursor)."""
    var = tmp_path / "var"
    var.mkdir()
    a = JournalWriter(var / "a.journal", start_us=1_700_000_500_000_000, boot_id=BOOT["a"])
    a.messages(["a 1"])
    src, sink = h.start(files=[], directory=var, current_boot=BOOT["a"])
    sink.wait_count(1)
    src.stop()
    return var, a, sink.last_checkpoint()


def test_after_an_unclean_shutdown_this_boot_is_read_whatever_the_clock(
        h: Harness, tmp_path: Path) -> None:
    """After an unclean shutdown journald starts a file with a new sequence; sd-journal
    orders two sequences by time, and on a device without a real-time clock this boot's
    first lines were stamped before the saved cursor: skipped (review, December 2026). The
    rest of the cursor's boot is read, then this boot from its head."""
    var = tmp_path / "var"
    var.mkdir()
    old = JournalWriter(var / "system@old.journal", start_us=1_700_000_500_000_000)
    old.messages(["old boot 1", "old boot 2"])
    src, sink = h.start(files=[], directory=var)
    sink.wait_count(2)
    src.stop()
    old.messages(["old boot 3"])  # logged after the agent stopped, before the cut
    this_boot = "fedcba9876543210fedcba9876543210"
    new = JournalWriter(var / "system.journal", start_us=1_700_000_000_000_000,
                        boot_id=this_boot)  # the clock behind the cursor's
    new.messages(["this boot 1", "this boot 2"])
    src2, sink2 = h.start(sink.last_checkpoint(), files=[], directory=var,
                          current_boot=this_boot)
    assert sink2.wait_count(3) == ["old boot 3", "this boot 1", "this boot 2"]
    new.messages(["this boot 3"])  # and it follows this boot on
    assert sink2.wait_count(4)[-1] == "this boot 3"
    time.sleep(5 * POLL)
    assert len(sink2.lines) == 4 and h.counters.get("journal_cursor_gone") == 0
    # A restart in this boot keeps to it: placed by time, its cursor (stamped before the old
    # boot's) would have the old boot read once more, at every restart (review).
    src2.stop()
    new.messages(["this boot 4"])
    _, sink3 = h.start(sink2.last_checkpoint(), files=[], directory=var,
                       current_boot=this_boot)
    assert sink3.wait_count(1) == ["this boot 4"]
    time.sleep(5 * POLL)
    assert len(sink3.lines) == 1


def test_boots_in_between_are_read_in_order_and_earlier_ones_not(
        h: Harness, tmp_path: Path) -> None:
    """Resuming in boot A with boots B (after A: the one that crashed, typically) and this
    boot C in the journal, and D from before A: the rest of A, then B, then C; not D."""
    var = tmp_path / "var"
    var.mkdir()
    boot = {k: k * 32 for k in "bcd"}
    JournalWriter(var / "d.journal", start_us=1_700_000_100_000_000,
                  boot_id=boot["d"]).messages(["d 1"])
    a = JournalWriter(var / "a.journal", start_us=1_700_000_500_000_000)
    a.messages(["a 1"])
    src, sink = h.start(files=[], directory=var, start_at="end")
    time.sleep(5 * POLL)
    a.messages(["a 2"])
    sink.wait_count(1)
    src.stop()
    a.messages(["a 3"])
    JournalWriter(var / "b.journal", start_us=1_700_000_600_000_000,
                  boot_id=boot["b"]).messages(["b 1", "b 2"])
    JournalWriter(var / "c.journal", start_us=1_700_000_000_000_000,
                  boot_id=boot["c"]).messages(["c 1"])  # this boot, the clock behind
    _, sink2 = h.start(sink.last_checkpoint(), files=[], directory=var,
                       current_boot=boot["c"])
    assert sink2.wait_count(4) == ["a 3", "b 1", "b 2", "c 1"]
    time.sleep(5 * POLL)
    assert len(sink2.lines) == 4


def test_a_bad_cursor_of_a_known_boot_falls_back_with_the_usual_matches(
        h: Harness) -> None:
    """A cursor whose boot the journal holds but that sd-journal refuses: start_at, with
    the source's own matches (not left on that boot's)."""
    h.writer.messages(["before"])
    src, sink = h.start()
    sink.wait_count(1)
    src.stop()
    broken = sink.last_checkpoint().replace("i=", "i=zz")
    this_boot = "fedcba9876543210fedcba9876543210"
    later = JournalWriter(h.writer.path.parent / "later.journal", boot_id=this_boot,
                          start_us=1_700_000_900_000_000)
    later.messages(["this boot, before the start"])
    src2, sink2 = h.start(broken, files=[h.writer.path, later.path], start_at="end",
                          current_boot=this_boot)
    time.sleep(5 * POLL)
    later.messages(["after"])  # left on the old boot's match, it was never read
    assert sink2.wait_count(1) == ["after"]
    assert "saved cursor not usable" in (src2.last_error or "")


def test_a_resume_in_a_boot_whose_clock_was_behind_does_not_go_back(
        h: Harness, tmp_path: Path) -> None:
    """Boot A read; an unclean shutdown; boot B starts a new sequence with its clock behind
    A's and is read; a clean reboot to C continues B's sequence. A restart in C reads C's
    new lines only: comparing boots by their clocks, A looked later than the cursor in B
    and was read again (second review, December 2026)."""
    var = tmp_path / "var"
    var.mkdir()
    JournalWriter(var / "a.journal", start_us=1_700_000_500_000_000,
                  boot_id=BOOT["a"]).messages(["a 1", "a 2"])
    src, sink = h.start(files=[], directory=var, current_boot=BOOT["a"])
    sink.wait_count(2)
    src.stop()
    JournalWriter(var / "s2.journal", start_us=1_700_000_000_000_000,
                  boot_id=BOOT["b"]).messages(["b 1", "b 2"])
    src2, sink2 = h.start(sink.last_checkpoint(), files=[], directory=var,
                          current_boot=BOOT["b"])
    assert sink2.wait_count(2) == ["b 1", "b 2"]
    src2.stop()
    JournalWriter(var / "s2.journal", start_us=1_700_000_100_000_000,
                  boot_id=BOOT["c"]).messages(["c 1"])  # the same file: B's sequence
    _, sink3 = h.start(sink2.last_checkpoint(), files=[], directory=var,
                       current_boot=BOOT["c"])
    assert sink3.wait_count(1) == ["c 1"]
    time.sleep(5 * POLL)
    assert len(sink3.lines) == 1


@pytest.mark.parametrize("gone", [False, True], ids=["beginning", "cursor-boot-gone"])
def test_a_read_of_everything_ends_in_this_boot(h: Harness, tmp_path: Path,
                                                gone: bool) -> None:
    """A first run from the beginning, or a cursor whose boot the journal no longer holds:
    every boot is read, this one last, whatever the clocks; a restart then reads nothing
    again. In sd-journal's time order this boot (clock behind) came first, the cursor ended
    in the other boot, and a restart read this boot twice (second review)."""
    var = tmp_path / "var"
    var.mkdir()
    JournalWriter(var / "b.journal", start_us=1_700_000_500_000_000,
                  boot_id=BOOT["b"]).messages(["b 1", "b 2"])
    this = JournalWriter(var / "t.journal", start_us=1_700_000_000_000_000,
                         boot_id=BOOT["t"])
    this.messages(["t 1", "t 2"])
    checkpoint = None
    if gone:  # a cursor of a boot vacuumed away
        gone_file = JournalWriter(var / "gone.journal", start_us=1_700_000_400_000_000,
                                  boot_id=BOOT["e"])
        gone_file.messages(["e 1"])
        src0, sink0 = h.start(files=[gone_file.path], current_boot=BOOT["e"])
        sink0.wait_count(1)
        src0.stop()
        checkpoint = sink0.last_checkpoint()
        gone_file.path.unlink()
    src, sink = h.start(checkpoint, files=[], directory=var, current_boot=BOOT["t"])
    assert sink.wait_count(4) == ["b 1", "b 2", "t 1", "t 2"]
    assert h.counters.get("journal_cursor_gone") == int(gone)
    src.stop()
    _, sink2 = h.start(sink.last_checkpoint(), files=[], directory=var,
                       current_boot=BOOT["t"])
    this.messages(["t 3"])
    assert sink2.wait_count(1) == ["t 3"]
    time.sleep(5 * POLL)
    assert len(sink2.lines) == 1


@pytest.mark.parametrize("system", [True, False], ids=["system-journal", "named-journal"])
def test_a_lost_cursor_entry_before_the_boots_first_match_is_read_on(
        h: Harness, tmp_path: Path, system: bool) -> None:
    """The cursor's entry is gone (its file vacuumed) and no earlier entry matches: a step
    back from the entry seek_cursor landed on found nothing, stayed there, and the next step
    passed over that entry — a line lost (second review). With a filter this happened on any
    journal."""
    var = tmp_path / "var"
    var.mkdir()
    JournalWriter(var / "c1.journal", start_us=1_700_000_000_000_000, boot_id=BOOT["t"]
                  ).messages(["t first"], PRIORITY="3")
    boot = BOOT["t"] if system else None
    src, sink = h.start(files=[], directory=var, current_boot=boot, priority_max=4)
    sink.wait_count(1)
    src.stop()
    (var / "c1.journal").unlink()
    JournalWriter(var / "c2.journal", start_us=1_700_000_100_000_000, boot_id=BOOT["t"]
                  ).messages(["t second", "t third"], PRIORITY="3")
    _, sink2 = h.start(sink.last_checkpoint(), files=[], directory=var, current_boot=boot,
                       priority_max=4)
    assert sink2.wait_count(2) == ["t second", "t third"]


def test_an_io_error_while_placing_keeps_the_cursor(
        h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A passing OSError while the source places itself (EIO on a worn SD card, EMFILE)
    is retried from the same cursor. It used to count as "cursor not usable": the source
    started at the end and every line since the cursor was lost (second review)."""
    var, a, checkpoint = boot_a_read(h, tmp_path)
    a.messages(["a 2 (while stopped)"])
    JournalWriter(var / "t.journal", start_us=1_700_000_000_000_000,
                  boot_id=BOOT["t"]).messages(["t 1"])
    real = JournaldSource._boot_heads
    failures = [OSError(5, "Input/output error")]

    def flaky(self: JournaldSource, reader: object) -> object:
        if failures:
            raise failures.pop()
        return real(self, reader)

    monkeypatch.setattr(JournaldSource, "_boot_heads", flaky)
    src2, sink2 = h.start(checkpoint, files=[], directory=var,
                          current_boot=BOOT["t"], start_at="end")
    assert sink2.wait_count(2) == ["a 2 (while stopped)", "t 1"]
    assert "Input/output error" in (src2.last_error or "")
    assert "not usable" not in (src2.last_error or "")


def test_a_crashed_boot_of_this_boots_sequence_is_read_whatever_its_clock(
        h: Harness, tmp_path: Path) -> None:
    """A read; an unclean shutdown; B starts a new sequence with its clock behind A's and
    crashes before the agent saved anything in it; C reboots cleanly and goes on with B's
    sequence. A restart in C reads the rest of A, all of B (the lines that explain the
    crash), then C. The time guess took B for older than A: skipped (second review)."""
    var, a, checkpoint = boot_a_read(h, tmp_path)
    a.messages(["a 2"])
    JournalWriter(var / "s2.journal", start_us=1_700_000_000_000_000,
                  boot_id=BOOT["b"]).messages(["b 1", "b 2"])
    JournalWriter(var / "s2.journal", start_us=1_700_000_010_000_000,
                  boot_id=BOOT["t"]).messages(["t 1"])
    _, sink2 = h.start(checkpoint, files=[], directory=var,
                       current_boot=BOOT["t"])
    assert sink2.wait_count(4) == ["a 2", "b 1", "b 2", "t 1"]
    time.sleep(5 * POLL)
    assert len(sink2.lines) == 4


def _at(boot: str, sequence: str, number: int, realtime_us: int) -> CursorPlace:
    return CursorPlace(BOOT[boot], sequence * 32, number, realtime_us)


def test_boots_are_ordered_by_sequence_before_time() -> None:
    cursor = _at("a", "1", 10, 500)
    heads = [_at("a", "1", 3, 400),
             _at("g", "1", 2, 300),     # the cursor boot's sequence, before it: not read
             _at("d", "1", 5, 300),     # after the cursor boot's head, before the cursor's
                                        # number: the cursor's tail was lost, D came later
             _at("b", "1", 11, 100),    # the cursor's sequence after it (clock behind)
             _at("c", "2", 1, 50),      # this boot's sequence, started after: read
             _at("t", "2", 7, 60),
             _at("e", "3", 1, 600),     # a third sequence: by the clock, later
             _at("f", "4", 1, 450)]     # a third sequence: by the clock, earlier
    assert boots_after(cursor, heads, BOOT["t"]) == [BOOT[k] for k in "dbec"]
    # This boot continuing the cursor's sequence: nothing of another sequence in between.
    same = [*heads[:4], _at("t", "1", 20, 90), _at("e", "3", 1, 600)]
    assert boots_after(cursor, same, BOOT["t"]) == [BOOT[k] for k in "db"]
    # The cursor in a sequence of its own (a user journal's, /run's before the flush):
    # placed by its boot's head, not its s= (which made every system boot "later").
    in_user = CursorPlace(BOOT["a"], "9" * 32, 4, 500)
    assert boots_after(in_user, same, BOOT["t"]) == [BOOT[k] for k in "db"]
    # The cursor in a sequence started within its boot (a damaged file set aside), which a
    # later boot goes on with, its clock behind: later by the cursor's own number, whatever
    # the heads and clocks say (fourth review).
    mid_boot = CursorPlace(BOOT["a"], "5" * 32, 7, 500)
    heads_mid = [_at("a", "1", 3, 400), _at("b", "5", 8, 100), _at("t", "6", 1, 50)]
    assert boots_after(mid_boot, heads_mid, BOOT["t"]) == [BOOT["b"]]
    # A read of everything: sequences by their first entry's time, this boot's last.
    assert boots_in_order(heads, BOOT["t"]) == [BOOT[k] for k in "gadbfec"]


def test_cursor_places_are_parsed_strictly() -> None:
    cursor = ("s=7685f39d29da4be698d2642509547db4;i=2;b=" + BOOT["a"]
              + ";m=5af32e47acd0;t=60a2435ebacd0;x=25c7a1b4ca1170c3")
    assert parse_cursor(cursor) == CursorPlace(BOOT["a"], "7685f39d29da4be698d2642509547db4",
                                               2, 0x60a2435ebacd0)
    for bad in ("not-a-cursor", cursor.replace("i=2", "i=zz"), cursor.replace("b=a", "b=A"),
                cursor.replace(";t=60a2435ebacd0", "")):
        assert parse_cursor(bad) is None


def test_a_journal_without_this_boot_is_read_in_sd_journals_order(
        h: Harness, tmp_path: Path) -> None:
    """A journal that holds nothing of the kernel's boot id is not this kernel's (a container
    reading its host's journal: nspawn gives the container a boot id of its own). Kept to
    this boot the source would read nothing; it reads as sd-journal orders."""
    var = tmp_path / "var"
    var.mkdir()
    other = JournalWriter(var / "host.journal", boot_id=BOOT["b"])
    other.messages(["host 1"])
    src, sink = h.start(files=[], directory=var, current_boot=BOOT["t"], start_at="end")
    time.sleep(5 * POLL)
    other.messages(["host 2"])
    assert sink.wait_count(1) == ["host 2"]
    assert src.current_boot is None


def test_a_cursor_in_a_user_journal_does_not_read_earlier_boots_again(
        h: Harness, tmp_path: Path) -> None:
    """A user's journal (user-1000.journal) is a sequence of its own beside the system one.
    With the cursor's own sequence as the yardstick, every system boot counted as later:
    boot Z read again at every reboot, and any user can keep the cursor there (`logger -t`)
    (third review). The cursor's boot is placed by its head, in the system sequence."""
    var = tmp_path / "var"
    var.mkdir()
    system, user = var / "system.journal", var / "user-1000.journal"
    for boot, at in (("f", 1_700_000_100_000_000), ("a", 1_700_000_200_000_000)):
        JournalWriter(system, start_us=at, boot_id=BOOT[boot]).messages([f"{boot} kernel"])
        JournalWriter(user, start_us=at + 1_000_000, boot_id=BOOT[boot]).messages(
            [f"{boot} app 1", f"{boot} app 2"], SYSLOG_IDENTIFIER="app")
    src, sink = h.start(files=[], directory=var, current_boot=BOOT["a"], identifiers=["app"])
    sink.wait_count(4)
    src.stop()
    cursor = sink.lines[2].checkpoint  # "a app 1", in the user journal's sequence
    JournalWriter(system, start_us=1_700_000_300_000_000, boot_id=BOOT["t"]).messages(
        ["t kernel"])
    JournalWriter(user, start_us=1_700_000_301_000_000, boot_id=BOOT["t"]).messages(
        ["t app 1"], SYSLOG_IDENTIFIER="app")
    _, sink2 = h.start(cursor, files=[], directory=var, current_boot=BOOT["t"],
                       identifiers=["app"])
    assert sink2.wait_count(2) == ["a app 2", "t app 1"]
    time.sleep(5 * POLL)
    assert len(sink2.lines) == 2


def test_a_power_cut_that_lost_the_read_tail_does_not_hide_the_next_boot(
        h: Harness, tmp_path: Path) -> None:
    """journald 252 goes on with the dirty file's sequence from the number on disk: the
    lines the agent read from the page cache before the cut are lost, and the next boot's
    numbers are below the cursor's. Compared with the cursor's number, that whole boot (the
    one that explains the trouble) was taken for an earlier one (third review)."""
    var = tmp_path / "var"
    var.mkdir()
    journal = var / "system.journal"
    a = JournalWriter(journal, start_us=1_700_000_500_000_000, boot_id=BOOT["a"])
    a.messages(["a 1"])
    on_disk = journal.read_bytes()  # what reached the disk before the cut
    a.messages(["a 2", "a 3"])
    src, sink = h.start(files=[], directory=var, current_boot=BOOT["a"])
    sink.wait_count(3)
    src.stop()
    journal.write_bytes(on_disk)  # the cut: "a 2", "a 3" never landed
    JournalWriter(journal, start_us=1_700_000_600_000_000, boot_id=BOOT["b"]).messages(
        ["b crash 1", "b crash 2"])  # numbers 2, 3: below the cursor's 3
    JournalWriter(journal, start_us=1_700_000_700_000_000, boot_id=BOOT["t"]).messages(
        ["t 1"])
    assert boots_cursor_number(sink.last_checkpoint()) == 3
    _, sink2 = h.start(sink.last_checkpoint(), files=[], directory=var,
                       current_boot=BOOT["t"])
    assert sink2.wait_count(3) == ["b crash 1", "b crash 2", "t 1"]


def boots_cursor_number(cursor: str) -> int:
    place = parse_cursor(cursor)
    assert place is not None
    return place.number


def test_an_entry_copied_by_the_flush_is_not_read_twice(h: Harness, tmp_path: Path) -> None:
    """The /run -> /var flush copies entries into the persistent journal's sequence. A
    cursor read from /run names the copy by boot, times and hash, not by sequence:
    sd-journal's test_cursor called the copy another entry and it was read again (review)."""
    run, var = tmp_path / "run", tmp_path / "var"
    run.mkdir()
    var.mkdir()
    JournalWriter(run / "system.journal", boot_id=BOOT["t"]).messages(["t early"])
    src, sink = h.start(files=[], directory=run, current_boot=BOOT["t"])
    sink.wait_count(1)
    src.stop()
    copy = JournalWriter(var / "system.journal", boot_id=BOOT["t"])  # the same stamps
    copy.messages(["t early", "t late"])
    (run / "system.journal").unlink()
    cursor = sink.last_checkpoint()
    assert parse_cursor(cursor) is not None
    _, sink2 = h.start(cursor, files=[], directory=var, current_boot=BOOT["t"])
    assert sink2.wait_count(1) == ["t late"]
    time.sleep(5 * POLL)
    assert len(sink2.lines) == 1
    assert same_entry(cursor, cursor.replace("s=", "s=0")) and not same_entry(
        cursor, cursor.replace(";x=", ";x=0"))


def test_boots_not_all_found_fall_back_to_sd_journals_order(
        h: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """python-systemd's query_unique ends silently at a damaged file, hiding the boots of
    the files after it (third review). When the boots found miss the cursor's or this one,
    the placement is sd-journal's (counted, said once), and the next one tries again."""
    var, a, checkpoint = boot_a_read(h, tmp_path)
    a.messages(["a 2"])
    JournalWriter(var / "t.journal", start_us=1_700_000_600_000_000,
                  boot_id=BOOT["t"]).messages(["t 1"])
    monkeypatch.setattr(JournaldSource, "_boot_heads", lambda self, reader: [])
    errors = h.counters.get("source_errors")
    src2, sink2 = h.start(checkpoint, files=[], directory=var,
                          current_boot=BOOT["t"])
    assert sink2.wait_count(2) == ["a 2", "t 1"]  # the clocks are right: nothing lost
    assert h.counters.get("source_errors") == errors + 1 and src2.current_boot is None
    assert src2.kernel_boot == BOOT["t"]  # decided again at the next placement
