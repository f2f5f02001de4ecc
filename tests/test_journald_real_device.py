"""The journald source's resume against this machine's real systemd-journald (252), run in a
private mount namespace one "boot" at a time (tests/support/real_journald.py): power cuts
that lose the unsynced tail, a user's journal, the /run -> /var flush, journald killed
mid-boot. What journald itself does with sequences decides these cases, so journal files
made by systemd-journal-remote (tests/test_journal_boots.py) cannot stand in for it.
Opt in with NANOFLEET_DEVICE_TESTS=1 (``scripts/device-tests``), root."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import real_journald as rj
from tests.support.device_marks import device_test_marks
from tests.support.journal_harness import POLL, Harness, running_harness
from tests.support.line_sink import ListSink

pytestmark = [*device_test_marks("systemd-journald, unshare", "mount namespaces"),
              pytest.mark.skipif(not rj.available(), reason="needs systemd-journald, "
                                 "unshare and /etc/machine-id")]

BOOT = {**{k: k * 32 for k in "abcdef"}, "z": "9" * 32}


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    yield from running_harness(tmp_path)


def settled(sink: ListSink, n: int, timeout: float = 30.0) -> list[str]:
    """The lines once ``n`` arrived (or ``timeout`` passed: the caller's assertion says
    what is missing) and nothing more came for a while."""
    deadline = time.monotonic() + timeout
    while len(sink.lines) < n and time.monotonic() < deadline:
        time.sleep(POLL)
    time.sleep(20 * POLL)
    return [line.text for line in sink.lines]


def cursor_of(var: Path, message: str) -> str:
    return next(e["__CURSOR"] for e in rj.entries(var) if e.get("MESSAGE") == message)


def sequence(cursor: str) -> tuple[str, int]:
    fields = dict(p.split("=", 1) for p in cursor.split(";"))
    return fields["s"], int(fields["i"], 16)


def test_journald_keeps_the_sequence_after_an_unclean_stop(tmp_path: Path) -> None:
    """The premise of agent.sources.journal_boots: killed (its file left online, as after a
    power cut) journald 252 sets the file aside and goes on with its sequence; a user's
    journal is a sequence of its own."""
    var = tmp_path / "var"
    rj.boot(var, BOOT["a"], [rj.log_cmd("a 1"), rj.log_cmd("a user", uid=1000)],
            unclean=True)
    rj.boot(var, BOOT["b"], [rj.log_cmd("b 1"), rj.log_cmd("b user", uid=1000)])
    s = {m: sequence(cursor_of(var, m))[0] for m in ("a 1", "a user", "b 1", "b user")}
    assert s["a 1"] == s["b 1"]
    assert s["a user"] == s["b user"] != s["a 1"]


def test_a_power_cut_that_lost_the_read_tail_reads_the_next_boots(
        h: Harness, tmp_path: Path) -> None:
    """The agent read "a 3" from the page cache; the cut lost everything after "a 1", so
    journald numbers boot B below the cursor. B (cut too, nothing saved in it) and this
    boot C are read whole: sd-journal's order skipped B's first lines, and placing B by
    the cursor's number skipped all of it (third review)."""
    var = tmp_path / "var"
    seen = tmp_path / "a3.json"
    rj.boot(var, BOOT["a"], [rj.log_cmd("a 1", tag="app"), rj.log_cmd("a 2", tag="app"),
                             rj.log_cmd("a 3", tag="app"),
                             f"journalctl -D /var/log/journal -t app -n 1 -o json > {seen}"],
            unclean=True, lost_after=1)
    checkpoint = json.loads(seen.read_text())["__CURSOR"]
    rj.boot(var, BOOT["b"], [rj.log_cmd("b crash 1", tag="app"),
                             rj.log_cmd("b crash 2", tag="app")], unclean=True)
    rj.boot(var, BOOT["c"], [rj.log_cmd("c 1", tag="app")])
    entries = rj.entries(var)
    assert "a 3" not in [e.get("MESSAGE") for e in entries]  # lost with the cut
    b_head = next(e["__CURSOR"] for e in entries if e["_BOOT_ID"] == BOOT["b"])
    assert sequence(b_head)[0] == sequence(checkpoint)[0]
    assert sequence(b_head)[1] <= sequence(checkpoint)[1]  # below the cursor's number
    _, sink = h.start(checkpoint, files=[], directory=var, current_boot=BOOT["c"],
                      identifiers=["app"])
    assert settled(sink, 3) == ["b crash 1", "b crash 2", "c 1"]


def test_this_boot_after_a_lost_tail_is_read_from_its_first_line(
        h: Harness, tmp_path: Path) -> None:
    """The original skip as journald 252 makes it: every line of the boot after the cut,
    its kernel's first one included."""
    var = tmp_path / "var"
    seen = tmp_path / "a3.json"
    rj.boot(var, BOOT["a"], [rj.log_cmd("a 1"), rj.log_cmd("a 2"), rj.log_cmd("a 3"),
                             f"journalctl -D /var/log/journal -t probe -n 1 -o json > {seen}"],
            unclean=True, lost_after=1)
    checkpoint = json.loads(seen.read_text())["__CURSOR"]
    rj.boot(var, BOOT["b"], [rj.log_cmd("b 1")])
    b_lines = [e["MESSAGE"] for e in rj.entries(var) if e["_BOOT_ID"] == BOOT["b"]]
    _, sink = h.start(checkpoint, files=[], directory=var, current_boot=BOOT["b"])
    assert settled(sink, len(b_lines)) == b_lines


def test_a_cursor_in_a_users_journal_does_not_read_earlier_boots_again(
        h: Harness, tmp_path: Path) -> None:
    """An app running as uid 1000 keeps the cursor in user-1000.journal, a sequence of its
    own: every earlier system boot was taken for a later one and read again at each reboot
    (third review)."""
    var = tmp_path / "var"
    rj.boot(var, BOOT["z"], [rj.log_cmd("z app 1", tag="app", uid=1000)])
    rj.boot(var, BOOT["a"], [rj.log_cmd("a app 1", tag="app", uid=1000),
                             rj.log_cmd("a app 2", tag="app", uid=1000)])
    checkpoint = cursor_of(var, "a app 1")
    rj.boot(var, BOOT["c"], [rj.log_cmd("c app 1", tag="app", uid=1000)])
    _, sink = h.start(checkpoint, files=[], directory=var, current_boot=BOOT["c"],
                      identifiers=["app"])
    assert settled(sink, 2) == ["a app 2", "c app 1"]


def test_a_cursor_read_before_the_flush_reads_neither_a_boot_nor_a_line_twice(
        h: Harness, tmp_path: Path) -> None:
    """A cursor read from /run/log/journal before the flush (a sequence of its own; the
    flush copies the entry into /var's): neither boot A nor the copied line is read again."""
    var = tmp_path / "var"
    rj.boot(var, BOOT["a"], [rj.log_cmd("a 1", tag="app")])
    seen = tmp_path / "early.json"
    rj.boot(var, BOOT["b"], [rj.log_cmd("b early", tag="app"),
                             f"journalctl -D /run/log/journal -t app -n 1 -o json > {seen}",
                             "journalctl --flush", rj.log_cmd("b late", tag="app")],
            flushed=False)
    checkpoint = json.loads(seen.read_text())["__CURSOR"]
    rj.boot(var, BOOT["c"], [rj.log_cmd("c 1", tag="app")])
    _, sink = h.start(checkpoint, files=[], directory=var, current_boot=BOOT["c"],
                      identifiers=["app"])
    assert settled(sink, 2) == ["b late", "c 1"]


def test_journald_killed_mid_boot_then_a_clean_reboot(h: Harness, tmp_path: Path) -> None:
    """journald killed (a watchdog) and restarted within boot A: the rest of A across both
    of its files, then C."""
    var = tmp_path / "var"
    seen = tmp_path / "c.json"
    rj.boot(var, BOOT["a"], [rj.log_cmd("a 1", tag="app"),
                             f"journalctl -D /var/log/journal -t app -n 1 -o json > {seen}",
                             rj.log_cmd("a 2", tag="app")], unclean=True)
    rj.boot(var, BOOT["a"], [rj.log_cmd("a 3 after the restart", tag="app")])
    rj.boot(var, BOOT["c"], [rj.log_cmd("c 1", tag="app")])
    checkpoint = json.loads(seen.read_text())["__CURSOR"]
    _, sink = h.start(checkpoint, files=[], directory=var, current_boot=BOOT["c"],
                      identifiers=["app"])
    assert settled(sink, 3) == ["a 2", "a 3 after the restart", "c 1"]
