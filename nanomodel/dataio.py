"""Operators' labeled lines: JSONL (``{"text": ..., "label": ...}``) or CSV (``text,label``).

Strict on purpose: a typo'd column or a half-written line would otherwise train
a quietly wrong model. Every problem is reported with its file and line
number (up to :data:`MAX_REPORTED` of them at once, so one run shows the scale
of a broken export rather than its first symptom).

An evaluation may also read optional columns (:data:`OPTIONAL_FIELDS`: which software
wrote the line, the syslog level it was logged at, and a journal entry's catalog id);
training refuses them, so a
column it would ignore never looks used.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.journal_catalog import parse_message_id
from agent.level_evidence import level_of

FIELDS = ("text", "label")
MAX_REPORTED = 10
MAX_TEXT_CHARS = 64 * 1024


class DataError(ValueError):
    """Training or evaluation data is unusable; the message says where and why."""


@dataclass(frozen=True)
class LabeledData:
    texts: list[str]
    labels: list[str]
    source: str
    # Optional columns that were read, per line ("" where a line leaves one out).
    extras: dict[str, list[str]] = field(default_factory=dict)

    def label_set(self) -> list[str]:
        return sorted(set(self.labels))


def _detect_format(path: Path, head: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    return "jsonl" if head.lstrip().startswith("{") else "csv"


def _check_record(text: object, label: object, where: str, problems: list[str]) -> bool:
    if not isinstance(text, str):
        problems.append(f"{where}: 'text' must be a string, got {type(text).__name__}")
        return False
    if not isinstance(label, str) or not label.strip():
        problems.append(f"{where}: 'label' must be a non-empty string")
        return False
    if label != label.strip():
        # Refused, not stripped: a device's alert label "normal " once trained as normal
        # an operator's verdict that the line needed attention (review, December 2026).
        problems.append(f"{where}: 'label' {label[:70]!r} starts or ends with white space "
                        "(write the label alone)")
        return False
    if len(text) > MAX_TEXT_CHARS:
        problems.append(f"{where}: text is {len(text)} characters (limit {MAX_TEXT_CHARS})")
        return False
    return True


def _check_level(value: str, where: str, problems: list[str]) -> bool:
    if value and level_of(value) is None:
        problems.append(f"{where}: 'level' {value!r} is not a syslog level (emerg, alert, "
                        "crit, err, warning, notice, info, debug or 0..7; empty: none)")
        return False
    return True


def _check_message_id(value: str, where: str, problems: list[str]) -> bool:
    if value and parse_message_id(value) is None:
        problems.append(f"{where}: 'message_id' {value[:70]!r} is not a journal catalog id "
                        "(32 hex digits, as journalctl -o json's MESSAGE_ID; empty: none)")
        return False
    return True


# The optional columns an evaluation may read, each with its check ("" = left out).
OPTIONAL_FIELDS: dict[str, Callable[[str, str, list[str]], bool]] = {
    "source": lambda value, where, problems: True,
    "level": _check_level,
    "message_id": _check_message_id,
}
Extras = dict[str, list[str]]


def _optional(obj: dict[str, object], optional: tuple[str, ...], where: str,
              problems: list[str]) -> dict[str, str] | None:
    """The optional columns of one JSONL record as text ("" where absent or null)."""
    out: dict[str, str] = {}
    for name in optional:
        value = obj.get(name)
        if value is None:
            out[name] = ""
        elif isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            out[name] = str(value).strip()
        else:
            problems.append(f"{where}: {name!r} must be a string, got {type(value).__name__}")
            return None
        if not OPTIONAL_FIELDS[name](out[name], where, problems):
            return None
    return out


def _read_jsonl(raw: str, name: str, optional: tuple[str, ...] = ()
                ) -> tuple[list[str], list[str], list[str], Extras]:
    texts, labels, problems = [], [], []
    extras: Extras = {key: [] for key in optional}
    # Lines end at "\n" (a "\r" before it dropped): str.splitlines() also splits at
    # U+2028, U+2029 and U+0085, which a JSON string may hold raw, and so broke one
    # device's line in two unreadable halves (review, December 2026).
    for number, line in enumerate(raw.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{where}: expected a JSON object with 'text' and 'label'")
            continue
        unknown = sorted(set(obj) - set(FIELDS) - set(optional))
        missing = [f for f in FIELDS if f not in obj]
        if unknown or missing:
            parts = ([f"unknown fields {unknown}"] if unknown else []) + (
                [f"missing fields {missing}"] if missing else [])
            problems.append(f"{where}: {', '.join(parts)} (expected {_expected(optional)})")
            continue
        more = _optional(obj, optional, where, problems)
        if more is not None and _check_record(obj["text"], obj["label"], where, problems):
            texts.append(obj["text"])
            labels.append(obj["label"])
            for key, value in more.items():
                extras[key].append(value)
    return texts, labels, problems, extras


def _expected(optional: tuple[str, ...]) -> str:
    return "exactly text, label" + (f" and optionally {', '.join(optional)}" if optional
                                    else "")


def _read_csv(raw: str, name: str, delimiter: str, optional: tuple[str, ...] = ()
              ) -> tuple[list[str], list[str], list[str], Extras]:
    reader = csv.reader(io.StringIO(raw, newline=""), delimiter=delimiter)
    extras: Extras = {key: [] for key in optional}
    try:
        header = next(reader)
    except StopIteration:
        return [], [], [], extras
    except csv.Error as exc:
        raise DataError(f"{name}:1: unreadable CSV header ({exc})") from None
    columns = [h.strip().lower() for h in header]
    unknown = sorted(set(columns) - set(FIELDS) - set(optional))
    missing = [f for f in FIELDS if f not in columns]
    if unknown or missing or len(columns) != len(set(columns)):
        raise DataError(f"{name}:1: CSV header {header} must name {_expected(optional)} "
                        "as columns" + (f"; unknown columns {unknown}" if unknown else "")
                        + (f"; missing {missing}" if missing else ""))
    ti, li = columns.index("text"), columns.index("label")
    oi = {key: columns.index(key) for key in optional if key in columns}
    texts, labels, problems = [], [], []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(f"{name}:{reader.line_num}: unreadable CSV ({exc})")
            continue
        where = f"{name}:{reader.line_num}"
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(columns):
            problems.append(f"{where}: {len(row)} fields, expected {len(columns)} "
                            "(quote texts that contain the delimiter)")
            continue
        more = {key: row[oi[key]].strip() if key in oi else "" for key in optional}
        if all(OPTIONAL_FIELDS[k](v, where, problems) for k, v in more.items()) and \
                _check_record(row[ti], row[li], where, problems):
            texts.append(row[ti])
            labels.append(row[li])
            for key, value in more.items():
                extras[key].append(value)
    return texts, labels, problems, extras


def load_labeled(path: Path, optional: tuple[str, ...] = ()) -> LabeledData:
    """Read labeled lines; raise :class:`DataError` on any problem. ``optional``: the
    :data:`OPTIONAL_FIELDS` this reader accepts (an evaluation's; training takes none)."""
    stray = sorted(set(optional) - set(OPTIONAL_FIELDS))
    if stray:
        raise ValueError(f"no optional fields {stray}")
    name = str(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        raw = blob.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = blob[: exc.start].count(b"\n") + 1
        raise DataError(f"{name}:{line}: not UTF-8 text (byte 0x{blob[exc.start]:02x})") from None
    if not raw.strip():
        raise DataError(f"{name} is empty: no labeled lines")
    fmt = _detect_format(path, raw[:256])
    if fmt == "jsonl":
        texts, labels, problems, extras = _read_jsonl(raw, name, optional)
    else:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        texts, labels, problems, extras = _read_csv(raw, name, delimiter, optional)
    if problems:
        shown = "\n  ".join(problems[:MAX_REPORTED])
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED \
            else ""
        raise DataError(f"{len(problems)} unreadable line(s) in {name}:\n  {shown}{more}")
    if not texts:
        raise DataError(f"{name} has no labeled lines")
    return LabeledData(texts, labels, name, extras)


def check_trainable(data: LabeledData) -> None:
    """Training needs at least two classes."""
    present = data.label_set()
    if len(present) < 2:
        raise DataError(f"{data.source}: every line has the label {present[0]!r}; training "
                        "needs at least two classes (e.g. normal lines and alerts)")
