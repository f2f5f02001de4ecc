"""Waking the daemon's main thread from a signal handler, without a lock.

``threading.Event.set()`` from a handler can deadlock: Python runs the handler in the main
thread between two bytecodes, also while that thread is inside the same Event's
``wait()``/``clear()`` holding its Condition's lock, which is not reentrant. The handler
then waits for a lock its own thread holds, for ever: seen as an agent that took neither
SIGHUP nor SIGTERM (no RELOADING or STOPPING, the unit killed at its stop timeout; a
flaky ``test_sd_notify_ready_watchdog_reload_stop`` for several sessions). A pipe needs
no lock: the handler writes a byte, the main thread waits in ``select``.
"""

from __future__ import annotations

import contextlib
import os
import select


class SignalWake:
    """An event a signal handler may set: ``set`` writes a byte to a pipe, ``wait``
    sleeps until one is there (or ``timeout``) and empties it."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError):  # full: a wake is pending anyway
            os.write(self._w, b"\0")

    def wait(self, timeout: float) -> bool:
        """Whether a wake came within ``timeout`` seconds (consumed)."""
        ready, _, _ = select.select([self._r], [], [], max(0.0, timeout))
        if not ready:
            return False
        with contextlib.suppress(BlockingIOError):
            while os.read(self._r, 4096):
                pass
        return True

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)
