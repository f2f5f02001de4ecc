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
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Literal

from contract.mutes import (
    MAX_MUTE_DAYS,
    MAX_MUTES,
    MIN_PREFIX_SHAPE_CHARS,
    AlertMute,
    MuteList,
    message_shape,
)

STORM_WINDOW_S = 60.0
DEFAULT_STORM_PER_MINUTE = 30
MAX_TRACKED_SHAPES = 4096  # muted (source, shape)s whose recent lines the guard remembers


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
        # The storm guard's memory, per muted *line* (its source and the first
        # MIN_PREFIX_SHAPE_CHARS of its shape: every prefix mute that covers a line covers
        # that much of it, so lines under one prefix count together whatever their tails),
        # not per mute: when the last storm_per_minute + 1 of them came. Counted per mute, a
        # list that flipped a mute's source scope each revision, or named one line by
        # several prefix mutes, reset or split the count, and a brute force stayed muted
        # (review, December 2026).
        self._seen: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

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
            by_shape: dict[str, list[_Active]] = {}
            prefixes: list[_Active] = []
            for mute in doc.mutes[:MAX_MUTES]:  # the contract bounds it; memory too
                if mute.expires <= now:
                    continue
                active = _Active(mute, ends)
                if mute.prefix:
                    prefixes.append(active)
                else:
                    by_shape.setdefault(mute.shape, []).append(active)
            self._revision = doc.revision
            self._by_shape = by_shape
            self._prefixes = prefixes
            # A line still muted keeps its recent matches, whatever mute covers it now
            # (re-publishing a list, or the same mute under a new id every few seconds, as
            # a stolen server identity could, must not make a storming shape quiet again);
            # a line no mute covers any more starts afresh.
            starts: dict[str, list[AlertMute]] = {}
            for a in self._all():
                starts.setdefault(a.mute.shape[:MIN_PREFIX_SHAPE_CHARS], []).append(a.mute)
            self._seen = OrderedDict(
                (key, seen) for key, seen in self._seen.items()
                if any(m.source in (None, key[0]) for m in starts.get(key[1], ())))
            return True

    def clear(self) -> None:
        """Forget the list and its revision (mutes turned off: the retained list applies
        afresh when they are turned on again)."""
        with self._lock:
            self._revision = None
            self._by_shape = {}
            self._prefixes = []
            self._seen.clear()

    def set_storm_per_minute(self, storm_per_minute: int) -> None:
        """A new threshold (config reload); recent matches are kept, up to the new bound."""
        with self._lock:
            if storm_per_minute == self._storm:
                return
            self._storm = storm_per_minute
            for key, seen in self._seen.items():
                self._seen[key] = deque(seen, maxlen=storm_per_minute + 1)

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
            active = self._covering(source, shape, now, tick)
            if active is None:
                return None
            key = (source, shape[:MIN_PREFIX_SHAPE_CHARS])
            seen = self._seen.get(key)
            if seen is None:
                seen = self._seen[key] = deque(maxlen=self._storm + 1)
                if len(self._seen) > MAX_TRACKED_SHAPES:
                    self._seen.popitem(last=False)  # the line muted longest ago
            else:
                self._seen.move_to_end(key)
            seen.append(tick)
            while seen and seen[0] <= tick - STORM_WINDOW_S:
                seen.popleft()
            action: Literal["muted", "storm"] = "storm" if len(seen) > self._storm else "muted"
            return MuteVerdict(active.mute, action, self._storm)

    def _covering(self, source: str, shape: str, now: float | None = None,
                  tick: float | None = None) -> _Active | None:
        """The first mute that covers a line of ``source`` with ``shape`` (call with the
        lock held): the whole shape's mutes by one lookup, then the few of a shape's
        start. Expiry is checked when ``now`` and ``tick`` are given."""
        for active in itertools.chain(self._by_shape.get(shape, ()), self._prefixes):
            if now is not None and tick is not None and (
                    now >= active.mute.expires or tick >= active.ends):
                continue
            if active.mute.matches(source, shape):
                return active
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
