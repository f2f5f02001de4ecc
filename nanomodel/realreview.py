"""Per-template label decisions made by reading the text, applied over the harvest.

The harvester labels templates by readable rules; where no rule speaks, by the level the
code logs at (LABELLING.md step 7). A level says what the programmer feared, not what a
technician needs: ``error: Report MAP too big`` is an error path, yet nobody needs to be
told. A *review* is a person's decision for one template after reading it, stored in
``data/real/review/<source>.jsonl``, one JSON object per line::

    {"template": "<exact template text>", "label": "normal", "reason": "review: ..."}

A review may add ``"not_log_text": true`` (label ``normal`` only): the template is not
text a device's log shows, or nobody can label it from its words — a command-line
tool's message to whoever typed the command (journalctl, udevadm, chronyc print to a
terminal, not to the log), a debug-only trace, a developer's internal sanity check. Such
a template is kept out of training and evaluation: as ``normal`` it would teach that
``Failed to ...: %m`` is routine, as an alert it would be a label no reader can justify.

Reviews are applied when the data is loaded (the harvest output stays as the rules made
it, so rules and reviews can be compared and a re-harvest does not lose decisions). A
review whose template no longer exists in its source, or that names a template twice,
is an error: stale decisions must be looked at, not silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from nanomodel.templates import LABELS

REVIEW_DIR = Path(__file__).resolve().parent / "data" / "real" / "review"

@dataclass(frozen=True)
class Review:
    """One reviewed template: the label a reader gave it and why."""

    source: str
    template: str
    label: str
    reason: str
    not_log_text: bool = False


def jsonl_rows(folder: Path) -> Iterator[tuple[Path, int, dict[str, Any]]]:
    """(file, line number, object) of every non-blank line of ``folder/*.jsonl``, files
    in name order; a line that is not JSON is an error naming file and line."""
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{path}:{n}: not JSON ({exc}); fix or regenerate the file"
                ) from exc
            yield path, n, row


_REVIEW_KEYS = {"template", "label", "reason", "not_log_text"}


@cache
def load_reviews(folder: Path = REVIEW_DIR) -> dict[tuple[str, str], Review]:
    """Every review keyed by (source, template); the file name is the source."""
    out: dict[tuple[str, str], Review] = {}
    for path, n, row in jsonl_rows(folder):
        source = path.stem
        if not {"template", "label", "reason"} <= set(row) <= _REVIEW_KEYS:
            raise ValueError(
                f"{path}:{n}: a review has the keys template, label, reason "
                "(and not_log_text: true where it applies), no others"
            )
        not_log_text = row.get("not_log_text", False)
        if not_log_text is not True and "not_log_text" in row:
            raise ValueError(f"{path}:{n}: not_log_text is true or absent")
        if not_log_text and row["label"] != "normal":
            raise ValueError(f"{path}:{n}: a template that is not log text is labelled "
                             "normal (it is kept out of training and evaluation)")
        if row["label"] not in LABELS:
            raise ValueError(f"{path}:{n}: label {row['label']!r} is not one of {LABELS}")
        if not str(row["reason"]).startswith("review:"):
            raise ValueError(f"{path}:{n}: reason must start with 'review:'")
        key = (source, row["template"])
        if key in out:
            raise ValueError(f"{path}:{n}: template reviewed twice: {row['template']!r}")
        out[key] = Review(source, row["template"], row["label"], row["reason"], not_log_text)
    return out
