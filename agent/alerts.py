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
