"""What the server's MQTT readers do when a device floods them: say so, and tell whoever
quarantines it.

Both the report bridge (fleet_server.mqtt_bridge: reports shed over a device's ingest
budget) and the artifact stream (fleet_server.artifact_stream: requests dropped over a
device's rate) count what they drop per device in a :class:`FloodWatch`; when it finds a
flooder, the reader logs one line and hands the id to ``on_flood`` (the server's
quarantines, fleet_server.identity.quarantine). Called on paho's network thread:
``on_flood`` must only hand the id on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fleet_server.report_budget import FloodWatch


class FloodAlarm:
    """A :class:`FloodWatch` with its reaction: one error line and ``on_flood``."""

    def __init__(self, reports: int, min_span_s: float, log: logging.Logger,
                 where: str, what: str) -> None:
        self.watch = FloodWatch(reports, min_span_s)
        self.on_flood: Callable[[str], None] | None = None
        self._log = log
        # the log line's words: "device 'x' is flooding{where}: ... of its {what} dropped"
        self._where = where
        self._what = what

    def dropped(self, device: str) -> bool:
        """Count one dropped message of ``device``; True exactly when that makes it a
        flooder (after it was said and handed on)."""
        if not self.watch.shed(device, time.monotonic()):
            return False
        self._log.error("device %r is flooding%s: %d or more of its %s dropped unread, for "
                        "%.0f s without a pause", device, self._where, self.watch.reports,
                        self._what, self.watch.min_span_s)
        on_flood = self.on_flood
        if on_flood is not None:
            on_flood(device)
        return True
