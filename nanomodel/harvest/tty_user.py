"""A person at a terminal: run commands on a pseudo-terminal as a given user and type
answers when prompts appear (stdlib only: run as a script).

Run by the classic-server capture scenario inside its mount namespace (where the
scenario's accounts are bind-mounted over /etc)::

    python3 tty_user.py PLAN.json

``PLAN.json`` is a list of sessions ``{"user": name, "uid": int, "argv": [...],
"script": [[expect, send], ...]}``: the command runs on a new pty as ``uid`` (its
primary group the same number, its home the working directory, as after a login), and
for each step the driver waits until ``expect`` appears in what the terminal printed
(an empty ``expect``: a short pause, as a person reading the screen), then types ``send``.
su, sudo and login read passwords from their terminal, so they need one.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def _read_until(fd: int, expect: bytes, timeout: float) -> bool:
    """Read the terminal until ``expect`` shows (True) or it closes / times out (False)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while expect not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return False
        if not chunk:
            return False
        seen = seen[-256:] + chunk
    return expect in seen


def session(user: str, uid: int, argv: list[str], script: list[list[str]]) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the user's side: drop to the user, as a login shell would have
        if uid:
            os.setgroups([uid])
            os.setgid(uid)
            os.setuid(uid)
        home = "/root" if uid == 0 else f"/home/{user}"
        os.environ.update(HOME=home, USER=user, LOGNAME=user, SHELL="/bin/sh")
        os.chdir(home)
        os.execvp(argv[0], argv)
    for expect, send in script:
        if expect:
            if not _read_until(fd, expect.encode(), 15):
                break
        else:
            time.sleep(1.0)
        os.write(fd, send.encode())
    _read_until(fd, b"\0never\0", 8)  # let it finish (a failed password takes seconds)
    with contextlib.suppress(ProcessLookupError):  # a closed terminal: the person walked away
        os.kill(pid, signal.SIGHUP)
    os.waitpid(pid, 0)
    os.close(fd)


def main(argv: list[str]) -> int:
    with open(argv[0]) as fh:
        plan = json.load(fh)

    def one(item: dict[str, Any]) -> None:
        session(item["user"], item["uid"], item["argv"], item["script"])
        time.sleep(0.2)

    with ThreadPoolExecutor(3) as pool:  # a few people at terminals at once
        list(pool.map(one, plan))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
