"""Alert mutes on the device: which alert candidates an operator has silenced (pure).

The fleet server publishes the device's whole :class:`contract.mutes.MuteList`, retained,
on ``dev/{id}/mutes`` (received by :mod:`agent.mute_inbox`); :class:`MuteSet` holds the
active mutes (the inbox keeps the list on disk and restores it at start; the retained
message brings it again after a reconnect) and :class:`agent.alerts.AlertGate` asks it
about every alert the policy fires. A muted alert is held back; the line is still
classified, published and counted. Most mutes name a whole line's shape, found by one dict
lookup; a *prefix* mute (the server kept the line cut, contract.mutes) names the start of
one, and the few of those are scanned with ``startswith``.

A forged or forgotten list must not hide a device's faults, so whatever a list says:
each mute ends :data:`contract.mutes.MAX_MUTE_DAYS` after it arrived at the latest, and a
muted shape seen more than ``storm_per_minute`` times in a minute (a brute force
repeating one line) is alerted again: the device's own normal never hides a storm.

Times are Unix seconds (``time.time()``): mutes expire at a wall-clock time.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from contract.mutes import MAX_MUTE_DAYS, MAX_MUTES, AlertMute, MuteList, message_shape

STORM_WINDOW_S = 60.0
DEFAULT_STORM_PER_MINUTE = 30


@dataclass(frozen=True, slots=True)
class MuteVerdict:
    """What an active mute says about one alert candidate."""

    mute: AlertMute
    action: Literal["muted", "storm"]  # held back, or sent anyway: the shape is storming
    storm_per_minute: int  # the threshold the shape went over (for the reason)

    @property
    def note(self) -> str:
        """The words an alert sent in a storm carries after the policy's reason."""
        return (f"muted shape storming: more than {self.storm_per_minute} lines in the "
                "last minute")


@dataclass(slots=True)
class _Active:
    mute: AlertMute
    # MAX_MUTE_DAYS after it arrived, on the monotonic clock: a wall clock set by NTP after
    # boot (no real-time clock) must neither end every mute at once nor stretch one.
    ends: float
    # When this mute matched lately: the last storm_per_minute + 1 times at most, which
    # is all the storm guard needs to know ("more than N in a minute").
    seen: deque[float]


class MuteSet:
    """The device's active mutes: whole-shape ones indexed by shape, prefix ones in a list.
    Thread-safe: lists arrive on the MQTT network thread, the pipeline checks alert
    candidates on its own."""

    def __init__(self, storm_per_minute: int = DEFAULT_STORM_PER_MINUTE) -> None:
        self._lock = threading.Lock()
        self._storm = storm_per_minute
        self._revision: int | None = None
        self._by_shape: dict[str, list[_Active]] = {}  # mutes of a whole line's shape
        self._prefixes: list[_Active] = []  # mutes of a shape's start (a cut line's)

    def _all(self) -> list[_Active]:
        """Every mute held (call with the lock held)."""
        return [a for group in self._by_shape.values() for a in group] + self._prefixes

    # --- the list from the fleet server -------------------------------------------------
    @property
    def revision(self) -> int | None:
        """The revision of the list applied (None: none received yet)."""
        with self._lock:
            return self._revision

    def replace(self, doc: MuteList, now: float, monotonic: float | None = None) -> bool:
        """Apply ``doc`` if it is newer than the list held (the first one always is);
        False for an equal or older revision (retained messages replay on every
        reconnect) — unless ``doc.reset`` says to take it whatever the revision held, once
        (an equal revision is the same list delivered again). Mutes missing from ``doc``
        are lifted, expired ones dropped. ``now``: Unix time; ``monotonic``: the monotonic
        clock (``now`` when not given), on which each mute ends :data:`MAX_MUTE_DAYS` after
        arriving at the latest."""
        ends = (now if monotonic is None else monotonic) + MAX_MUTE_DAYS * 86_400.0
        with self._lock:
            if self._revision is not None and (doc.revision == self._revision or (
                    doc.revision < self._revision and not doc.reset)):
                return False
            # A shape muted in the last list keeps its recent matches, whatever the new
            # mute's id: re-publishing a list (or the same mute under a new id, every few
            # seconds, as a stolen server identity could) must not make a storming shape
            # quiet again.
            old = {(a.mute.shape, a.mute.prefix, a.mute.source): a for a in self._all()}
            by_shape: dict[str, list[_Active]] = {}
            prefixes: list[_Active] = []
            for mute in doc.mutes[:MAX_MUTES]:  # the contract bounds it; memory too
                if mute.expires <= now:
                    continue
                kept = old.pop((mute.shape, mute.prefix, mute.source), None)
                seen: deque[float] = deque(maxlen=self._storm + 1)
                if kept is not None:
                    seen = kept.seen
                active = _Active(mute, ends, seen)
                if mute.prefix:
                    prefixes.append(active)
                else:
                    by_shape.setdefault(mute.shape, []).append(active)
            self._revision = doc.revision
            self._by_shape = by_shape
            self._prefixes = prefixes
            return True

    def clear(self) -> None:
        """Forget the list and its revision (mutes turned off: the retained list applies
        afresh when they are turned on again)."""
        with self._lock:
            self._revision = None
            self._by_shape = {}
            self._prefixes = []

    def set_storm_per_minute(self, storm_per_minute: int) -> None:
        """A new threshold (config reload); recent matches are kept, up to the new bound."""
        with self._lock:
            if storm_per_minute == self._storm:
                return
            self._storm = storm_per_minute
            for active in self._all():
                active.seen = deque(active.seen, maxlen=storm_per_minute + 1)

    # --- alert candidates ------------------------------------------------------------------
    def check(self, source: str, text: str, now: float,
              monotonic: float | None = None) -> MuteVerdict | None:
        """None when no active mute covers this alert candidate (``source``: the agent
        source's name, ``text``: the line); else whether it is held back or, its shape
        storming, sent anyway. Called for alert candidates only: the shape costs a few
        regex passes over the line. ``now`` (Unix time) decides expiry; the storm window is
        counted on ``monotonic`` when given, so a clock stepped by NTP (a device without a
        real-time clock, at boot) cannot make a storm look calm."""
        tick = now if monotonic is None else monotonic
        with self._lock:
            if not self._by_shape and not self._prefixes:
                return None  # nothing muted: no shape to compute
        shape = message_shape(text)  # outside the lock: a list arriving need not wait
        with self._lock:
            # The whole shape's mutes by one lookup, then the few of a shape's start.
            for active in itertools.chain(self._by_shape.get(shape, ()), self._prefixes):
                if now >= active.mute.expires or tick >= active.ends \
                        or not active.mute.matches(source, shape):
                    continue
                seen = active.seen
                seen.append(tick)
                while seen and seen[0] <= tick - STORM_WINDOW_S:
                    seen.popleft()
                action: Literal["muted", "storm"] = \
                    "storm" if len(seen) > self._storm else "muted"
                return MuteVerdict(active.mute, action, self._storm)
            return None

    def active(self, now: float, monotonic: float | None = None) -> list[dict[str, Any]]:
        """The mutes in force at ``now``, soonest to end first, for technicians; each one's
        end in Unix time (its own expiry, or earlier when the 90-day bound comes first)."""
        tick = now if monotonic is None else monotonic
        with self._lock:
            shown = [(a, min(a.mute.expires, now + (a.ends - tick))) for a in self._all()
                     if now < a.mute.expires and tick < a.ends]
        shown.sort(key=lambda pair: pair[1])
        return [{"id": a.mute.id, "shape": a.mute.shape, "prefix": a.mute.prefix,
                 "source": a.mute.source, "expires": end, "reason": a.mute.reason}
                for a, end in shown]

    def __len__(self) -> int:
        """Mutes held (expired ones included until the next list)."""
        with self._lock:
            return len(self._all())
