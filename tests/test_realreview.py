"""Reviewed per-template labels (nanomodel/data/real/review/) load strictly and apply."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from nanomodel import realtext
from nanomodel.realreview import REVIEW_DIR, jsonl_rows, load_reviews
from tests.support.realdata import own_data_folder, reread_lines

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
    ({"template": "x", "label": "normal"}, "has the keys template, label, reason"),
    ({"template": "x", "label": "normal", "reason": "review: y", "extra": 1}, "no others"),
    ({"template": "x", "label": "normal", "reason": "review: y", "not_log_text": False},
     "true or absent"),
    ({"template": "x", "label": "software", "reason": "review: y", "not_log_text": True},
     "labelled normal"),
])
def test_a_malformed_review_is_refused_by_name(tmp_path: Path, row: dict[str, object],
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


def test_templates_reviewed_not_log_text_stay_out_of_training_and_evaluation() -> None:
    import random

    reviews = load_reviews(REVIEW_DIR)
    excluded = {k for k, r in reviews.items() if r.not_log_text}
    assert len(excluded) >= 800  # the reviews kept 830 templates out
    templates = {(t.source, t.template): t for t in realtext.load_templates()}
    assert all(templates[k].not_log_text and templates[k].label == "normal" for k in excluded)
    # one of them, rendered: never among the lines the model learns from or is scored on
    source, template = sorted(excluded)[0]
    lines = realtext.real_lines(random.Random(0), per_template=1, sources=[source],
                                captured=False)
    kept = [t for t in realtext.load_templates([source]) if not t.not_log_text]
    assert len(lines) == len(kept) < len(realtext.load_templates([source]))


def test_a_captured_line_follows_a_later_review_of_the_template_that_labelled_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A line keeps the name of the template that labelled it; when that template is
    reviewed after the capture, the loaded line takes the review's label."""
    rows = [json.loads(line) for line in
            (realtext.DATA / "captured" / "cron.jsonl").read_text().splitlines()]
    insecure = [r for r in rows if "INSECURE MODE" in r["text"]]
    assert insecure and all(r["template_origin"] == "database.c:426" for r in insecure)
    assert all(r["template_origin"] == "" for r in rows if r["reason"].startswith("no template"))
    # the same line as captured before the review (normal), in a data folder of its own
    (tmp_path / "captured").mkdir()
    stale = dict(insecure[0], label="normal", reason="template database.c:426 (...): level")
    (tmp_path / "captured" / "cron.jsonl").write_text(json.dumps(stale) + "\n")
    with own_data_folder(tmp_path, monkeypatch):
        [line] = realtext.load_captured(["cron"])
        assert line.label == "security" and "review:" in line.reason
        # a row written before rows named their template is refused with the fix
        del stale["template_origin"]
        (tmp_path / "captured" / "cron.jsonl").write_text(json.dumps(stale) + "\n")
        reread_lines()
        with pytest.raises(ValueError, match="--relabel"):
            realtext.load_captured(["cron"])


def test_the_level_rules_normal_messages_are_decided_by_their_reviews() -> None:
    """The level rule's normal messages read in December 2026 (every warning and notice
    one, and the info ones with condition words; applied in December 2026, LABELLING.md)
    decide their templates, as does the decision a booted systemd's journal showed was
    missing (a rule's alert made normal)."""
    by_key = {(t.source, t.template): t for t in realtext.load_templates()}
    kill = by_key[("systemd", "%{unit}: Killing process i (%s) with signal SIG%s.")]
    assert kill.label == "normal" and kill.reason.startswith("review:")
    # a PMIC's temperature alarm and a discarded postmaster notice are not routine
    assert by_key[("linux", "%{kdev}: Junction Temp Alarm1(120C) occurred")].label == "thermal"
    assert by_key[("postfix", "%s: undeliverable postmaster notification discarded")].label \
        == "software"
    # a reply to openvpn's management client is not log text: not trained on, not measured
    reply = by_key[("openvpn", "Management Interface for %s")]
    assert reply.not_log_text
    assert not any("Management Interface for" in text
                   for text, _, source in realtext.real_lines(random.Random(0))
                   if source == "openvpn")


def test_labelling_md_totals_are_the_review_files_counts() -> None:
    """LABELLING.md's totals row ("computed from the files") is what review/ and the
    harvest hold: reviewed, confirmed, alert → normal, normal → alert, category only, kept
    out. Applying the warning, notice and info decisions (December 2026) moved it from
    12,000 | 6,368 | 3,156 | 296 | 2,180 | 874."""
    harvested = {(row["source"], row["template"]): row["label"]
                 for _, _, row in jsonl_rows(REVIEW_DIR.parent / "templates")}
    counts = dict.fromkeys(("reviewed", "confirmed", "to normal", "to alert", "category",
                            "kept out"), 0)
    for (source, template), review in load_reviews(REVIEW_DIR).items():
        before = harvested[(source, template)]
        counts["reviewed"] += 1
        counts["kept out"] += review.not_log_text
        if review.label == before:
            counts["confirmed"] += 1
        elif review.label == "normal":
            counts["to normal"] += 1
        elif before == "normal":
            counts["to alert"] += 1
        else:
            counts["category"] += 1
    row = " | ".join(f"{n:,}" for n in counts.values())
    labelling = (REVIEW_DIR.parent / "LABELLING.md").read_text(encoding="utf-8")
    assert f"| {row} |" in labelling, row
    assert row == "13,927 | 7,903 | 3,158 | 686 | 2,180 | 1,185"
