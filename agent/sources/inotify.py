"""Wake a file source as soon as its directory changes (Linux inotify via ctypes).

Polling alone adds up to one poll interval of latency to every line; inotify lets
a follower sleep until something happens, with the poll interval kept only as a
fallback (and for file systems where inotify says nothing, e.g. some network mounts).
The directory is watched, not the file, so creation and renames (rotation) wake us too.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import struct
from pathlib import Path

log = logging.getLogger("nanofleet.agent.sources")

IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
WATCH_MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
# Events after which a path may name another file (a rotation), or events were lost.
STRUCTURAL = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_Q_OVERFLOW | IN_IGNORED
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (+ name)

_libc: ctypes.CDLL | None = None


def _load_libc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        # The process's own symbols (its libc, glibc or musl): ctypes.util.find_library
        # would run ldconfig in a subprocess at start-up and keep subprocess imported.
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            return None
    return _libc


def _event_masks(data: bytes) -> int:
    """The union of the masks of a buffer of inotify events."""
    masks, off = 0, 0
    while off + _EVENT.size <= len(data):
        _wd, mask, _cookie, length = _EVENT.unpack_from(data, off)
        masks |= mask
        off += _EVENT.size + length
    return masks


class DirectoryWatch:
    """``wait(timeout)`` returns when the directory changed or the timeout passed."""

    def __init__(self, directory: Path) -> None:
        self.fd: int | None = None
        self._structural = True  # nothing seen yet: callers check the path once
        self._gone = False  # the kernel dropped the watch (IN_IGNORED)
        # A self-pipe so interrupt() (from stop()) ends a wait at once.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        libc = _load_libc()
        if libc is None or not hasattr(libc, "inotify_init1"):
            return
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            return
        if libc.inotify_add_watch(fd, os.fsencode(directory), WATCH_MASK) < 0:
            # Directory missing (yet) or not permitted: fall back to polling.
            os.close(fd)
            return
        self.fd = fd

    @property
    def active(self) -> bool:
        """Do changes in the directory wake ``wait``? Not without inotify, nor once the
        kernel dropped the watch (IN_IGNORED: the directory was deleted, or its file
        system unmounted): then only the timeout does, and callers poll."""
        return self.fd is not None and not self._gone

    def wait(self, timeout: float) -> bool:
        """True when woken by a change (false wakes are harmless: the caller re-checks)."""
        fds = [self._wake_r] if self.fd is None else [self.fd, self._wake_r]
        ready, _, _ = select.select(fds, [], [], timeout)
        for fd in ready:
            self._read_events(fd)
        return self.fd in ready

    def drain(self) -> None:
        """Forget the change events queued so far (remembering create/move/delete), so
        that writes whose data is about to be read do not wake the next ``wait``."""
        if self.fd is not None:
            self._read_events(self.fd)

    def _read_events(self, fd: int) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while data := os.read(fd, 65536):
                if fd == self.fd:
                    masks = _event_masks(data)
                    if masks & STRUCTURAL:
                        self._structural = True
                    if masks & IN_IGNORED:
                        self._gone = True

    @property
    def structural_pending(self) -> bool:
        """A create/move/delete (or lost events) not yet taken by take_structural()."""
        return self._structural

    def take_structural(self) -> bool:
        """Was a file created, moved or deleted in the directory (or were events lost)
        since the last call? Only then (or on a poll tick) can the followed path have
        been rotated; plain writes need no ``stat`` of the path."""
        seen, self._structural = self._structural, False
        return seen

    def interrupt(self) -> None:
        if self._wake_w >= 0:  # never write to a closed (possibly reused) descriptor
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def close(self) -> None:
        fds, self.fd = (self.fd, self._wake_r, self._wake_w), None
        self._wake_r = self._wake_w = -1
        for fd in fds:
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
