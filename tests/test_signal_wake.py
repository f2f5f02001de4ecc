"""The daemon's signal wake (agent/signal_wake.py): a signal handler wakes the main thread
without taking a lock. With ``threading.Event`` a SIGHUP or SIGTERM landing while the main
thread was inside the same Event's wait or clear deadlocked the agent (the Condition's
lock is not reentrant): it took neither signal (the flaky sd_notify test)."""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

import pytest

from agent.signal_wake import SignalWake

pytestmark = pytest.mark.unit


def test_a_handler_wakes_a_wait_in_the_same_thread() -> None:
    wake = SignalWake()
    fired: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        fired.append(signum)
        wake.set()

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        started = time.monotonic()
        assert wake.wait(5.0)
        assert fired == [signal.SIGALRM] and time.monotonic() - started < 2.0
        assert not wake.wait(0.05)  # consumed
        for _ in range(100_000):  # a full pipe is a pending wake, not an error
            wake.set()
        assert wake.wait(0) and not wake.wait(0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        wake.close()


def test_the_event_it_replaces_deadlocks_when_set_inside_its_own_lock() -> None:
    """Why not threading.Event: a handler calling set() while its thread holds the
    Event's lock (inside wait or clear) never returns. Shown on a helper thread that
    does what the handler did, with the lock held as the main thread held it."""
    event = threading.Event()
    done = threading.Event()

    def handler_inside_clear() -> None:
        with event._cond:  # the main thread, inside clear(), when the signal landed
            event.set()  # what the handler did: waits for the lock its thread holds
        done.set()

    threading.Thread(target=handler_inside_clear, daemon=True).start()
    assert not done.wait(0.5)  # stuck for good (a daemon thread: the test can end)
    wake = SignalWake()
    try:
        wake.set()  # no lock to wait for
        assert wake.wait(0)
    finally:
        wake.close()
