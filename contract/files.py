"""Files replaced atomically and durably, on the device and on the server alike.

Write a temporary file beside the target, fsync it, rename it over the target and
fsync the directory: after a power cut a reader sees the old bytes or the new ones,
never a torn mix, and the rename itself is on disk once the call returns.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def replacing(path: Path, mode: int = 0o644, single_writer: bool = False) -> Iterator[BinaryIO]:
    """A temporary file beside ``path`` to write; on success it is fsynced, given
    ``mode`` and renamed over ``path``, and the directory fsynced. On error it is
    removed and ``path`` is untouched. The parent directory is created if needed.

    ``single_writer``: only this process ever writes ``path`` (a device's state
    file), so the temporary file has a fixed name, ``.<name>.tmp``: a power cut
    mid-write leaves at most one stray file per target, overwritten next time,
    instead of one more uniquely named file per cut. Writers that may run at once
    (several server workers) keep the default, a unique temporary name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 either way: a private file is never readable by others, even briefly.
    if single_writer:
        tmp = str(path.with_name(f".{path.name}.tmp"))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    else:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes, mode: int = 0o644, single_writer: bool = False) -> None:
    """Replace ``path`` with ``data``: readers see the old or the new bytes, never a mix."""
    with replacing(path, mode, single_writer) as fh:
        fh.write(data)


def copy_atomic(source: Path, path: Path, mode: int = 0o644) -> None:
    """Like :func:`write_atomic` for a file that may be too large to hold in memory."""
    with replacing(path, mode) as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out, 1 << 20)
