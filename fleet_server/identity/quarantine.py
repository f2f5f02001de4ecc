"""Quarantine: a device denied every topic at the broker for a while, then let back.

Why: a device certificate that publishes reports faster than the fleet server reads them
(a compromised device, or an agent gone wrong) overflows the broker's bounded queue for
the server's session, and the broker drops other devices' reports there — acknowledged
to them, never stored. The server's per-device ingest budget keeps the server whole but
cannot reach into the broker, and Mosquitto 2.0 has no per-client publish limit. The
broker does apply a re-read ACL to sessions already open, so the server denies the
flooding device every topic (``user <id>`` + ``topic deny #`` in the device ACL, as for a
revoked device) and reloads the broker (``enrollment.broker_reload_command``): its
publishes are refused at the broker and never queued for the server.

A quarantine ends by itself (``mqtt.flood_quarantine_s``, doubled for each earlier one of
the device in the last 24 hours, at most 24 hours: a device that floods again on release
spends little of the fleet's time doing it) or when an operator releases it; operators can
also quarantine a device themselves. Every quarantine is a row
(:class:`fleet_server.identity.tables.DeviceQuarantine`) and an audit entry.

Who can make the server quarantine a device? Only that device: a report counts against the
device id in its topic, and the ACL lets a certificate publish only under its own id. So the
worst a device can do is have itself quarantined.

:func:`quarantine_seconds` is the pure rule; :class:`Quarantines` is the I/O shell: the
database, the ACL rewrite and reload (through :class:`CertificateRegistry`), and a keeper
thread that turns flood notices into quarantines and rewrites the ACL when one ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select

from contract.topics import check_device_id
from fleet_server.identity.certificates import CertificateRegistry, add_audit_entry
from fleet_server.identity.tables import (
    DeviceQuarantine,
    in_force,
    quarantine_in_force,
    quarantine_view,
)
from fleet_server.identity.tokens import EnrollmentRefused

log = logging.getLogger("nanofleet.server.identity")

LONGEST_S = 86400.0  # one quarantine, however often the device flooded
ESCALATION_WINDOW_S = 86400.0  # earlier quarantines counted for the doubling
# Quarantines that started this close after one another are one flood, found by two
# replicas at once (each writes a row): counted once for the doubling.
SAME_FLOOD_S = 60.0
FLOOD_ACTOR = "server"  # created_by of the quarantines the server makes itself
MAX_NOTICES = 1024  # flood notices waiting for the keeper (distinct devices)
STARTUP_LOOKBACK_S = 7 * 86400.0  # ends the keeper's first pass looks back for
# When a device let back is sent what was retained for it meanwhile (twice: a broker
# busy with a flood may take longer than the first to apply the reload).
RESEND_AFTER_S = (2.0, 15.0)


def quarantine_seconds(base_s: float, earlier_starts: Sequence[float], now: float) -> float:
    """How long a flooding device is quarantined: ``base_s``, doubled for each quarantine
    of it that started in the last 24 hours (those that started within
    :data:`SAME_FLOOD_S` of the first of them count as that one), at most
    :data:`LONGEST_S`."""
    floods = 0
    first: float | None = None
    for t in sorted(t for t in earlier_starts if now - ESCALATION_WINDOW_S < t <= now):
        if first is None or t - first > SAME_FLOOD_S:
            floods, first = floods + 1, t
    return min(LONGEST_S, base_s * 2.0 ** min(floods, 16))


def _end_in_force(session: Any, device_id: str, now: float,
                  actor: str) -> list[DeviceQuarantine]:
    """Mark every quarantine of the device in force ended by ``actor`` (there may be more
    than one: two replicas that found the same flood at once each made one); them, the
    latest-ending first."""
    rows = list(session.scalars(select(DeviceQuarantine).where(
        DeviceQuarantine.device_id == device_id, in_force(now))
        .order_by(DeviceQuarantine.until.desc())))
    for row in rows:
        row.released_at, row.released_by = now, actor
    return rows


class Quarantines:
    """Quarantines in the database and at the broker; a keeper thread for floods and ends."""

    def __init__(self, registry: CertificateRegistry, flood_quarantine_s: float) -> None:
        self.registry = registry
        self.db = registry.db
        self.flood_quarantine_s = flood_quarantine_s
        self._notices: set[str] = set()  # devices reported flooding, not yet handled
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped_notices = 0
        # Told of devices let back (released, or their time ran out) once the broker
        # re-read the ACL: what was retained for them meanwhile (their desired state,
        # their mute list) was refused to them then and is not delivered again by
        # itself, since a quarantine does not end their session (FleetService sends it).
        self.on_ended: Callable[[list[str]], None] | None = None
        self._resends: list[tuple[float, str]] = []  # (when, device) for on_ended

    # --- operators and the keeper ------------------------------------------------------
    def quarantine(self, device_id: str, seconds: float, reason: str,
                   actor: str) -> dict[str, Any]:
        """Deny ``device_id`` every topic for ``seconds`` (replacing one in force)."""
        check_device_id(device_id)
        now = time.time()
        with self.db.session() as session:
            replaced = _end_in_force(session, device_id, now, actor)  # by this one
            row = DeviceQuarantine(device_id=device_id, since=now, until=now + seconds,
                                   reason=reason[:500], created_by=actor)
            session.add(row)
            add_audit_entry(session, actor, "device.quarantine", device_id, reason=reason[:500],
                            until=row.until, replaced=bool(replaced))
            view = quarantine_view(row)
        self._wake.set()  # the keeper's next end may be this one
        log.warning("quarantined %s until %s (%s): %s", device_id,
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(view["until"])),
                    actor, reason)
        return {**view, **self._apply()}

    def release(self, device_id: str, actor: str) -> dict[str, Any]:
        """End ``device_id``'s quarantine now; EnrollmentRefused 404 if none is in force."""
        now = time.time()
        with self.db.session() as session:
            ended = _end_in_force(session, device_id, now, actor)
            if not ended:
                raise EnrollmentRefused(404, "not-quarantined", f"device {device_id!r} is "
                                        "not quarantined (nanofleet devices quarantined)")
            row = ended[0]
            add_audit_entry(session, actor, "device.release", device_id, since=row.since)
            view = quarantine_view(row)
        log.warning("released %s from quarantine (%s)", device_id, actor)
        applied = self._apply()
        if applied["broker_reloaded"]:
            self._ended([device_id])
        return {**view, **applied}

    def active(self) -> list[dict[str, Any]]:
        now = time.time()
        with self.db.session() as session:
            rows = session.scalars(select(DeviceQuarantine).where(in_force(now))
                                   .order_by(DeviceQuarantine.device_id,
                                             DeviceQuarantine.until.desc()))
            seen: dict[str, dict[str, Any]] = {}
            for row in rows:
                seen.setdefault(row.device_id, quarantine_view(row))
            return list(seen.values())

    def of_device(self, device_id: str) -> dict[str, Any] | None:
        with self.db.session() as session:
            row = quarantine_in_force(session, device_id, time.time())
            return None if row is None else quarantine_view(row)

    def _ended(self, device_ids: list[str]) -> None:
        """Have the keeper tell ``on_ended`` about them, :data:`RESEND_AFTER_S` later: the
        reload command returns before the broker re-read its ACL (Mosquitto handles SIGHUP
        in its main loop), and what is published before that is still refused to them."""
        due = time.time()
        with self._lock:
            for delay in RESEND_AFTER_S:
                for device_id in device_ids:
                    self._resends.append((due + delay, device_id))
        self._wake.set()

    def _resend_due(self, now: float) -> float | None:
        """Call ``on_ended`` for the devices whose time came; the next time, if any."""
        with self._lock:
            due = sorted({d for t, d in self._resends if t <= now})
            self._resends = [(t, d) for t, d in self._resends if t > now]
            following = min((t for t, _ in self._resends), default=None)
        if due and self.on_ended is not None:
            try:
                self.on_ended(due)
            except Exception:  # the broker away: they get it at their next connection
                log.exception("sending %s what was retained for them failed", due)
        return following

    def _apply(self) -> dict[str, Any]:
        reloaded = self.registry.publish_broker_policy(reload=True)
        return {"acl_file": str(self.registry.acl_path), "broker_reloaded": reloaded,
                "next_step": "none: the broker re-read the ACL" if reloaded else
                "reload the broker (systemctl reload mosquitto, or SIGHUP; or set "
                "enrollment.broker_reload_command): it applies the ACL to open sessions"}

    # --- floods (paho's network thread calls flooding) -----------------------------------
    def flooding(self, device_id: str) -> None:
        """A device was found flooding: quarantine it on the keeper thread (never blocks)."""
        with self._lock:
            if len(self._notices) >= MAX_NOTICES and device_id not in self._notices:
                self.dropped_notices += 1
                return
            self._notices.add(device_id)
        self._wake.set()

    def _handle_flood(self, device_id: str) -> None:
        if self.flood_quarantine_s <= 0:
            return  # mqtt.flood_quarantine_s = 0: the bridge's log line is all
        try:
            check_device_id(device_id)
        except ValueError:
            return  # not a device id (a topic the filters let through by mistake)
        now = time.time()
        with self.db.session() as session:
            if quarantine_in_force(session, device_id, now) is not None:
                return  # reports that reached us before the broker applied the ACL
            earlier = list(session.scalars(select(DeviceQuarantine.since).where(
                DeviceQuarantine.device_id == device_id,
                DeviceQuarantine.since > now - ESCALATION_WINDOW_S)))
        seconds = quarantine_seconds(self.flood_quarantine_s, earlier, now)
        self.quarantine(device_id, seconds, "flood: reports faster than the server reads "
                        "them, dropped unread for mqtt.flood_min_s without a pause",
                        FLOOD_ACTOR)

    # --- the keeper thread -------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="quarantine-keeper",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=15)

    def _ends(self, after: float, now: float) -> tuple[list[str], float | None]:
        """(devices whose quarantine ran out in (after, now], the next end after now)."""
        with self.db.session() as session:
            ended = sorted(set(session.scalars(select(DeviceQuarantine.device_id).where(
                DeviceQuarantine.released_at.is_(None), DeviceQuarantine.until > after,
                DeviceQuarantine.until <= now))))
            following = session.scalars(select(DeviceQuarantine.until).where(in_force(now))
                                        .order_by(DeviceQuarantine.until)).first()
        return ended, following

    def _run(self) -> None:
        # A quarantine that ran out while no server was running is still in the ACL the
        # broker holds (the registry rewrote the file at start, without a reload).
        checked = time.time() - STARTUP_LOOKBACK_S
        while not self._stop.is_set():
            try:
                with self._lock:
                    notices, self._notices = sorted(self._notices), set()
                for device_id in notices:
                    self._handle_flood(device_id)
                now = time.time()
                ended, end = self._ends(checked, now)
                checked = now
                if ended:  # the ACL still denies them until it is rewritten
                    log.warning("quarantine of %s ended", ", ".join(ended))
                    if self.registry.publish_broker_policy(reload=True):
                        self._ended(ended)
                resend = self._resend_due(time.time())
                if resend is not None:
                    end = resend if end is None else min(end, resend)
            except Exception:  # the database away: try again shortly, never die
                log.exception("quarantine keeper failed; retrying in 5 s")
                end = time.time() + 5
            wait = 60.0 if end is None else min(60.0, max(0.05, end - time.time() + 0.05))
            self._wake.wait(wait)
            self._wake.clear()
