"""Reviewed per-template labels (nanomodel/data/real/review/) load strictly and apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanomodel import realtext
from nanomodel.realreview import REVIEW_DIR, load_reviews

pytestmark = pytest.mark.unit


def _write(folder: Path, source: str, rows: list[dict[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{source}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_a_review_is_keyed_by_source_and_template(tmp_path: Path) -> None:
    folder = _write(tmp_path, "bluez", [
        {"template": "Report MAP too big: %d > %d", "label": "normal",
         "reason": "review: a peer's odd descriptor; nothing to do on the device"},
    ])
    got = load_reviews(folder)
    assert got[("bluez", "Report MAP too big: %d > %d")].label == "normal"


@pytest.mark.parametrize("row, message", [
    ({"template": "x", "label": "broken", "reason": "review: y"}, "is not one of"),
    ({"template": "x", "label": "normal", "reason": "because"}, "must start with 'review:'"),
    ({"template": "x", "label": "normal"}, "exactly the keys"),
])
def test_a_malformed_review_is_refused_by_name(tmp_path: Path, row: dict[str, str],
                                                message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_reviews(_write(tmp_path, "s", [row]))


def test_a_template_reviewed_twice_is_refused(tmp_path: Path) -> None:
    row = {"template": "x", "label": "normal", "reason": "review: y"}
    with pytest.raises(ValueError, match="reviewed twice"):
        load_reviews(_write(tmp_path, "s", [row, row]))


def test_every_shipped_review_names_a_harvested_template_and_wins() -> None:
    reviews = load_reviews(REVIEW_DIR)
    by_key = {(t.source, t.template): t for t in realtext.load_templates()}
    for key, review in reviews.items():
        assert key in by_key, f"stale review {key}"
        assert by_key[key].label == review.label
        assert by_key[key].reason == review.reason
