"""The files a file source holds open, and opening them where reading resumes.

What to read is decided by :func:`agent.sources.file_position.plan_resume` (pure); this
module gathers its facts (the live file and its rotated siblings, opened first so that
a rename in between leaves each file in view under one name or the other) and keeps
open only the files the plan reads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.sources.file_position import (
    HEAD_BYTES,
    Candidate,
    FileCheckpoint,
    FileIdentity,
    ResumePlan,
    is_rotated_sibling,
    plan_resume,
)

RESUME_ATTEMPTS = 3
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


def open_file(path: str, key: str, live: bool) -> OpenFile | None:
    """Open ``key`` (the followed ``path`` or a rotated sibling of it); None when it does
    not exist. Other errors (e.g. no permission) are raised."""
    try:
        fd = os.open(key, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    st = os.fstat(fd)
    return OpenFile(fd, FileIdentity(path, st.st_dev, st.st_ino, read_head(fd)), key, live)


def close_files(files: Iterable[OpenFile]) -> None:
    for f in files:
        with contextlib.suppress(OSError):
            os.close(f.fd)


def _candidate(f: OpenFile) -> Candidate:
    st = os.fstat(f.fd)
    return Candidate(f.key, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, f.ident.head)


def _open_candidates(path: str, cp: FileCheckpoint | None, opener: Opener) -> dict[str, OpenFile]:
    """The live file, and (with a checkpoint to look for) its rotated siblings."""
    opened: dict[str, OpenFile] = {}
    live = opener(path, True)
    if live is not None:
        opened[path] = live
    if cp is not None:
        folder, live_path = Path(path).parent, Path(path)
        with contextlib.suppress(OSError):
            for name in sorted(os.listdir(folder)):
                if is_rotated_sibling(live_path, name):
                    f = opener(str(folder / name), False)
                    if f is not None:
                        opened[f.key] = f
    return opened


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
