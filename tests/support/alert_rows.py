"""An alert as the fleet server stores it, written straight into its database: for the
tests of decisions about alerts (mutes, their limits) that need no device or broker."""

from __future__ import annotations

import time

from fleet_server.db import Database
from fleet_server.metrics_store import DeviceAlertRow


def stored_alert(db: Database, text: str, device: str = "gw-1", source: str = "sshd") -> int:
    """A security alert of ``device``'s ``text`` from ``source``; its id."""
    with db.session() as session:
        row = DeviceAlertRow(msg_id=f"m-{time.monotonic_ns()}", device_id=device, ts=1.0,
                             device_ts=1.0, slot="logs", model_version=1, label="security",
                             score=0.9, reason="label security >= 0.80", source=source,
                             text=text, repeats=0)
        session.add(row)
        session.flush()
        return row.id
