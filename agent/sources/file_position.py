"""Where a file source is, and where it resumes: pure decisions, no I/O.

A file is identified by (st_dev, st_ino) plus a hash of its first bytes, so that a
reused inode (file deleted, a new one created) or a copytruncate rewrite is not
mistaken for the file we were reading. The checkpoint is a small JSON object;
the reader formats it per line with a cached prefix (see :class:`FileIdentity`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# How much of a file's beginning identifies it. Log lines start with timestamps,
# so a few hundred bytes tell two files apart.
HEAD_BYTES = 256
# Rotated siblings: pump.log.1, pump.log-20240101, pump.log.2024-01-01 (never compressed).
_COMPRESSED = (".gz", ".xz", ".bz2", ".zst", ".lz4", ".z", ".zip")


def head_hash(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()[:32]


class FileCheckpoint(BaseModel):
    """The persisted position of a file source (resume AFTER the line ending at ``off``)."""

    model_config = ConfigDict(extra="forbid")

    v: int = Field(description="Format version (1).")
    path: str = Field(description="The configured path the source follows.")
    dev: int = Field(description="st_dev of the file being read.")
    ino: int = Field(description="st_ino of the file being read.")
    hn: int = Field(ge=0, le=HEAD_BYTES, description="Bytes of the file's head hashed in hs.")
    hs: str = Field(description="Truncated sha256 (hex) of the first hn bytes.")
    off: int = Field(ge=0, description="Byte offset to resume reading at.")
    skip: bool = Field(default=False,
                       description="Resume inside an over-long line: skip to its newline first.")

    @classmethod
    def decode(cls, text: str) -> FileCheckpoint:
        try:
            cp = cls.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            raise ValueError(f"file checkpoint is not valid: {exc}") from None
        if cp.v != 1:
            raise ValueError(f"file checkpoint version {cp.v} is not supported")
        return cp


@dataclass
class FileIdentity:
    """The file being read; ``checkpoint(off)`` is on the per-line hot path."""

    path: str
    dev: int
    ino: int
    head: bytes = b""
    _prefix: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self.set_head(self.head)

    def set_head(self, head: bytes) -> None:
        self.head = head[:HEAD_BYTES]
        self._prefix = (f'{{"v":1,"path":{json.dumps(self.path)},"dev":{self.dev},'
                        f'"ino":{self.ino},"hn":{len(self.head)},"hs":"{head_hash(self.head)}",'
                        '"off":')

    def checkpoint(self, off: int, skip: bool = False) -> str:
        return f'{self._prefix}{off},"skip":true}}' if skip else f"{self._prefix}{off}}}"

    def matches(self, cp: FileCheckpoint) -> bool:
        return same_file(cp, self.dev, self.ino, self.head)


def same_file(cp: FileCheckpoint, dev: int, ino: int, head: bytes) -> bool:
    """True when (dev, ino, head) is the file the checkpoint was taken in."""
    return (cp.dev, cp.ino) == (dev, ino) and len(head) >= cp.hn and \
        head_hash(head[:cp.hn]) == cp.hs


def is_rotated_sibling(live: Path, name: str) -> bool:
    """pump.log.1 / pump.log-20240101 next to pump.log, not compressed ones."""
    if name.lower().endswith(_COMPRESSED):
        return False
    return re.fullmatch(re.escape(live.name) + r"[.-]\d[\w.-]*", name) is not None


@dataclass(frozen=True)
class Candidate:
    """Facts about one file that may hold our position (gathered by the reader)."""

    key: str            # path it was found at
    dev: int
    ino: int
    size: int
    mtime_ns: int
    head: bytes


@dataclass(frozen=True)
class ResumeStep:
    key: str            # Candidate.key to read
    offset: int
    skip: bool = False


@dataclass(frozen=True)
class ResumePlan:
    """Rotated files to finish first (oldest first), then where the live file starts.

    ``live_offset`` None means "the end of the live file" (start_at=end, nothing to
    resume); ``live_skip`` means the first bytes read belong to a line already
    (partly) seen, so skip to the next newline.
    """

    backlog: tuple[ResumeStep, ...]
    live_offset: int | None
    live_skip: bool
    note: str
    lost: bool = False  # the checkpointed file was not found (worth a second look)


# A checkpoint's head this long names its file (a shorter one may be a common banner).
MIN_COPY_HEAD_BYTES = 64


def plan_resume(cp: FileCheckpoint | None, path: str, start_at: str,
                live: Candidate | None, rotated: list[Candidate]) -> ResumePlan:
    """Decide where to resume so that no line is read twice or skipped.

    ``live`` is the file now at ``path`` (None: missing); ``rotated`` are its rotated
    siblings. A file that appears later (live None) is always read from its start.
    """
    note = ""
    if cp is not None and cp.path != path:
        note = f"checkpoint was for {cp.path}; ignored"
        cp = None
    if cp is None:
        if live is None:
            return ResumePlan((), 0, False, note or "waiting for the file to appear")
        if start_at == "beginning":
            return ResumePlan((), 0, False, note or "no checkpoint: from the beginning")
        return ResumePlan((), None, False, note or "no checkpoint: from the end")
    if live is not None and same_file(cp, live.dev, live.ino, live.head):
        if live.size >= cp.off:
            return ResumePlan((), cp.off, cp.skip, "resumed at checkpoint")
        return ResumePlan((), 0, False, "file shrank while stopped (copytruncate): from 0")
    owner = next((c for c in rotated if same_file(cp, c.dev, c.ino, c.head)), None)
    how = "rotated"
    if owner is None:
        # copytruncate: the content went to a new inode (app.log.1) and the live one was
        # emptied. Known by the head the checkpoint hashed, when it is long enough to be
        # that file's own and the copy holds our offset (review, December 2026: the lines
        # between the checkpoint and the copy were lost).
        owner = next((c for c in rotated if cp.hn >= MIN_COPY_HEAD_BYTES
                      and len(c.head) >= cp.hn and head_hash(c.head[:cp.hn]) == cp.hs
                      and c.size >= cp.off), None)
        how = "copied away (copytruncate)"
    if owner is None:
        return ResumePlan((), 0, False,
                          "checkpointed file is gone (rotated away while stopped); "
                          "lines after the checkpoint in it may be lost: new file from 0",
                          lost=True)
    steps = [ResumeStep(owner.key, cp.off if owner.size >= cp.off else 0, cp.skip)]
    live_id = (live.dev, live.ino) if live is not None else None
    seen = {(owner.dev, owner.ino), live_id}
    newer = sorted((c for c in rotated if c.mtime_ns > owner.mtime_ns),
                   key=lambda c: (c.mtime_ns, c.key))
    for c in newer:
        if (c.dev, c.ino) not in seen:
            seen.add((c.dev, c.ino))
            steps.append(ResumeStep(c.key, 0))
    return ResumePlan(tuple(steps), 0, False,
                      f"{how} while stopped: finishing {owner.key}"
                      + (f" and {len(steps) - 1} newer rotated file(s)" if len(steps) > 1 else ""))
