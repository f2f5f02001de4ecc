"""Geometry of the overview's small bar charts, drawn as inline SVG by the templates
(no script needed; each bar carries its figure as text for screen readers)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    x: float
    y: float
    width: float
    height: float


def columns(values: list[int], labels: list[str], width: float = 480, height: float = 120,
            gap: float = 2) -> list[Bar]:
    """Vertical bars filling ``width`` x ``height`` (the tallest reaches the top)."""
    if not values:
        return []
    top = max(values) or 1
    step = width / len(values)
    return [Bar(label, v, i * step + gap / 2, height - v / top * height, step - gap,
                v / top * height) for i, (v, label) in enumerate(zip(values, labels,
                                                                      strict=True))]


def rows(counts: dict[str, int], width: float = 300, bar_h: float = 18,
         gap: float = 6) -> list[Bar]:
    """Horizontal bars, one per label, longest first."""
    top = max(counts.values(), default=0) or 1
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [Bar(label, v, 0, i * (bar_h + gap), max(2.0, v / top * width), bar_h)
            for i, (label, v) in enumerate(ordered)]


def hour_labels(hours: int = 24) -> list[str]:
    """Labels of :func:`fleet_server.metrics_store.alerts_per_hour`'s buckets."""
    return [f"{hours - i} h ago" if i < hours - 1 else "last hour" for i in range(hours)]
