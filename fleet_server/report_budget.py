"""How much of the ingest queue one device may hold, and how often its refusals are logged.

The fleet server reads every device's reports on two connections (statuses and OTA
events on one, metrics and alerts on the other: fleet_server.report_lanes.LANES) and
stores them on one ingest thread. Before (review, December 2026), one device certificate
that published large or invalid reports as fast as it could filled that queue: the
broker's bounded queue for the server's session filled behind it and the broker dropped
other devices' reports — acknowledged to them, never stored (1 of 50 healthy statuses
reached the inventory during a 20 s flood); at QoS 0 the server's own queue grew to
50,000 messages of up to 256 KiB. Now each device may have a bounded number of messages
and bytes waiting; beyond that its reports are acknowledged and dropped on arrival,
unread and counted (``shed``), so the broker's queue keeps draining and the rest of the
fleet is served. A healthy agent sends a status, a metrics report a minute, OTA events
and rate-limited alerts: far below the bound even while it empties a backlog.

A device shed again and again is flooding (:class:`FloodWatch`): the budget keeps the
server whole, but a flood faster than the server reads overflows the broker's queue for the
lane it arrives in, and the broker drops other devices' reports there. The server then
quarantines the device at the broker (fleet_server.identity.quarantine).

Pure bookkeeping (no I/O, no clock of its own): :class:`fleet_server.mqtt_bridge.MqttBridge`
calls it from paho's network thread (admit, shed) and its ingest thread (release).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

# Per device: messages and bytes waiting for the ingest thread. A batch is 500 reports,
# and the broker sends at most RECEIVE_MAXIMUM (1,000) before we acknowledge: one device
# can take a fifth of that, so at least four others always have room.
PENDING_MESSAGES = 200
PENDING_BYTES = 4 << 20
# All devices together (QoS 0 is not bounded by Receive Maximum: the broker sends it
# whatever we have not acknowledged).
PENDING_BYTES_TOTAL = 64 << 20
# Refusals logged per device and minute; the rest are counted and summed up once.
LOG_PER_MINUTE = 5
# Devices FloodWatch remembers: past it, the windows that ended are forgotten.
FLOOD_WATCH_DEVICES = 10_000


@dataclass
class PendingBudget:
    """Messages and bytes each device has queued for ingest."""

    messages: int = PENDING_MESSAGES
    bytes_each: int = PENDING_BYTES
    bytes_total: int = PENDING_BYTES_TOTAL
    _pending: dict[str, tuple[int, int]] = field(default_factory=dict)
    _total: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def admit(self, device: str, size: int) -> bool:
        """Take room for one message of ``device``; False: over its budget, shed it."""
        with self._lock:
            count, held = self._pending.get(device, (0, 0))
            if count >= self.messages or held + size > self.bytes_each \
                    or self._total + size > self.bytes_total:
                return False
            self._pending[device] = (count + 1, held + size)
            self._total += size
            return True

    def release(self, device: str, size: int) -> None:
        """Give back what :meth:`admit` took, once the message is stored or refused."""
        with self._lock:
            count, held = self._pending.get(device, (1, size))
            if count <= 1:
                self._pending.pop(device, None)  # the map holds only devices with a backlog
            else:
                self._pending[device] = (count - 1, held - size)
            self._total -= size

    def pending(self, device: str) -> tuple[int, int]:
        with self._lock:
            return self._pending.get(device, (0, 0))


@dataclass
class LogBudget:
    """At most ``per_minute`` lines per device and minute: a device must not decide how
    fast the server writes its log (review, December 2026: 3,900 refusal lines a second
    from one device, past journald's rate limit, which then dropped the server's other
    messages too)."""

    per_minute: int = LOG_PER_MINUTE
    _window: dict[str, tuple[int, int]] = field(default_factory=dict)  # device: minute, n
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def allow(self, device: str, now: float) -> tuple[bool, int]:
        """(log this one?, lines held back in the device's previous minute when this is
        its first line of a new minute, else 0)."""
        minute = int(now // 60)
        with self._lock:
            if len(self._window) > 10_000:  # devices gone quiet: forget them
                self._window = {d: w for d, w in self._window.items() if w[0] == minute}
            last, n = self._window.get(device, (minute, 0))
            held_back = max(0, n - self.per_minute) if last != minute else 0
            n = n + 1 if last == minute else 1
            self._window[device] = (minute, n)
            return n <= self.per_minute, held_back


@dataclass
class FloodWatch:
    """Which devices are flooding: shed again and again in one *run* (no pause of more than
    ``max_gap_s`` between two of its shed reports), at least ``reports`` times, the run
    lasting at least ``min_span_s``.

    A device is shed only while 200 of its reports wait to be stored. A healthy agent never
    gets there: it paces its alerts and OTA events (``[spool] report_rate_per_s``). But
    agents before December 2026 sent the alerts they spooled during an outage as fast as
    the broker took them, and may be shed thousands of times in the seconds that lasts —
    a burst, over before ``min_span_s`` (the largest spool, 100,000 messages, drains in
    about 20 s over loopback). A device that floods keeps going: it is found
    ``min_span_s`` after it started."""

    reports: int
    min_span_s: float = 30.0
    max_gap_s: float = 5.0
    _runs: dict[str, tuple[float, float, int, bool]] = field(default_factory=dict)
    # device -> start, last shed, count, found (reported flooding in this run)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def shed(self, device: str, now: float) -> bool:
        """Count one shed report of ``device`` at ``now`` (a monotonic clock); True exactly
        once per run: when this report makes the device a flooder."""
        with self._lock:
            start, last, count, found = self._runs.get(device, (now, now, 0, False))
            if now - last > self.max_gap_s:
                start, count, found = now, 0, False
            elif len(self._runs) >= FLOOD_WATCH_DEVICES and device not in self._runs:
                self._runs = {d: r for d, r in self._runs.items()
                              if now - r[1] <= self.max_gap_s}
            count += 1
            flooding = not found and count >= self.reports and now - start >= self.min_span_s
            self._runs[device] = (start, now, count, found or flooding)
            return flooding
