"""Post-processing decisions: which classified lines raise alerts.

:class:`AlertPolicy` decides from one result (pure); the operator's mutes
(:class:`agent.mutes.MuteSet`) hold back the message shapes judged false alarms here;
:class:`RepeatFilter` groups repeats and :class:`RateLimiter` caps the rate;
:class:`AlertGate` chains them for the pipeline and counts what it holds back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.config import AlertConfig
from agent.metrics import Counters
from agent.mutes import MuteSet
from agent.token_bucket import TokenBucket
from contract.bundle import BundleManifest


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    labels: tuple[str, ...]
    normal_label: str
    thresholds: dict[str, float]  # label -> min probability that fires
    anomaly_threshold: float

    @staticmethod
    def build(cfg: AlertConfig, labels: list[str], normal_label: str) -> AlertPolicy:
        thresholds = {label: cfg.default_min_score for label in labels if label != normal_label}
        for rule in cfg.rules:
            thresholds[rule.label] = rule.min_score
        return AlertPolicy(tuple(labels), normal_label, thresholds, cfg.anomaly_threshold)

    def decide(self, label: str, score: float, anomaly: float) -> str | None:
        """The reason an alert fires for this result, or None."""
        limit = self.thresholds.get(label)
        if limit is not None and score >= limit:
            return f"label {label} score {score:.2f} >= {limit:.2f}"
        if anomaly >= self.anomaly_threshold:
            return f"anomaly {anomaly:.2f} >= {self.anomaly_threshold:.2f}"
        return None


class RateLimiter(TokenBucket):
    """At most ``per_minute`` events per minute, bursts up to that."""

    def __init__(self, per_minute: int) -> None:
        super().__init__(per_minute / 60.0, float(per_minute))


class RepeatFilter:
    """Groups repeats: after an alert for (source, label, uid), further ones within
    ``window_s`` are held back and counted; the next alert that goes out for that key
    carries the count. A brute-force attack is then one alert saying "and 412 more",
    not 413 messages. ``window_s = 0`` turns grouping off.

    The uid is the one the kernel says logged the line (journald's ``_UID``; None for
    files and MQTT): grouped by (source, label) alone, an ordinary user's ``logger -t
    sshd`` line once a window went out as *the* alert and every real sshd alert of that
    window became its "and N more" (review, December 2026)."""

    def __init__(self, window_s: float, max_keys: int = 4096) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._last: dict[tuple[str, str, int | None], float] = {}
        self._held: dict[tuple[str, str, int | None], int] = {}

    def admit(self, source: str, label: str, now: float,
              uid: int | None = None) -> tuple[bool, int]:
        """(send?, repeats held back since the last alert sent for this key)."""
        if self.window_s <= 0:
            return True, 0
        key = (source, label, uid)
        last = self._last.get(key)
        if last is not None and now - last < self.window_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False, 0
        if len(self._last) >= self.max_keys and key not in self._last:
            # Bounded memory: forget the pair that fired longest ago.
            oldest = min(self._last, key=self._last.__getitem__)
            self._last.pop(oldest)
            self._held.pop(oldest, None)
        self._last[key] = now
        return True, self._held.pop(key, 0)


@dataclass(frozen=True, slots=True)
class AlertDecision:
    reason: str   # why it fires (the policy's words)
    repeats: int  # repeats of this (source, label) held back since the last one sent


@dataclass
class AlertGate:
    """Which results go out as alerts: the model's policy says one fires, the operator's
    mutes hold back the shapes muted (unless one storms), the repeat filter groups
    repeats of one (source, label), the rate limiter caps the rest. Held-back alerts are
    counted (``alerts_muted``, ``alerts_grouped``, ``alerts_suppressed``); muted ones
    let through because their shape storms too (``alerts_mute_storm``)."""

    cfg: AlertConfig
    counters: Counters
    # The owner keeps it across reloads (a new gate per config): the mutes arrive from
    # the fleet server, not from the config.
    mutes: MuteSet = field(default_factory=MuteSet)
    limiter: RateLimiter = field(init=False)
    repeats: RepeatFilter = field(init=False)
    _policies: dict[str, AlertPolicy] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.cfg.max_per_minute)
        self.repeats = RepeatFilter(self.cfg.repeat_window_s)
        self.mutes.set_storm_per_minute(self.cfg.mute_storm_per_minute)

    def policy(self, manifest: BundleManifest) -> AlertPolicy:
        """The policy for a model's labels (one per model version, built once)."""
        key = f"{manifest.name}:{manifest.version}"
        if key not in self._policies:
            self._policies[key] = AlertPolicy.build(self.cfg, manifest.labels,
                                                    manifest.normal_label)
        return self._policies[key]

    def admit(self, policy: AlertPolicy, source: str, label: str, score: float,
              anomaly: float, now: float, *, text: str, wall: float,
              uid: int | None = None) -> AlertDecision | None:
        """The alert to send for this result, or None (no alert, or held back).
        ``now``: monotonic seconds (grouping, rate); ``text``: the line, whose shape the
        mutes are checked against; ``wall``: Unix time (mutes expire at a wall-clock
        time); ``uid``: who logged the line, where the kernel says (grouped apart)."""
        reason = policy.decide(label, score, anomaly)
        if reason is None:
            return None
        if self.cfg.mutes:  # only alert candidates get here: the shape is computed rarely
            verdict = self.mutes.check(source, text, wall, monotonic=now)
            if verdict is not None and verdict.action == "muted":
                self.counters.inc("alerts_muted")
                return None
            if verdict is not None:
                self.counters.inc("alerts_mute_storm")
                reason += f"; {verdict.note}"
        send, repeats = self.repeats.admit(source, label, now, uid)
        if not send:
            self.counters.inc("alerts_grouped")
            return None
        if not self.limiter.allow(now):
            self.counters.inc("alerts_suppressed")
            return None
        return AlertDecision(reason, repeats)
