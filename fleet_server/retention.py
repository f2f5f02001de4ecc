"""Per-device bounds on the rows a device's reports add: alerts and OTA events.

Whoever holds one device's certificate chooses its reports' ids, so each report with a new
``msg_id`` would be a new row (review, December 2026: 20,000 OTA events from one device in
18 s, +100 MB; 3,000 alerts of one device pushed every other device's alerts out of the
fleet-wide cap). Two bounds, both per device: a store rate (:class:`MinuteBudget`, checked
as a batch is ingested; what is over it is counted, not stored) and a row count
(:func:`trim_per_device`, run with the periodic compaction; the device's oldest go first).
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

MAX_TRACKED_DEVICES = 1_000_000  # the budget forgets everyone past this (relaxes, never blocks)


class MinuteBudget:
    """At most ``per_minute`` items per device in each minute of the server's clock."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._used: dict[str, tuple[int, int]] = {}  # device -> (minute, items taken)
        self.refused = 0

    def take(self, device_id: str, now: float) -> bool:
        minute = int(now // 60)
        with self._lock:
            start, used = self._used.get(device_id, (minute, 0))
            if start != minute:
                used = 0
            if used >= self.per_minute:
                self.refused += 1
                return False
            if len(self._used) >= MAX_TRACKED_DEVICES and device_id not in self._used:
                self._used.clear()
            self._used[device_id] = (minute, used + 1)
            return True


def trim_per_device(session: Session, row: Any, keep: int) -> int:
    """Delete the oldest rows (by id) of every device with more than ``keep`` of ``row``
    (a mapped class with ``id`` and an indexed ``device_id``); returns the rows deleted."""
    over = list(session.scalars(select(row.device_id).group_by(row.device_id)
                                .having(func.count() > keep)))
    removed = 0
    for device_id in over:
        keep_from = session.scalar(select(row.id).where(row.device_id == device_id)
                                   .order_by(row.id.desc()).offset(keep - 1).limit(1))
        if keep_from is not None:
            result = session.execute(delete(row).where(row.device_id == device_id,
                                                       row.id < keep_from))
            removed += int(getattr(result, "rowcount", 0) or 0)
    return removed
