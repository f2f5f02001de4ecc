"""How long a followed file's source sleeps when nothing wakes it: pure decisions, and
the one look at the system they need (:func:`look_why_events_miss_file`).

With a live inotify watch on the file's directory, a write, create, rename, delete or
truncate wakes the source at once, so looking at the file on a timer only guards
against the unforeseen: a slow *safety tick* (``SAFETY_TICK_S``) is enough, and an
idle agent wakes a tenth as often. The fast poll (``poll_interval_s``) stays where
the timer is how changes are seen:

- no inotify, or no watch (the directory is missing, or the kernel dropped the watch);
- a file whose changes the directory's events do not show: on network and FUSE file
  systems (changes made by other hosts or by the file system's daemon raise no event
  here), behind a symlink into another directory, or once a tick found data that no
  event announced (then for the rest of the source's life);
- while a rotation is being handled (its grace period ends on a timer, and the old
  file may have moved out of the watched directory) or the file cannot be opened
  (a permission change raises no event we watch for).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Where inotify works, how often a quiet file is looked at anyway (s).
SAFETY_TICK_S = 2.0

# File system types whose inotify events miss changes: made on another host (network
# and cluster file systems) or outside this kernel's VFS (shared folders, virtiofs).
# FUSE types ("fuse", "fuse.sshfs", "fuseblk") are matched by prefix.
_EVENTS_MISS_CHANGES = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "9p", "afs", "coda", "ceph",
    "glusterfs", "lustre", "gpfs", "ocfs2", "gfs2", "virtiofs", "vboxsf", "vmhgfs",
    "davfs", "beegfs", "orangefs",
})
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def events_show_changes(fstype: str | None) -> bool:
    """Do inotify events on a directory of this file system type show every change of
    its files? Unknown (None) counts as no: polling is the safe side."""
    if fstype is None:
        return False
    return fstype not in _EVENTS_MISS_CHANGES and not fstype.startswith("fuse")


def mount_fstype(mountinfo: str, path: str) -> str | None:
    """The type of the file system mounted where ``path`` (absolute, symlinks resolved)
    lives, from the text of ``/proc/self/mountinfo``; None when no mount holds it.

    The deepest mount point that contains the path wins; of mounts stacked on one
    point, the last listed (the one on top)."""
    best_len, fstype = -1, None
    for line in mountinfo.splitlines():
        fields, sep, rest = line.partition(" - ")
        parts = fields.split()
        if not sep or len(parts) < 5 or not rest.split():
            continue
        point = _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), parts[4])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best_len:
            best_len, fstype = len(point), rest.split()[0]
    return fstype


def why_events_miss_file(fstype: str | None, is_symlink: bool) -> str | None:
    """Why the events of the file's directory would not show its changes, as
    ``query sources`` says it; None when they do."""
    if is_symlink:
        return "the path is a symlink (changes of its file raise events elsewhere)"
    if fstype is None:
        return "file system type unknown"
    if not events_show_changes(fstype):
        return f"{fstype} file system (changes made elsewhere raise no event)"
    return None


def look_why_events_miss_file(path: Path) -> str | None:
    """:func:`why_events_miss_file` for the file at ``path``, from its directory's mount
    (``/proc/self/mountinfo``) and whether ``path`` is a symlink."""
    try:
        is_symlink = path.is_symlink()
        directory = os.path.realpath(path.parent)
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return "file system type unknown"
    return why_events_miss_file(mount_fstype(mountinfo, directory), is_symlink)


def idle_tick_s(poll_interval_s: float, *, watching: bool, events_show_file: bool,
                settled: bool) -> float:
    """How long to sleep when nothing wakes the source (s).

    ``watching``: a live inotify watch on the directory; ``events_show_file``: its
    events show this file's changes (file system, no symlink, none seen missed);
    ``settled``: following the live file (or waiting for it to appear), no rotation
    being handled and no error opening it."""
    if watching and events_show_file and settled:
        return max(poll_interval_s, SAFETY_TICK_S)
    return poll_interval_s
