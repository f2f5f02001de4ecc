"""Post-processing decisions: which classified lines raise alerts. Pure functions."""

from __future__ import annotations

import time
from dataclasses import dataclass

from agent.config import AlertConfig


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


class RateLimiter:
    """Token bucket: at most ``per_minute`` events per minute, bursts up to that."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.tokens = float(per_minute)
        self.rate = per_minute / 60.0
        self.last = time.monotonic()

    def allow(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RepeatFilter:
    """Groups repeats: after an alert for (source, label), further ones within
    ``window_s`` are held back and counted; the next alert that goes out for that pair
    carries the count. A brute-force attack is then one alert saying "and 412 more",
    not 413 messages. ``window_s = 0`` turns grouping off."""

    def __init__(self, window_s: float, max_keys: int = 4096) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._last: dict[tuple[str, str], float] = {}
        self._held: dict[tuple[str, str], int] = {}

    def admit(self, source: str, label: str, now: float) -> tuple[bool, int]:
        """(send?, repeats held back since the last alert sent for this pair)."""
        if self.window_s <= 0:
            return True, 0
        key = (source, label)
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
