"""The files a file source holds open, and opening them where reading resumes.

What to read is decided by :func:`agent.sources.file_position.plan_resume` (pure); this
module gathers its facts (the live file and its rotated siblings, opened first so that
a rename in between leaves each file in view under one name or the other) and keeps
open only the files the plan reads.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import logging
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.safe_dir import UnsafePath, open_parent
from agent.sources.file_position import (
    HEAD_BYTES,
    Candidate,
    FileCheckpoint,
    FileIdentity,
    ResumePlan,
    is_rotated_sibling,
    plan_resume,
    same_file,
)

log = logging.getLogger("nanofleet.agent.sources")
RESUME_ATTEMPTS = 3
MAX_ROTATED_CANDIDATES = 64  # rotated siblings looked at on a resume, newest first
RESUME_RETRY_S = 0.05


@dataclass
class OpenFile:
    fd: int
    ident: FileIdentity
    key: str        # the path it was opened at
    live: bool      # opened at the configured path (else a rotated file to finish)


# A file to read, the offset to start at, and whether that offset is inside a line
# already (partly) read (see LineSplitter.restart).
QueuedFile = tuple[OpenFile, int, bool]
# Opens one file (key, live), None when it is not there (or cannot be opened now).
Opener = Callable[[str, bool], "OpenFile | None"]


def read_head(fd: int) -> bytes:
    return os.pread(fd, HEAD_BYTES, 0)


def _parent_of(key: str) -> tuple[int, str] | None:
    """``open_parent(key)`` (see :func:`open_file` for the rule); None when a directory on
    the way is missing; a link that is not followed raises PermissionError naming it."""
    try:
        return open_parent(key)
    except FileNotFoundError:
        return None
    except UnsafePath as exc:
        raise PermissionError(errno.EPERM, str(exc)) from None


def open_file(path: str, key: str, live: bool) -> OpenFile | None:
    """Open ``key`` (the followed ``path`` or a rotated sibling of it); None when it does
    not exist. Other errors (e.g. no permission) are raised.

    Whoever may write the log's directory (often the logging service's own user) must not
    steer the agent (review, December 2026): a FIFO put there blocked ``open`` for ever (at
    start, in the daemon's main thread: never ready, deaf to SIGTERM), and a symlink made
    the agent read and publish any file it may read (its device key, auth.log). So only
    regular files are read, opened without blocking, and the path is walked from ``/`` one
    component at a time (:func:`agent.safe_dir.open_parent`): a symbolic link there, at
    any component and at each hop of a chain, is followed only when root or the agent's
    own user made it *and* the directory holding it is owned by root or the agent and
    writable by no one else (a packaged ``current`` link). Before (second review, same
    month), only the last component was checked: a root-made link into a directory
    another user writes led on through that user's link, and a directory on the path
    replaced by a link was followed. The file is opened with ``O_NOFOLLOW`` through its
    directory's fd, so no link can be swapped in between."""
    parent = _parent_of(key)
    if parent is None:
        return None
    dir_fd, name = parent
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise PermissionError(errno.EPERM, "it became a symbolic link while it was opened: "
                              "not followed", key) from None
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or directory): "
                          "not read", key)
        os.set_blocking(fd, True)
        return OpenFile(fd, FileIdentity(path, st.st_dev, st.st_ino, read_head(fd)), key,
                        live)
    except BaseException:
        os.close(fd)
        raise


def stat_path(key: str) -> os.stat_result:
    """What ``key`` names now, reached by :func:`open_file`'s rule (and an ``lstat`` of the
    last name: a link swapped in after the walk is seen as itself, not followed).
    FileNotFoundError when it is missing; PermissionError for a link on the way that is not
    followed."""
    parent = _parent_of(key)
    if parent is None:
        raise FileNotFoundError(errno.ENOENT, "no such file or directory", key)
    dir_fd, name = parent
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    finally:
        os.close(dir_fd)


def close_files(files: Iterable[OpenFile]) -> None:
    for f in files:
        with contextlib.suppress(OSError):
            os.close(f.fd)


def _candidate(f: OpenFile) -> Candidate:
    st = os.fstat(f.fd)
    return Candidate(f.key, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, f.ident.head)


def _rotated_names(folder: Path, live_path: Path) -> tuple[list[str], int]:
    """The names of ``live_path``'s rotated siblings in ``folder``, newest first, at most
    :data:`MAX_ROTATED_CANDIDATES`, and how many more there were. The directory is
    streamed and each name only ``lstat``-ed: whoever may write the log's directory may
    fill it (review, December 2026: 5,000 such names opened at every restart and reload
    ran the agent out of file descriptors; 300,000 took 15 s and 107 MB)."""
    newest: list[tuple[int, str]] = []
    seen = 0
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if not is_rotated_sibling(live_path, entry.name):
                continue
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime_ns
            except OSError:
                continue
            seen += 1
            newest.append((mtime, entry.name))
            if len(newest) > 4 * MAX_ROTATED_CANDIDATES:  # bounded while streaming
                newest = heapq.nlargest(MAX_ROTATED_CANDIDATES, newest)
    kept = heapq.nlargest(MAX_ROTATED_CANDIDATES, newest)
    return [name for _, name in kept], seen - len(kept)


def _open_candidates(path: str, cp: FileCheckpoint | None, opener: Opener) -> dict[str, OpenFile]:
    """The live file, and (with a checkpoint it does not hold) its rotated siblings."""
    opened: dict[str, OpenFile] = {}
    live = opener(path, True)
    if live is not None:
        opened[path] = live
        if cp is not None and same_file(cp, live.ident.dev, live.ident.ino, live.ident.head):
            return opened  # the usual restart: nothing rotated, no listing needed
    if cp is not None:
        folder, live_path = Path(path).parent, Path(path)
        names, more = _rotated_names(folder, live_path)
        if more:
            log.warning("%s: %d more rotated-looking files than the %d newest looked at",
                        folder, more, MAX_ROTATED_CANDIDATES)
        for name in names:
            # opened by open_file's rule, as the live file: the listing only names them
            f = opener(str(folder / name), False)
            if f is not None:
                opened[f.key] = f
    return opened


def open_newer_siblings(path: str, than_mtime_ns: int, known: set[tuple[int, int]],
                        opener: Opener) -> list[OpenFile]:
    """Rotated siblings of ``path`` written after ``than_mtime_ns`` that are none of the
    ``known`` (dev, inode)s, oldest first: files that were live and rotated away again
    while the source was not looking (two rotations while it waited on a full queue lost
    the middle file: review, December 2026). Each is opened by :func:`open_file`'s rule."""
    folder, live_path = Path(path).parent, Path(path)
    found: list[tuple[int, str, OpenFile]] = []
    for name in _rotated_names(folder, live_path)[0]:
        f = opener(str(folder / name), False)
        if f is None:
            continue
        st = os.fstat(f.fd)
        if (st.st_dev, st.st_ino) in known or st.st_mtime_ns <= than_mtime_ns:
            close_files([f])
            continue
        known.add((st.st_dev, st.st_ino))
        found.append((st.st_mtime_ns, f.key, f))
    return [f for _, _, f in sorted(found, key=lambda item: item[:2])]


def open_for_resume(cp: FileCheckpoint | None, path: str, start_at: str, opener: Opener,
                    pause: Callable[[float], object]) -> tuple[list[QueuedFile], ResumePlan]:
    """Open the live file and its rotated siblings, plan, keep only what the plan reads:
    the files to read in order (rotated ones first, the live file last).

    A rotation racing the listing can still hide the checkpointed file, hence another
    look (after ``pause(seconds)``) when the plan did not find it."""
    for attempt in range(RESUME_ATTEMPTS):
        opened = _open_candidates(path, cp, opener)
        facts = {k: _candidate(f) for k, f in opened.items()}
        plan = plan_resume(cp, path, start_at, facts.get(path),
                           [c for k, c in facts.items() if k != path])
        if not plan.lost or attempt == RESUME_ATTEMPTS - 1:
            break
        close_files(opened.values())
        pause(RESUME_RETRY_S)
    keep: list[QueuedFile] = [(opened[s.key], s.offset, s.skip) for s in plan.backlog]
    live = opened.get(path)
    if live is not None:
        offset, skip = plan.live_offset, plan.live_skip
        if offset is None:  # start_at=end: skip a line being written as we start
            offset = facts[path].size
            skip = offset > 0 and os.pread(live.fd, 1, offset - 1) != b"\n"
        keep.append((live, offset, skip))
    close_files(f for f in opened.values() if not any(f is k[0] for k in keep))
    return keep, plan
