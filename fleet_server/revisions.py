"""Revisions of the documents the server keeps retained for devices (desired states, mute
lists) that survive a restore of the database from a backup.

An agent ignores a document whose revision is older than one it has (retained messages
replay on every reconnect, and out-of-order deliveries must not undo a change). A plain
counter in the database breaks that after a restore: the counter goes back to the backup's
value, and every device that took a later document ignores the server's next ones until
the counter passes theirs — deployments stall, mutes stay as they were, and nothing says
why.

So the next revision is ``max(current + 1, clock)``, where the clock is whole seconds since
:data:`REVISION_EPOCH` (a hybrid logical clock). Revisions still increase by one at least
with every change, and after a restore the next change is numbered from the clock, which
has passed every revision handed out before (a burst of more than one change a second can
run ahead of it only for as long as the burst lasts). The epoch is recent so that the clock
fits the 32-bit columns (:data:`contract.limits.MAX_STORED_INT`) until 2094.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case

from contract.limits import MAX_STORED_INT

REVISION_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z


def revision_clock(now: float) -> int:
    """Whole seconds since :data:`REVISION_EPOCH` at ``now``; 0 (the counter part carries
    revisions alone) before the epoch, a clock that was never set, and past what 32 bits
    hold (2094, or a clock set wildly ahead: taking its value would leave the revisions
    nowhere to grow, and every later deployment would fail)."""
    seconds = int(now) - REVISION_EPOCH
    return seconds if 0 < seconds <= MAX_STORED_INT else 0


def next_revision(current: int, now: float) -> int:
    """The revision after ``current`` at wall-clock time ``now``."""
    nxt = max(current + 1, revision_clock(now))
    if nxt > MAX_STORED_INT:  # 2094, or a corrupted row: refuse rather than wrap
        raise OverflowError(f"revision {current} cannot grow past {MAX_STORED_INT}")
    return nxt


def next_revision_sql(column: Any, now: float) -> Any:
    """:func:`next_revision` as one SQL expression, for an ``UPDATE ... SET revision =``
    that concurrent writers (server replicas) run in turn on the row's lock."""
    clock = revision_clock(now)
    return case((column + 1 > clock, column + 1), else_=clock)
