"""Files in a directory another user may control, written by root without following links.

``nanofleet-agent enroll`` runs as root and writes into the agent's state directory,
which belongs to the agent's user: that user could plant a symlink (``device.crt ->
/etc/shadow``) and have root truncate, overwrite or chown whatever it points to.
So every operation here goes through a file descriptor of the directory, opened once:

- the path is walked one component at a time with ``O_NOFOLLOW``; a symlink is
  followed only where its directory is owned by root (or by us) and writable by no one
  else, i.e. where nobody else could have put it there (``/var/run -> /run`` is fine,
  ``/var/lib/nanofleet/identity -> /etc`` planted by the agent's user is refused);
- files are created under a fresh random name with ``O_CREAT|O_EXCL|O_NOFOLLOW``,
  given their mode and owner through the open descriptor (``fchmod``/``fchown``: no
  path is followed), synced, and renamed over the target (a rename replaces a symlink,
  never writes through it);
- files are read with ``O_NOFOLLOW`` and must be regular files of bounded size.

:func:`open_parent` walks the same way to a file someone else's directory may hold (a
followed log), with a stricter rule: a link, the last component included, is followed only
when its directory is trusted and root (or we) own the link itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

MAX_LINKS = 32


class UnsafePath(Exception):
    """A path that is not safe to use (symlink another user controls, not a directory...)."""


def _trusted_dir(st: os.stat_result) -> bool:
    """Only root (or we) could have made entries here."""
    return st.st_uid in (0, os.geteuid()) and not st.st_mode & 0o022


def _open_component(parent: int, name: str, flags: int, mode: int = 0o600) -> int:
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent)


def open_directory(path: Path, *, create: bool = False, mode: int = 0o700) -> int:
    """An fd of directory ``path``, reached without following an untrusted symlink; with
    ``create``, missing directories are made (the last one with ``mode``)."""
    return _walk(path, create=create, mode=mode)[0]


def open_parent(path: Path | str) -> tuple[int, str]:
    """For a file to read at ``path`` (a followed log): an fd of the directory that holds
    it and its name there, to be opened with ``os.open(name, ... | O_NOFOLLOW,
    dir_fd=fd)``. The caller closes the fd.

    The path is walked as :func:`open_directory` walks it, with a stricter rule for links,
    at every component including the last: a link is followed only when its directory is
    trusted (:func:`_trusted_dir`) *and* root or this process's user owns the link; each
    link of a chain is checked, a relative target is resolved from the link's directory,
    at most ``MAX_LINKS`` of them. The last name is not opened: it may be missing (then
    the caller's open says so) or become a link before the caller opens it (then
    ``O_NOFOLLOW`` refuses it).

    Raises FileNotFoundError when a directory on the path is missing, UnsafePath for a
    link that is not followed (naming it and why), a component that is not a directory,
    too many links, or a path that names no file (``/`` or ending in ``..``)."""
    return _walk(path, to_file=True)


def _walk(path: Path | str, *, create: bool = False, mode: int = 0o700,
          to_file: bool = False) -> tuple[int, str]:
    """The walk of :func:`open_directory` (``to_file`` False: returns ``(fd, "")``) and of
    :func:`open_parent` (``to_file``: the last name is returned unopened, and a link is
    followed only if also owned by root or us)."""
    parts = list(Path(os.path.abspath(path)).parts[1:])
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    where: list[str] = []  # where fd is, for messages
    links = 0
    try:
        while parts:
            name = parts.pop(0)
            if name in ("", "."):
                continue
            if name == "..":
                new = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = new
                if where:
                    where.pop()
                continue
            if to_file and not parts:  # the file itself: followed only if it is a link
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    return fd, name
                if not stat.S_ISLNK(st.st_mode):
                    return fd, name
            else:
                try:
                    new = _open_component(fd, name, os.O_RDONLY | os.O_DIRECTORY)
                except FileNotFoundError:
                    if not create:
                        raise
                    # Missing parents as mkdir -p would make them; the last one with ``mode``.
                    os.mkdir(name, mode if not parts else 0o755, dir_fd=fd)
                    new = _open_component(fd, name, os.O_RDONLY | os.O_DIRECTORY)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        raise UnsafePath(f"{path}: {name!r} is not a directory") from None
                    new = -1  # a link: see below
                if new >= 0:
                    os.close(fd)
                    fd = new
                    where.append(name)
                    continue
            # ``name`` is a symlink: followed only where nobody else could have made it.
            parent = os.fstat(fd)
            if to_file:
                link = "/" + "/".join([*where, name])
                if not _trusted_dir(parent):
                    whose = (f"group or others may write (mode "
                             f"{stat.S_IMODE(parent.st_mode):04o})"
                             if parent.st_uid in (0, os.geteuid())
                             else f"uid {parent.st_uid} owns")
                    raise UnsafePath(f"{link} is a symbolic link in a directory {whose}: not "
                                     "followed, since whoever may write there could point "
                                     "it at any file")
                if st.st_uid not in (0, os.geteuid()):
                    raise UnsafePath(f"{link} is a symbolic link made by uid {st.st_uid}, "
                                     "not root or this agent: not followed")
            elif not _trusted_dir(parent):
                raise UnsafePath(
                    f"{path}: {name!r} is a symlink in a directory owned by uid "
                    f"{parent.st_uid} (or writable by others): refusing to follow it, "
                    "since whoever controls that directory could point it anywhere. "
                    "Remove the link, or pass the real path")
            links += 1
            if links > MAX_LINKS:
                raise UnsafePath(f"{path}: too many symlinks")
            target = os.readlink(name, dir_fd=fd)
            parts = [*Path(target).parts, *parts]
            if target.startswith("/"):
                parts = parts[1:]
                os.close(fd)
                fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                where = []
        if to_file:
            raise UnsafePath(f"{path}: names a directory, not a file")
        return fd, ""
    except BaseException:
        os.close(fd)
        raise


class SafeDir:
    """A directory opened once; files in it are read and replaced through its fd."""

    def __init__(self, path: Path, fd: int, owner: tuple[int, int] | None = None) -> None:
        self.path, self.fd, self.owner = path, fd, owner

    @classmethod
    def open(cls, path: Path, *, create: bool = False, mode: int | None = None,
             owner: tuple[int, int] | None = None) -> SafeDir:
        """Open ``path``; with ``mode``/``owner`` the directory itself gets them (fchmod,
        fchown on the descriptor)."""
        fd = open_directory(path, create=create, mode=mode or 0o700)
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            if owner is not None:
                os.fchown(fd, *owner)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, owner)

    def __enter__(self) -> SafeDir:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def read(self, name: str, limit: int = 1024 * 1024) -> bytes | None:
        """The bytes of regular file ``name`` (None if there is none); a symlink or
        anything but a regular file, or one over ``limit`` bytes, raises UnsafePath."""
        try:
            fd = _open_component(self.fd, name, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafePath(f"{self.file(name)} is a symlink: refusing to read through "
                                 "it; remove it") from None
            raise
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(f"{self.file(name)} is not a regular file")
            data = f.read(limit + 1)
        if len(data) > limit:
            raise UnsafePath(f"{self.file(name)} is over {limit} bytes")
        return data

    def mode_of(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes, mode: int = 0o644,
              owner: tuple[int, int] | None = None) -> None:
        """Replace ``name`` atomically with a new file (never through a link)."""
        owner = owner or self.owner
        tmp = f".{name}.{secrets.token_hex(8)}.tmp"
        fd = _open_component(self.fd, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), mode)  # before any byte: a key is never readable
                if owner is not None:
                    os.fchown(out.fileno(), *owner)
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.rename(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=self.fd)
            raise
        os.fsync(self.fd)

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        os.fsync(self.fd)

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)
