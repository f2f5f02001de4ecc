"""The fine-tune export against one device's labels and lines (review, December 2026).

A device chooses its alerts' labels and text. A line separator (U+2028, U+2029, U+0085)
in the text, left raw by the export, split a row for every reader that used
``str.splitlines()``: one judged line failed the export and the training for the whole
fleet. A label ``normal `` passed the "a right alert is not normal" check, showed as
``normal`` and trained as ``normal``: the operator's "right" taught the model the line was
healthy; an empty label failed the whole file. And the verdict refused on a reused alert
id quoted the device's source raw into the operator's terminal.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from fleet_server.cli.alerts import count_labels
from fleet_server.db import Database
from fleet_server.metrics_store import DeviceAlertRow
from fleet_server.verdicts import AlertVerdictRow, VerdictRefused, judge, labelled_lines, true_label
from nanomodel.dataio import DataError, load_labeled

pytestmark = pytest.mark.unit

SEPARATORS = ("\u2028", "\u2029", "\x85")


def stored(msg_id: str, text: str, label: str = "hardware", source: str = "pump") -> DeviceAlertRow:
    return DeviceAlertRow(msg_id=msg_id, device_id="pump-07", ts=1.0, device_ts=1.0,
                          slot="logs", model_version=1, label=label, score=0.9,
                          reason=f"label {label} >= 0.80", source=source, text=text, repeats=0)


def test_a_line_separator_in_a_devices_line_stays_in_its_row(db: Database, tmp_path: Path
                                                             ) -> None:
    texts = [f"Motor fault P1{sep}second half" for sep in SEPARATORS] + ["Temperature 91 C"]
    with db.session() as session:
        for i, text in enumerate(texts):
            alert = stored(f"m{i}", text)
            session.add(alert)
            session.flush()
            judge(session, alert, "right", None, "alice")
        body = "".join(labelled_lines(session, with_source=True))
    assert body.isascii() and len(body.splitlines()) == len(texts)  # escaped: \u2028
    assert [json.loads(line)["text"] for line in body.splitlines()] == texts
    assert count_labels(body.encode()) == {"hardware": len(texts)}
    out = tmp_path / "site.jsonl"
    out.write_text(body, encoding="utf-8")
    assert load_labeled(out, ("source",)).texts == texts


def test_readers_split_lines_at_newline_only(tmp_path: Path) -> None:
    """An export written raw (a server before the fix, or another tool) still reads."""
    rows = [{"text": f"a{sep}b", "label": "hardware"} for sep in SEPARATORS]
    rows.append({"text": "ok", "label": "normal"})
    raw = "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows)
    assert count_labels(raw.encode()) == {"hardware": 3, "normal": 1}
    path = tmp_path / "raw.jsonl"
    path.write_text(raw, encoding="utf-8", newline="")
    data = load_labeled(path)
    assert data.texts == [r["text"] for r in rows]


@pytest.mark.parametrize("label", ["normal ", " normal", "normal\xa0", "normal\t", "",
                                   "Normal", "disk full", "\x1b[31mhardware"])
def test_right_on_a_label_that_is_not_a_label_needs_one(label: str) -> None:
    with pytest.raises(VerdictRefused, match=r"is not a label.*--label") as refused:
        true_label("right", label, None)
    assert repr(label[:70]) in str(refused.value)
    assert true_label("right", label, "security") == "security"
    assert true_label("false_alarm", label, None) == "normal"


def test_a_verdict_kept_on_a_bad_label_is_left_out_of_the_export(
        db: Database, caplog: pytest.LogCaptureFixture) -> None:
    """Verdicts given before the check: the rest of the fleet's lines still export."""
    with db.session() as session:
        for i, label in enumerate(("normal ", "", "hardware")):
            session.add(AlertVerdictRow(alert_msg_id=f"m{i}", device_id="pump-07",
                                        verdict="right", label=label, alert_label=label,
                                        model_version=1, source="s", text=f"line {i}",
                                        at=1.0, actor="alice"))
        left_out: list[int] = []
        with caplog.at_level(logging.WARNING, logger="nanofleet.server.verdicts"):
            body = "".join(labelled_lines(session, left_out=left_out))
    assert [json.loads(line) for line in body.splitlines()] == [
        {"text": "line 2", "label": "hardware"}]
    assert len(left_out) == 2
    assert "alert 'm0' left out: its label 'normal '" in caplog.text
    assert "alert 'm1' left out: its label ''" in caplog.text


@pytest.mark.parametrize("label", ["normal ", " normal", "normal\xa0", "security\t"])
def test_training_refuses_a_label_with_white_space_around_it(tmp_path: Path, label: str
                                                              ) -> None:
    """Refused, naming the line, rather than read as the label stripped."""
    for name, content, line in (
            ("spaced.jsonl", json.dumps({"text": "ok", "label": "security"}) + "\n"
             + json.dumps({"text": "Invalid user root", "label": label}) + "\n", 2),
            ("spaced.csv", f'text,label\nok,security\n"Invalid user root",{label}\n', 3)):
        path = tmp_path / name
        path.write_text(content, encoding="utf-8")
        with pytest.raises(DataError) as refused:
            load_labeled(path)
        assert f"{path}:{line}: 'label' {label!r} starts or ends with white space" in str(
            refused.value)


def test_the_reused_id_refusal_quotes_the_devices_source(db: Database) -> None:
    source = "/var/log/x\x1b]52;c;Y3VybCBldmlsfHNo\x07\x1b[2K\r"
    with db.session() as session:
        first = stored("dup", "Motor fault P1", source=source)
        session.add(first)
        session.flush()
        judge(session, first, "right", None, "alice")
        session.delete(first)
    with db.session() as session:
        again = stored("dup", "Motor fault P2")
        session.add(again)
        session.flush()
        with pytest.raises(VerdictRefused, match="reused") as refused:
            judge(session, again, "right", None, "bob")
    message = str(refused.value)
    assert repr(source) in message and message.isprintable(), message
