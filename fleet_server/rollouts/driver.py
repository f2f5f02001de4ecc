"""The thin I/O shell that runs rollouts: load, :func:`policy.tick`, store, publish.

A thread ticks every ``tick_s`` and whenever device reports moved a rollout record
on (:meth:`RolloutDriver.wake`). One tick per active rollout is one transaction:
the policy's plan (device records, progress, log, and the desired-state documents
of notified and re-notified devices) is committed together, then the documents are
published retained (the normal desired-state path; a broker that is away gets them
on reconnect). A tick that raced an operator's pause/resume/abort loses (optimistic
lock on the rollout row) and is simply run again.

With several server replicas on one database, only the holder of the
``rollout-driver`` lease ticks.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from contract.bundle_features import READ_BY_SILENT_AGENTS
from fleet_server.db import Database, Device, ModelVersion
from fleet_server.desired import DesiredStates
from fleet_server.identity.tables import quarantined_device_ids
from fleet_server.rollouts import policy
from fleet_server.rollouts.records import DeviceLive
from fleet_server.rollouts.store import (
    RolloutRow,
    ServerLease,
    active_rollout_ids,
    append_log,
    device_of,
    device_rows,
    progress_of,
    release_lease,
    store_device,
    store_progress,
    strategy_of,
    take_lease,
)

log = logging.getLogger("nanofleet.server.rollouts")
LEASE_NAME = "rollout-driver"
_IN_CHUNK = 900  # ids per IN (...) clause: under SQLite's old 999-variable limit


MIN_TICK_GAP_S = 0.25


def live_view(session: Session, device_ids: Sequence[str], model: str) -> dict[str,
                                                                              DeviceLive]:
    """What the inventory says about these devices, for the policy. A quarantined device
    is offline to it: the broker lets it neither receive its desired state nor report, so
    it waits (fleet_server.identity.quarantine) instead of timing out as a failure."""
    out: dict[str, DeviceLive] = {}
    quarantined = set(quarantined_device_ids(session, time.time()))
    for i in range(0, len(device_ids), _IN_CHUNK):
        for d in session.scalars(select(Device).where(
                Device.device_id.in_(device_ids[i:i + _IN_CHUNK]))):
            online = d.state == "online" and d.device_id not in quarantined
            live = max((m for m in d.models or [] if m.get("name") == model),
                       key=lambda m: m["version"], default=None)
            out[d.device_id] = DeviceLive(
                online=online,
                online_since=(d.online_since or d.last_status_at) if online else None,
                live_version=None if live is None else live["version"],
                live_trial=None if live is None else live.get("trial"),
                reads=reads_of(d))
    return out


def reads_of(device: Device) -> frozenset[str] | None:
    """The manifest features a device's agent reads: what its latest status said; for a
    status that said nothing (an agent before December 2026), what such agents read; None
    when no status came yet (the device decides itself when its desired state reaches
    it)."""
    if device.reads is not None:
        return frozenset(device.reads)
    return READ_BY_SILENT_AGENTS if device.last_status_seq is not None else None


def needs_of(session: Session, model: str, version: int) -> frozenset[str]:
    """The manifest features the published bundle needs (empty when not known: a bundle
    the server could not read is left to the devices, as before)."""
    needs = session.scalars(select(ModelVersion.needs).where(
        ModelVersion.model == model, ModelVersion.version == version)).first()
    return frozenset(needs or ())


class RolloutDriver:
    def __init__(self, db: Database, desired: DesiredStates, *, tick_s: float = 1.0,
                 lease_s: float = 15.0, owner: str | None = None) -> None:
        self.db = db
        self.desired = desired
        self.tick_s = tick_s
        self.lease_s = lease_s
        self.owner = owner or f"server-{uuid.uuid4().hex[:12]}"
        self.ticks = 0
        self.holding = False  # held the lease at the last tick
        self.enabled = True  # False: never take the lease again (a superseded replica)
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one tick at a time (thread and API-triggered)
        self._thread = threading.Thread(target=self._run, name="rollout-driver", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        started = self._thread.ident is not None
        if started and self.enabled:  # (a superseded replica's owner is another process now)
            try:  # let another replica take over now rather than when the lease runs out
                with self.db.session() as session:
                    release_lease(session, LEASE_NAME, self.owner)
            except Exception:
                log.warning("could not release the rollout lease", exc_info=True)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick_all()
                self.last_error = None
            except Exception as exc:  # the database may be away; try again next tick
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("rollout tick failed")
            # Reports wake the driver early, but a tick re-reads every device of the
            # rollout: at most one early tick per MIN_TICK_GAP_S, so a burst of 1,000
            # reports costs a few ticks, not hundreds (measured: CPU per rollout -40 %).
            self._stop.wait(min(MIN_TICK_GAP_S, self.tick_s))
            self._wake.wait(max(0.0, self.tick_s - MIN_TICK_GAP_S))
            self._wake.clear()

    def holds_lease(self, now: float) -> bool:
        held = False
        if self.enabled:
            try:
                with self.db.session() as session:
                    held = take_lease(session, LEASE_NAME, self.owner, now, self.lease_s)
            except Exception:  # another replica inserted the lease row first
                log.debug("rollout lease not taken", exc_info=True)
        if held != self.holding:
            log.info("rollout lease %s by %s", "taken" if held else "not held", self.owner)
        self.holding = held
        return held

    def lease(self) -> dict[str, Any] | None:
        """Who holds the ``rollout-driver`` lease, and until when (None: nobody yet)."""
        with self.db.session() as session:
            row = session.get(ServerLease, LEASE_NAME)
            if row is None:
                return None
            return {"owner": row.owner, "until": row.until,
                    "expired": row.until < time.time()}

    def tick_all(self, now: float | None = None) -> int:
        """Tick every active rollout; returns how many were ticked."""
        with self._lock:
            now = time.time() if now is None else now
            if not self.holds_lease(now):
                return 0
            with self.db.session() as session:
                ids = active_rollout_ids(session)
            for rollout_id in ids:
                for _attempt in range(3):
                    try:
                        self._tick(rollout_id, now)
                        break
                    except StaleDataError:
                        continue  # an operator changed it meanwhile: decide again
            self.ticks += 1
            return len(ids)

    def _tick(self, rollout_id: str, now: float) -> None:
        publish: list[str] = []
        with self.db.session() as session:
            row = session.get(RolloutRow, rollout_id)
            if row is None:
                return
            rows = {r.device_id: r for r in device_rows(session, rollout_id)}
            devices = [device_of(r) for r in rows.values()]
            live = live_view(session, list(rows), row.model)
            plan = policy.tick(strategy_of(row), row.stage_names, row.version,
                               progress_of(row), devices, live, now,
                               needs_of(session, row.model, row.version))
            if not plan.devices and plan.progress == progress_of(row) and not plan.log:
                return
            for device_id, dev in plan.devices.items():
                store_device(rows[device_id], dev)
            for device_id in plan.notify:
                live_now = live.get(device_id)
                rows[device_id].from_version = live_now.live_version if live_now else None
            store_progress(row, plan.progress, now)
            if plan.notify or plan.renotify:
                row.updated_at = now  # an UPDATE of the row: checks no operator got between
            append_log(row, plan.log, now)
            if plan.notify:
                self.desired.stage(session, plan.notify, slot=row.slot, model=row.model,
                                   version=row.version, rollout_id=rollout_id)
            if plan.renotify:
                self.desired.stage(session, plan.renotify, slot=row.slot, model=row.model,
                                   version=row.version, rollout_id=rollout_id,
                                   new_revision=True)
            publish = [*plan.notify, *plan.renotify]
            for line in plan.log:
                # %r: a line may quote a device's OTA reason (review, December 2026).
                log.info("rollout %s: %r", rollout_id, line)
        self.publish(publish)

    def publish(self, device_ids: Iterable[str], batch: int = 1000) -> None:
        ids = list(device_ids)
        for i in range(0, len(ids), batch):
            self.desired.publish(ids[i:i + batch])
