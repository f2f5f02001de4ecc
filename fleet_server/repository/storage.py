"""File layout of the repository directory and crash-safe writes.

```
<repo>/metadata/N.root.json      every root version (clients walk them one by one)
<repo>/metadata/root.json        copy of the newest root (handy for provisioning)
<repo>/metadata/N.targets.json   operator-signed targets, N from snapshot
<repo>/metadata/N.deltas.json    server-signed delta role, N from snapshot
<repo>/metadata/N.snapshot.json  N from timestamp
<repo>/metadata/timestamp.json   the only file that is ever replaced
<repo>/targets/<dir>/<sha256>.<name>   target files, content-addressed (immutable)
```

Everything under ``metadata/`` and ``targets/`` is static: any web server or CDN
can serve it. Versioned files are never rewritten, so a client that is half-way
through a refresh while a publish happens still sees one consistent state.
"""

from __future__ import annotations

import fcntl
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

METADATA_DIR = "metadata"
TARGETS_DIR = "targets"
LOCK_FILE = ".repository.lock"
_VERSIONED = re.compile(r"^([1-9][0-9]{0,9})\.(.+)\.json$")


class UnsafeTargetPath(ValueError):
    """A target path would escape the targets directory or is not a plain relative path."""


def check_target_path(path: str) -> str:
    """Refuse target paths that could write outside ``targets/`` or confuse URLs."""
    parts = path.split("/")
    if (not path or path.startswith("/") or "\\" in path or "\x00" in path
            or any(p in ("", ".", "..") for p in parts)):
        raise UnsafeTargetPath(f"target path {path!r} is not a plain relative path")
    return path


def consistent_target_name(path: str, sha256: str) -> str:
    """``a/b/name`` -> ``a/b/<sha256>.name`` (what clients request with consistent snapshots)."""
    dirname, sep, basename = check_target_path(path).rpartition("/")
    return f"{dirname}{sep}{sha256}.{basename}"


def versions_of(metadata_dir: Path, role: str) -> list[int]:
    """Versions present as ``N.<role>.json``, ascending."""
    found = []
    if metadata_dir.is_dir():
        for entry in metadata_dir.iterdir():
            m = _VERSIONED.match(entry.name)
            if m and m.group(2) == role:
                found.append(int(m.group(1)))
    return sorted(found)


@contextmanager
def exclusive_lock(repo_dir: Path) -> Iterator[None]:
    """One writer at a time, across processes (several server workers, a cron refresh)."""
    repo_dir.mkdir(parents=True, exist_ok=True)
    with open(repo_dir / LOCK_FILE, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
