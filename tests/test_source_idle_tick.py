"""The file source's idle tick: a slow safety tick where inotify shows the file's
changes, the fast poll where it cannot (the pure rule, the mount lookup, and real
sources on real files: wake-ups of an idle source, a file whose changes raise no
event in its directory, a symlinked path, a watch the kernel dropped)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.metrics import Counters
from agent.sources.file import FileSource, FileSourceConfig
from agent.sources.idle_tick import (
    SAFETY_TICK_S,
    events_show_changes,
    idle_tick_s,
    mount_fstype,
    why_events_miss_file,
)
from agent.sources.inotify import DirectoryWatch
from tests.support.line_sink import ListSink, wait_until

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 259:2 / / rw,relatime - ext4 /dev/nvme0n1p2 rw
40 27 0:41 / /var/log rw,relatime - tmpfs tmpfs rw
41 40 0:42 / /var/log/remote rw,relatime - nfs4 srv:/logs rw,vers=4.2
42 27 0:43 / /mnt/my\\040logs rw - fuse.sshfs host:/x rw
43 40 0:44 / /var/log/remote rw,relatime - cifs //srv/logs rw
"""


def test_mount_fstype_takes_the_deepest_mount_and_the_top_of_a_stack() -> None:
    assert mount_fstype(MOUNTINFO, "/home/pi/app.log") == "ext4"
    assert mount_fstype(MOUNTINFO, "/var/log") == "tmpfs"
    assert mount_fstype(MOUNTINFO, "/var/log/pump.log") == "tmpfs"
    assert mount_fstype(MOUNTINFO, "/var/logs/pump.log") == "ext4"  # not under /var/log
    assert mount_fstype(MOUNTINFO, "/var/log/remote/a/pump.log") == "cifs"  # on top
    assert mount_fstype(MOUNTINFO, "/mnt/my logs/pump.log") == "fuse.sshfs"  # \040
    assert mount_fstype("", "/var/log/pump.log") is None


def test_which_file_systems_show_every_change_by_events() -> None:
    for fstype in ("ext4", "xfs", "btrfs", "tmpfs", "overlay", "f2fs", "vfat"):
        assert events_show_changes(fstype), fstype
    for fstype in ("nfs", "nfs4", "cifs", "9p", "virtiofs", "fuse", "fuse.sshfs", None):
        assert not events_show_changes(fstype), fstype
    assert why_events_miss_file("ext4", is_symlink=False) is None
    assert "symlink" in str(why_events_miss_file("ext4", is_symlink=True))
    assert "nfs4" in str(why_events_miss_file("nfs4", is_symlink=False))
    assert "unknown" in str(why_events_miss_file(None, is_symlink=False))


@pytest.mark.parametrize(("watching", "shows", "settled", "tick"), [
    (True, True, True, SAFETY_TICK_S),   # inotify wakes us: a safety tick is enough
    (False, True, True, 0.2),            # no watch: the poll is how changes are seen
    (True, False, True, 0.2),            # events miss this file's changes
    (True, True, False, 0.2),            # a rotation being handled, or open failing
])
def test_idle_tick_rule(watching: bool, shows: bool, settled: bool, tick: float) -> None:
    assert idle_tick_s(0.2, watching=watching, events_show_file=shows,
                       settled=settled) == tick
    # A poll interval longer than the safety tick is kept either way.
    assert idle_tick_s(5.0, watching=watching, events_show_file=shows, settled=settled) == 5.0


def _start(path: Path, poll: float = 0.2) -> tuple[FileSource, ListSink]:
    cfg = FileSourceConfig.model_validate({"kind": "file", "path": path,
                                           "start_at": "beginning", "poll_interval_s": poll})
    sink = ListSink()
    src = FileSource("f", cfg, sink, Counters(), 4096)
    src.start(None)
    return src, sink


@pytest.fixture
def sources() -> Iterator[list[FileSource]]:
    started: list[FileSource] = []
    yield started
    for src in started:
        src.stop()


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def _voluntary_switches(native_id: int) -> int:
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines()
                if line.startswith("voluntary_ctxt_switches:"))


def test_an_idle_watched_file_wakes_its_source_once_per_safety_tick(
        tmp_path: Path, sources: list[FileSource]) -> None:
    path = tmp_path / "pump.log"
    path.write_text("a1\n")
    src, sink = _start(path)
    sources.append(src)
    sink.wait_count(1)
    wait_until(lambda: src.describe()["idle_tick_s"] == SAFETY_TICK_S)
    assert src.describe()["inotify_misses"] is None
    assert src._thread is not None and src._thread.native_id is not None
    tid = src._thread.native_id
    before = _voluntary_switches(tid)
    time.sleep(3 * SAFETY_TICK_S)
    woke = _voluntary_switches(tid) - before
    assert woke <= 5, woke  # at the 0.2 s poll it would be ~30
    t0 = time.monotonic()
    _append(path, "a2\n")  # a write still wakes it at once
    sink.wait_count(2)
    assert time.monotonic() - t0 < 1.0


def test_changes_that_raise_no_event_in_the_directory_switch_to_the_poll(
        tmp_path: Path, sources: list[FileSource]) -> None:
    """A write through a hard link in another directory raises its event there, not in
    the followed file's directory (as on a network file system written from elsewhere):
    the safety tick finds it, and from then on the source polls."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    path, other = tmp_path / "logs" / "pump.log", tmp_path / "elsewhere" / "pump.log"
    path.write_text("a1\n")
    os.link(path, other)
    src, sink = _start(path, poll=0.05)
    sources.append(src)
    sink.wait_count(1)
    wait_until(lambda: src.describe()["idle_tick_s"] == SAFETY_TICK_S)
    time.sleep(0.5)  # asleep on its watch (not still reading a1)
    _append(other, "a2\n")
    assert sink.wait_count(2, timeout=3 * SAFETY_TICK_S)[-1] == "a2"  # the safety tick
    wait_until(lambda: src.describe()["idle_tick_s"] == 0.05)
    assert "no event" in src.describe()["inotify_misses"]
    for i in range(3):
        t0 = time.monotonic()
        _append(other, f"b{i}\n")
        sink.wait_count(3 + i)
        assert time.monotonic() - t0 < 1.0  # the poll, not the safety tick


def test_a_symlinked_path_is_polled(tmp_path: Path, sources: list[FileSource]) -> None:
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "current.log"
    target.write_text("a1\n")
    path = tmp_path / "pump.log"
    path.symlink_to(target)
    src, sink = _start(path, poll=0.05)
    sources.append(src)
    sink.wait_count(1)
    info = src.describe()
    assert info["idle_tick_s"] == 0.05 and "symlink" in info["inotify_misses"]
    t0 = time.monotonic()
    _append(target, "a2\n")
    sink.wait_count(2)
    assert time.monotonic() - t0 < 1.0


def test_a_watch_the_kernel_dropped_is_no_longer_trusted(tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    w = DirectoryWatch(folder)
    assert w.active
    folder.rmdir()
    assert w.wait(2.0)
    w.drain()
    assert not w.active  # IN_IGNORED: nothing will come any more; callers poll
    w.close()
