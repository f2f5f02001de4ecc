"""Operators' verdicts on devices' alerts: labelled real lines from the field.

An operator who reads an alert knows whether it was right. Saying so (``false alarm`` or
``right``, in the console or the API) stores the line with its true label — ``normal``
for a false alarm, the alert's label (or the one the operator names) for a right one —
and the labelled lines export as the JSONL ``nanofleet model train`` and ``nanofleet model
eval --alerts`` read (docs/model.md, "Operators"): the site's own text with honest
labels, which is what a fine-tune of the shipped model needs (docs/fleet-server.md,
"Alerts and verdicts").

A verdict copies what it needs from the alert (text, label, source, model version), so it
outlives the alert history's retention. One verdict per alert: judging again replaces it.
Pure decisions (:func:`true_label`) apart from the store.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from typing import Literal

from sqlalchemy import ColumnElement, Float, Integer, String, Text, and_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from contract.labels import NORMAL
from fleet_server.db import AuditEntry, Base
from fleet_server.metrics_store import DeviceAlertRow

log = logging.getLogger("nanofleet.server.verdicts")

Verdict = Literal["false_alarm", "right"]
NORMAL_LABEL = NORMAL  # the label a false alarm is stored with
# A label as the nano model's bundles name them (lower case, digits, - and _).
LABEL_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
LEFT_OUT_HEADER = "X-Left-Out"  # of the export: verdicts left out (labelled_lines)


class AlertVerdictRow(Base):
    """An operator's verdict on one alert, with the line it judged."""

    __tablename__ = "alert_verdicts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_msg_id: Mapped[str] = mapped_column(String(64), unique=True,
                                              doc="the alert's msg_id (one verdict each)")
    device_id: Mapped[str] = mapped_column(String(64), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(64), doc="the line's true label")
    alert_label: Mapped[str] = mapped_column(String(64), doc="what the model said")
    model_version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float, index=True)
    actor: Mapped[str] = mapped_column(String(64))


class VerdictRefused(ValueError):
    """The verdict cannot be stored; the message says why and what to do."""


def true_label(verdict: Verdict, alert_label: str, label: str | None) -> str:
    """The line's label for training: ``normal`` for a false alarm, else the operator's
    label or, without one, the alert's. A false alarm with a label other than normal, or
    a right alert labelled normal, contradicts itself and is refused."""
    if verdict == "false_alarm":
        if label not in (None, NORMAL_LABEL):
            raise VerdictRefused(f"a false alarm is a {NORMAL_LABEL!r} line; label {label!r} "
                                 "says it needed attention: use verdict 'right' with it")
        return NORMAL_LABEL
    chosen = label or alert_label
    if chosen == NORMAL_LABEL:
        raise VerdictRefused("a right alert is not a 'normal' line: use verdict 'false_alarm'")
    if not re.fullmatch(LABEL_PATTERN, chosen):
        # The device chose the alert's label: "normal " or "normal\xa0" passed the check
        # above, looked like normal and trained as normal (the trainer strips labels), so
        # the operator's "right" taught the model the line was healthy; "" broke the
        # training of the whole export (review, December 2026).
        whose = "label" if label else "the alert's label"
        raise VerdictRefused(f"{whose} {chosen[:70]!r} is not a label (lower-case letters, "
                             "digits, - and _): name the line's category with the verdict's "
                             "label (nanofleet alerts verdict ID right --label CATEGORY)")
    return chosen


def judge(session: Session, alert: DeviceAlertRow, verdict: Verdict, label: str | None,
          actor: str, now: float | None = None) -> AlertVerdictRow:
    """Store (or replace) the verdict on ``alert``, and its entry in the audit log (one
    place for the API and the console, so the log reads alike whichever way it came). A
    refused verdict (:func:`true_label` raises) touches nothing: a caller that catches
    the refusal and commits keeps the old."""
    line_label = true_label(verdict, alert.label, label)
    row = session.scalar(select(AlertVerdictRow).where(
        AlertVerdictRow.alert_msg_id == alert.msg_id))
    if row is not None and not belongs_to(row, alert):
        # The device chooses its alerts' ids: one reused for another line must not replace
        # the judged line the fine-tune learns from. The source as !r: the device chose it,
        # and the message reaches terminals (review, December 2026).
        raise VerdictRefused(f"alert id {alert.msg_id!r} was judged before on another line "
                             f"({row.device_id}, source {row.source!r}): the device reused "
                             "it; that verdict stays")
    if row is None:
        row = AlertVerdictRow(alert_msg_id=alert.msg_id)
        session.add(row)
    row.device_id, row.verdict, row.label = alert.device_id, verdict, line_label
    row.alert_label, row.model_version = alert.label, alert.model_version
    row.source, row.text = alert.source, alert.text
    row.at, row.actor = time.time() if now is None else now, actor
    session.add(AuditEntry(actor=actor, action="alert-verdict", subject=alert.device_id,
                           at=row.at, detail={"alert": alert.msg_id, "verdict": verdict,
                                              "label": line_label}))
    session.flush()
    return row


# What ties a verdict to an alert: the alert's id, and its device, source and text. Why
# not the id alone: a device chooses its alerts' ids, and one reused for a new line (once
# the judged alert has left the history) would show that line as judged (review, December
# 2026). One list, read by both forms below (Python and SQL).
_TIED = ((AlertVerdictRow.alert_msg_id, DeviceAlertRow.msg_id),
         (AlertVerdictRow.device_id, DeviceAlertRow.device_id),
         (AlertVerdictRow.source, DeviceAlertRow.source),
         (AlertVerdictRow.text, DeviceAlertRow.text))


def belongs_to(row: AlertVerdictRow, alert: DeviceAlertRow) -> bool:
    """Whether verdict ``row`` was given on ``alert``'s line."""
    return all(getattr(row, v.key) == getattr(alert, a.key) for v, a in _TIED)


def on_its_alert() -> ColumnElement[bool]:
    """:func:`belongs_to` as a join condition (the shape ranking's read)."""
    return and_(*(v == a for v, a in _TIED))


def verdicts_of(session: Session, alerts: Sequence[DeviceAlertRow]
                ) -> dict[str, AlertVerdictRow]:
    """The verdicts on these alerts, by the alert's msg_id (:func:`belongs_to`)."""
    if not alerts:
        return {}
    by_id = {a.msg_id: a for a in alerts}
    rows = session.scalars(select(AlertVerdictRow).where(
        AlertVerdictRow.alert_msg_id.in_(list(by_id))))
    return {r.alert_msg_id: r for r in rows if belongs_to(r, by_id[r.alert_msg_id])}


def labelled_lines(session: Session, device_id: str | None = None, since: float | None = None,
                   with_source: bool = False, left_out: list[int] | None = None
                   ) -> Iterator[str]:
    """The judged lines as JSONL rows (``text``, ``label``, and ``source`` when asked: the
    columns ``model train`` takes, or those ``model eval --alerts`` takes), oldest first.
    A verdict whose label is not a label is left out (its id added to ``left_out``)."""
    query = select(AlertVerdictRow).order_by(AlertVerdictRow.id)
    if device_id is not None:
        query = query.where(AlertVerdictRow.device_id == device_id)
    if since is not None:
        query = query.where(AlertVerdictRow.at >= since)
    for row in session.scalars(query):
        if not re.fullmatch(LABEL_PATTERN, row.label):
            # Kept before true_label checked a device's label (review, December 2026): an
            # empty one failed the training of the whole export, "normal " trained as
            # normal. Left out, for the rest of the fleet's lines; the log says which.
            log.warning("labelled lines: verdict %d on alert %r left out: its label %r is "
                        "not a label (judge the alert again, naming the label)", row.id,
                        row.alert_msg_id, row.label)
            if left_out is not None:
                left_out.append(row.id)
            continue
        doc = {"text": row.text, "label": row.label}
        if with_source:
            doc["source"] = row.source
        # ensure_ascii: U+2028, U+2029 and U+0085 in a device's line, raw, end a line for
        # str.splitlines(), and one such row failed every reader of the export (review,
        # December 2026); escaped, each row is one line of printable ASCII.
        yield json.dumps(doc, ensure_ascii=True) + "\n"
