"""Each device's mute list, retained on ``dev/{id}/mutes`` at QoS 1 (:mod:`fleet_server.mutes`).

When lists are sent:

- after a change, the lists it touches: its device's, or every device's for an
  every-device mute (:meth:`MutePublisher.publish_for`);
- on every broker (re)connect, every device's (:meth:`MutePublisher.publish_all`, next
  to the desired states): a broker restarted without persistence has lost its retained
  messages, and an agent ignores a revision it already has;
- once for a device that first appears while the server runs (its first report), so an
  every-device mute made before it joined reaches it too (:meth:`MutePublisher.publish_new`).

Expired mutes drop out of the next list sent; the agent ends them by itself meanwhile.
Nothing is sent before the first mute was ever made (revision 0): an agent without a
list mutes nothing. The revision moves on as the server starts, so a database restored
from a backup is not ignored by devices holding newer lists (:mod:`fleet_server.revisions`).

Order: the revision is read before the mutes, so a list never carries a revision newer
than its content. Publishing is serialised in this process; server replicas do not share
that lock, so after the broker acknowledged, a publisher reads the revision again and
sends the current lists once more if another change committed meanwhile (its newer list
may have reached the broker's retained slot before this older one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from contract.mutes import mutes_topic
from fleet_server.db import Database, Device
from fleet_server.desired import RetainedPublisher
from fleet_server.identity.tables import revoked_device_ids
from fleet_server.mute_lists import encode_mute_list, lists_by_device
from fleet_server.mutes import (
    AlertMuteRow,
    MuteChange,
    active_mutes,
    current_revision,
    mute_alert,
    renew_revision,
    unmute,
)

log = logging.getLogger("nanofleet.server.mutes")
BATCH = 1000  # lists per publish_retained_many call
MAX_CATCH_UP = 3  # re-sends after another change overtook a publish


def every_device(session: Session) -> list[str]:
    """Whose lists an every-device mute changes: the inventory (revoked devices aside: the
    broker lets them in no more) and any device with a mute of its own."""
    ids = set(session.scalars(select(Device.device_id)))
    ids |= {d for d in session.scalars(select(AlertMuteRow.device_id).distinct())
            if d is not None}
    return sorted(ids - set(revoked_device_ids(session)))


class MutePublisher:
    def __init__(self, db: Database, publisher: RetainedPublisher | None, *,
                 publish_timeout: float = 10.0) -> None:
        self.db = db
        self.publisher = publisher
        self.publish_timeout = publish_timeout
        self._publish_lock = threading.Lock()
        self._known: set[str] = set()  # devices this process has sent (or will send) lists
        self._known_lock = threading.Lock()

    def start(self) -> None:
        """Before the broker connects: the devices already known get their lists from
        :meth:`publish_all` on connect, not one by one as their reports arrive; and the
        revision moves on once (:func:`fleet_server.mutes.renew_revision`), so that those
        lists replace whatever devices hold, should the database be a restored backup."""
        with self.db.session() as session:
            revision = renew_revision(session, time.time())
            known = every_device(session)
        if revision:
            log.info("mute lists go out as revision %d", revision)
        with self._known_lock:
            self._known.update(known)

    def mute(self, alert_id: int, *, days: int, all_devices: bool, any_source: bool,
             reason: str, actor: str, of_device: str | None = None,
             deploy_only: bool = False) -> tuple[MuteChange, bool]:
        """:func:`fleet_server.mutes.mute_alert` in its own transaction, then the lists it
        changed published: the change, and whether the broker acknowledged them (True when
        nothing changed). Raises what ``mute_alert`` raises, having changed nothing."""
        with self.db.session() as session:
            change = mute_alert(session, alert_id, days=days, all_devices=all_devices,
                                any_source=any_source, reason=reason, actor=actor,
                                of_device=of_device, deploy_only=deploy_only)
        # After the commit: a device must never get a list the database does not hold.
        return change, change.outcome == "unchanged" or self.publish_for(change.mute.device_id)

    def lift(self, mute_id: str, actor: str,
             applying_to: str | None = None) -> tuple[AlertMuteRow, bool]:
        """:func:`fleet_server.mutes.unmute` in its own transaction, then the lists it
        changed published: the lifted mute, and whether the broker acknowledged them."""
        with self.db.session() as session:
            row = unmute(session, mute_id, actor, applying_to=applying_to)
        return row, self.publish_for(row.device_id)

    def publish_for(self, device_id: str | None) -> bool:
        """After a change of a mute of ``device_id`` (None: every device): send the lists
        it changed. True when the broker acknowledged every one of them."""
        if device_id is None:
            with self.db.session() as session:
                ids = every_device(session)
        else:
            ids = [device_id]
        acked = sum(len(self.publish(ids[i:i + BATCH])) for i in range(0, len(ids), BATCH))
        return acked == len(ids)

    def resend(self, device_id: str | None, reset: bool) -> tuple[int, int]:
        """An operator's ``nanofleet mutes resend``: the lists of ``device_id`` (None: every
        device) again, marked ``reset`` when asked (applied whatever revision a device
        holds: the way back from a list numbered beyond ours). (lists, acknowledged)."""
        with self.db.session() as session:
            if current_revision(session) == 0 and not reset:
                # No mute was ever made: nothing is sent (before, review December 2026,
                # every list was reported sent and acknowledged).
                return 0, 0
            ids = [device_id] if device_id is not None else every_device(session)
        acked = sum(len(self.publish(ids[i:i + BATCH], reset=reset))
                    for i in range(0, len(ids), BATCH))
        return len(ids), acked

    def publish(self, device_ids: Sequence[str], _depth: int = 0,
                reset: bool = False) -> set[str]:
        """Send the current lists of ``device_ids``; returns those the broker acknowledged
        (all of them when there is nothing to send: no mute was ever made)."""
        if not device_ids or self.publisher is None:
            return set()
        with self._publish_lock:
            now = time.time()
            with self.db.session() as session:
                revision = current_revision(session)  # first: see the module docstring
                if revision == 0 and not reset:  # nothing to say, unless to undo a forgery
                    return set(device_ids)
                rows = active_mutes(session, now)
            lists = lists_by_device(rows, list(device_ids), revision, now, reset=reset)
            short = {d: left_out for d, (_, left_out) in lists.items() if left_out}
            if short:
                device, left_out = next(iter(short.items()))
                log.warning("%d devices have more mutes than one list holds (e.g. %s: the "
                            "%d oldest are not sent); each list keeps the newest: lift some",
                            len(short), device, left_out)
            acks = self.publisher.publish_retained_many(
                [(mutes_topic(d), encode_mute_list(doc)) for d, (doc, _) in lists.items()],
                self.publish_timeout)
            acked = {d for d, ok in zip(lists, acks, strict=True) if ok}
            with self.db.session() as session:
                overtaken = current_revision(session) > revision
        self._remember(acked)
        if overtaken and acked and _depth < MAX_CATCH_UP:
            return self.publish(sorted(acked), _depth + 1, reset) | acked
        return acked

    def publish_all(self) -> int:
        """Every device's list again (after a (re)connect); how many the broker acked."""
        with self.db.session() as session:
            if current_revision(session) == 0:
                return 0
            ids = every_device(session)
        self._remember(ids)
        return sum(len(self.publish(ids[i:i + BATCH])) for i in range(0, len(ids), BATCH))

    def publish_new(self, device_ids: Iterable[str]) -> None:
        """Send their lists to devices this process has not sent lists to (a device that
        just joined), in the background: called on the report-ingest thread, which must
        not wait for the broker's acknowledgements."""
        with self._known_lock:
            new = sorted(set(device_ids) - self._known)
            self._known.update(new)  # once: a lost publish is repaired on reconnect
        if new and self.publisher is not None:
            threading.Thread(target=self._publish_quietly, args=(new,), name="mute-lists",
                             daemon=True).start()

    def _publish_quietly(self, device_ids: list[str]) -> None:
        try:
            self.publish(device_ids)
        except Exception:
            log.exception("sending the mute lists of %d new devices failed", len(device_ids))

    def _remember(self, device_ids: Iterable[str]) -> None:
        with self._known_lock:
            self._known.update(device_ids)
