"""Alert mutes, the fleet server's side: an operator who judged an alert a false alarm
stops the device sending that message again, for some days (contract/mutes.py says what
a mute is and what the agent does with one).

A mute is made from an alert the server keeps: the *shape* of its line
(:func:`contract.mutes.message_shape`) and its source, on the alert's device or on every
device, for 1 to :data:`MAX_MUTE_DAYS` days. The server keeps the first
:data:`ALERT_TEXT_CHARS` characters of a line: a line it kept cut gets a *prefix* mute, of
the start of the shape the server can be sure of (:func:`contract.mutes.prefix_shape`).
The rows live in ``alert_mutes``; every device's :class:`MuteList` (its own mutes and
the every-device ones) is published retained on ``dev/{id}/mutes`` by
:mod:`fleet_server.mute_publisher` after each change.

Revisions: one counter (the single row of ``alert_mute_revision``) goes up in the
transaction of every change, and its value is the revision of every device's list. A
list only changes with a change, so each device's revision only ever increases, without
a row per device (an every-device mute changes every list at once) and without two
changes ever sharing a number. It goes up by :func:`fleet_server.revisions.next_revision`
(at least to the seconds since 2026), so a database restored from a backup does not
number its next lists below the ones devices already hold; and the publisher's start
moves it on once (:func:`renew_revision`), so a restored server's lists replace the
newer ones devices kept.

The pure rules (:func:`fleet_server.mute_rules.check_request`,
:func:`fleet_server.mute_rules.mute_shape`, the refusals) and a device's list
(:func:`fleet_server.mute_lists.build_mute_list`) are apart from this store; a refused
call (:class:`fleet_server.mute_rules.MuteRefused`) touches nothing.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Boolean, Float, Integer, String, delete, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from contract.mutes import MAX_SHAPE_CHARS, MAX_SOURCE_CHARS, MuteList, logged_by_ordinary_user
from fleet_server.db import AuditEntry, Base
from fleet_server.metrics_store import DeviceAlertRow
from fleet_server.mute_lists import build_mute_list, room_refusal
from fleet_server.mute_rules import (
    MAX_REASON_CHARS,
    MuteRefused,
    UnknownAlert,
    UnknownMute,
    WideMuteRefused,
    check_request,
    mute_shape,
)
from fleet_server.revisions import next_revision, next_revision_sql

log = logging.getLogger("nanofleet.server.mutes")

DAY_S = 86_400
# A token without admin may mute one message on this many devices, one by one, and make
# this many new mutes a day; more needs admin (as an every-device mute does). Reviews,
# December 2026: a deploy-only token muted a message device after device, and, one shape
# per device (a user name in the line, the device's host name), any number of them.
MAX_DEPLOY_MUTED_DEVICES = 5
MAX_DEPLOY_MUTES_PER_DAY = 30
Outcome = Literal["created", "extended", "unchanged"]


class AlertMuteRow(Base):
    """One muted message shape, on one device or (device_id None) on every device."""

    __tablename__ = "alert_mutes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True,
                                    doc="hex (contract.mutes.MUTE_ID_PATTERN)")
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True,
                                                  doc="None: every device")
    source: Mapped[str | None] = mapped_column(String(128), nullable=True,
                                               doc="None: lines of any source")
    shape: Mapped[str] = mapped_column(String(MAX_SHAPE_CHARS))
    prefix: Mapped[bool] = mapped_column(Boolean, default=False,
                                         doc="the shape is the start of the line's (cut line)")
    reason: Mapped[str] = mapped_column(String(MAX_REASON_CHARS), default="")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    alert_id: Mapped[int | None] = mapped_column(Integer, nullable=True,
                                                 doc="the alert it was made from")
    alert_msg_id: Mapped[str | None] = mapped_column(String(64), nullable=True,
                                                     doc="its msg_id (outlives retention)")


class AlertMuteRevision(Base):
    """The one row (id 1) whose revision is every device's MuteList revision."""

    __tablename__ = "alert_mute_revision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(Integer, default=0)


@dataclass(frozen=True)
class MuteChange:
    """What :func:`mute_alert` did: the mute (new, extended or the same as before)."""

    mute: AlertMuteRow
    outcome: Outcome


# --- the store --------------------------------------------------------------------------------

def current_revision(session: Session) -> int:
    """The revision of every device's list now (0: nothing was ever muted)."""
    return session.scalar(select(AlertMuteRevision.revision).where(
        AlertMuteRevision.id == 1)) or 0


def _bump_revision(session: Session, now: float) -> None:
    # One UPDATE: concurrent writers (replicas) take turns on the row's lock, so no two
    # changes get one revision. The migration inserts the row; this only repairs its loss.
    done = session.execute(update(AlertMuteRevision).where(AlertMuteRevision.id == 1).values(
        revision=next_revision_sql(AlertMuteRevision.revision, now)))
    if not getattr(done, "rowcount", 0):
        session.add(AlertMuteRevision(id=1, revision=next_revision(0, now)))
    session.flush()


def renew_revision(session: Session, now: float) -> int:
    """Move the revision on without a change, when mutes were ever made (returns the
    revision, 0: none ever). Called once as the server starts: if its database was restored
    from a backup, devices hold lists newer than the server's, keep them and ignore the
    server's; under a new revision every device takes the server's lists again. Devices
    whose list did not change just apply the same list once more."""
    if current_revision(session) == 0:
        return 0
    _bump_revision(session, now)
    return current_revision(session)


def _audit(session: Session, action: str, actor: str, row: AlertMuteRow, at: float,
           **detail: object) -> None:
    session.add(AuditEntry(actor=actor, action=action, at=at,
                           subject=row.device_id or "every device",
                           detail={"mute": row.id, "shape": row.shape, "prefix": row.prefix,
                                   "source": row.source, "expires_at": row.expires_at,
                                   **detail}))


def wide_mute_check(session: Session, actor: str, shape: str, prefix: bool,
                    device_id: str | None, now: float) -> None:
    """Refuse (:class:`WideMuteRefused`) a new mute by a token without admin past its
    limits (:data:`MAX_DEPLOY_MUTED_DEVICES`, :data:`MAX_DEPLOY_MUTES_PER_DAY`). Takes the
    mute revision's row lock first (PostgreSQL: ``SELECT ... FOR UPDATE``; SQLite writes
    one at a time anyway): without it, 30 concurrent requests muted 16 devices."""
    session.execute(select(AlertMuteRevision).where(AlertMuteRevision.id == 1)
                    .with_for_update())
    if device_id is not None:
        others = set(session.scalars(select(AlertMuteRow.device_id).where(
            AlertMuteRow.shape == shape, AlertMuteRow.prefix == prefix,
            AlertMuteRow.expires_at > now, AlertMuteRow.device_id.is_not(None),
            AlertMuteRow.device_id != device_id)))
        if len(others) >= MAX_DEPLOY_MUTED_DEVICES:
            raise WideMuteRefused(
                f"this message is muted on {len(others)} other devices already; muting it on "
                "more needs a token with admin (and then one mute on every device does it)")
    made = sum(1 for detail in session.scalars(select(AuditEntry.detail).where(
        AuditEntry.action == "alert-mute", AuditEntry.actor == actor,
        AuditEntry.at > now - DAY_S)) if detail.get("outcome") == "created")
    if made >= MAX_DEPLOY_MUTES_PER_DAY:
        raise WideMuteRefused(
            f"{actor!r} made {made} mutes in the last day, the most a token without admin may: "
            "more needs a token with admin (or wait for the day to pass)")


def mute_alert(session: Session, alert_id: int, *, days: int, all_devices: bool,
               any_source: bool, reason: str, actor: str, now: float | None = None,
               of_device: str | None = None, deploy_only: bool = False) -> MuteChange:
    """Mute the shape of alert ``alert_id``'s line, on its device (or every device), from
    its source (or any), for ``days``; with its entry in the audit log (``alert-mute``).

    A line the server kept cut gets a prefix mute (:func:`mute_shape`). An active mute of
    the same device (or every device), source (or any), shape and kind (whole or prefix)
    is not made twice: that mute is returned, its expiry moved out to ``days`` from now
    when that is later (``extended``; a given reason replaces its reason), else left as
    it is (``unchanged``). Only exact duplicates count: a device's own mute and an
    every-device one of the same shape are two mutes, each lifted on its own.

    A refused call (:class:`MuteRefused`) touches nothing: a caller that catches the
    refusal and commits changes nothing. Expired mutes are cleared away here (no list
    carries them; the audit log keeps their story). With ``of_device``, only an alert of
    that device is muted (a page that lists one device's alerts must not mute another's
    by a guessed id). ``deploy_only`` (the caller's token lacks admin): a new mute is
    refused (:class:`WideMuteRefused`) when the same shape is muted on
    ``MAX_DEPLOY_MUTED_DEVICES`` other devices already, or the actor made
    ``MAX_DEPLOY_MUTES_PER_DAY`` mutes in the last day; the check holds the mute revision's
    row lock, so concurrent requests (other replicas) take turns."""
    check_request(days, reason)
    alert = session.get(DeviceAlertRow, alert_id)
    if alert is None or (of_device is not None and alert.device_id != of_device):
        where = "" if of_device is None else f" on device {of_device}"
        raise UnknownAlert(f"no alert {alert_id}{where}: the server keeps alerts for a while "
                           "only (GET /api/v1/alerts lists them)")
    shape, prefix = mute_shape(alert.text)
    uid = logged_by_ordinary_user(alert.reason)
    if uid is not None:
        raise MuteRefused(
            f"this line was logged by uid {uid}, an ordinary user, not by the program it "
            "names: a mute of its shape would also hide that program's own lines (a real "
            "brute force looks the same). Find out who logs it on the device instead")
    if not any_source and len(alert.source) >= MAX_SOURCE_CHARS:
        raise MuteRefused(
            f"the alert's source name has {MAX_SOURCE_CHARS} characters or more, so the "
            "server kept it cut, and a mute of this source would never match on the device: "
            "mute it on any source, or give the source a shorter `name` in the agent's "
            "config")
    now = time.time() if now is None else now
    device_id = None if all_devices else alert.device_id
    source = None if any_source else alert.source
    expires_at = now + days * DAY_S
    session.execute(delete(AlertMuteRow).where(AlertMuteRow.expires_at <= now))
    same = select(AlertMuteRow).where(
        AlertMuteRow.shape == shape, AlertMuteRow.prefix == prefix,
        AlertMuteRow.expires_at > now,
        AlertMuteRow.device_id.is_(None) if device_id is None
        else AlertMuteRow.device_id == device_id,
        AlertMuteRow.source.is_(None) if source is None else AlertMuteRow.source == source)
    row = session.scalars(same.order_by(AlertMuteRow.created_at)).first()
    outcome: Outcome
    if row is None and deploy_only:
        wide_mute_check(session, actor, shape, prefix, device_id, now)
    if row is None:
        row = AlertMuteRow(id=secrets.token_hex(8), device_id=device_id, source=source,
                           shape=shape, prefix=prefix, reason=reason, created_by=actor,
                           created_at=now, expires_at=expires_at, alert_id=alert.id,
                           alert_msg_id=alert.msg_id)
        full = room_refusal(list(session.scalars(select(AlertMuteRow))), row, now)
        if full is not None:
            raise MuteRefused(full)
        session.add(row)
        outcome = "created"
    elif expires_at > row.expires_at:
        row.expires_at, row.reason = expires_at, reason or row.reason
        outcome = "extended"
    else:
        outcome = "unchanged"
    if outcome != "unchanged":  # the lists change: a newer revision for every device
        _bump_revision(session, now)
    _audit(session, "alert-mute", actor, row, now, alert=alert.id, alert_msg_id=alert.msg_id,
           days=days, outcome=outcome)
    session.flush()
    return MuteChange(row, outcome)


def unmute(session: Session, mute_id: str, actor: str, now: float | None = None,
           applying_to: str | None = None) -> AlertMuteRow:
    """Lift a mute (the row goes; ``alert-unmute`` in the audit log). Returns the removed
    row, whose device (None: every device) says whose lists to publish again. With
    ``applying_to``, only a mute that applies to that device (its own or an every-device
    one) is lifted: a page that lists one device's mutes must not lift another's blind."""
    row = session.get(AlertMuteRow, mute_id)
    if row is None or (applying_to is not None and row.device_id not in (None, applying_to)):
        where = "" if applying_to is None else f" applies to device {applying_to}"
        raise UnknownMute(f"no mute {mute_id[:40]!r}{where}: it was lifted, or it expired and "
                          "was cleared away (GET /api/v1/mutes lists the active ones)")
    now = time.time() if now is None else now
    session.delete(row)
    _bump_revision(session, now)
    _audit(session, "alert-unmute", actor, row, now, expired=row.expires_at <= now)
    session.flush()
    return row


def active_mutes(session: Session, now: float, device_id: str | None = None
                 ) -> list[AlertMuteRow]:
    """Mutes not expired at ``now``, newest first; with ``device_id``, those that apply
    to that device (its own and the every-device ones)."""
    query = select(AlertMuteRow).where(AlertMuteRow.expires_at > now).order_by(
        AlertMuteRow.created_at.desc(), AlertMuteRow.id.desc())
    if device_id is not None:
        query = query.where(or_(AlertMuteRow.device_id == device_id,
                                AlertMuteRow.device_id.is_(None)))
    return list(session.scalars(query))


def mute_list_for(session: Session, device_id: str, now: float) -> MuteList:
    """The list ``device_id`` should hold now (see :func:`build_mute_list`)."""
    revision = current_revision(session)  # before the rows: see mute_publisher
    doc, left_out = build_mute_list(active_mutes(session, now, device_id), revision, now)
    if left_out:
        log.warning("%d mutes apply to %s, more than one list holds: its list keeps the "
                    "newest %d, the %d oldest are not sent (lift some)",
                    len(doc.mutes) + left_out, device_id, len(doc.mutes), left_out)
    return doc
