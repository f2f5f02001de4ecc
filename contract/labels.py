"""The categories of the default nano model (docs/model.md, "Categories"), in its output
order. A site's fine-tuned model may add its own; these are the ones every fleet starts
with, which the fleet server offers when an operator corrects an alert's category."""

from __future__ import annotations

NORMAL = "normal"
DEFAULT_LABELS: tuple[str, ...] = (NORMAL, "hardware", "thermal", "power", "network",
                                   "storage", "security", "software", "sensor")
