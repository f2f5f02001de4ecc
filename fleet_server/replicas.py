"""Server replicas in the shared database: which processes run, under which MQTT client id.

Every replica registers under its ``mqtt.client_id`` in ``server_replicas`` and renews a
heartbeat there. The client id must be unique among running replicas: MQTT gives an id
to one session at a time (a second connection with the same id takes the first one's
session over, and the two would kick each other off the broker), and the rollout lease
is held in the client id's name, so two processes with one id would both drive
rollouts. Hence:

- at start, before anything connects, a replica *claims* its id: free, or held by a
  process whose heartbeat has stopped (a crashed predecessor), it is taken; held by a
  process whose heartbeat still moves, start-up fails with a message naming that process;
- a replica whose heartbeat finds its id claimed by another process (it stalled longer
  than a claim waits) is *superseded*: it must stop using the id (the service stops its
  MQTT connections and rollout driving, and its health says so);
- replicas that take device reports or artifact requests must share them through the
  same ``$share`` groups: a replica without a group, or in other groups than the running
  ones, would get its own copy of every message. Start-up refuses that too (the rows
  keep a digest of the groups, not the names, which devices must not learn).

The heartbeat also carries the replica's counters (reports received and ingested,
artifact requests served), so any replica's API can show how the work is split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Float, Integer, String, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from fleet_server.db import Base, Database

log = logging.getLogger("nanofleet.server.replicas")


class ReplicaRow(Base):
    """One running fleet-server process (a replica), keyed by its MQTT client id."""

    __tablename__ = "server_replicas"

    client_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    instance: Mapped[str] = mapped_column(String(32), doc="random per process start")
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    api: Mapped[str] = mapped_column(String(255), doc="address the replica's HTTP API binds")
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)
    counters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sharing: Mapped[str] = mapped_column(String(64), default="",
                                         doc="digest of its $share groups; '' takes no work")


class ReplicaConflict(RuntimeError):
    """This replica must not start beside the running ones (its client id is taken, or
    its shared groups differ); the message says why and what to change."""


# --- decisions (pure) -----------------------------------------------------------------------
@dataclass(frozen=True)
class Holder:
    """Who held a client id when we looked."""

    instance: str
    heartbeat_at: float


@dataclass(frozen=True)
class Sharing:
    """How a replica takes shared work from the broker (None: not at all)."""

    report_group: str | None  # mqtt.shared_group, if it takes device reports
    artifact_group: str | None  # artifacts.shared_group, if it serves artifact requests
    takes_reports: bool
    serves_artifacts: bool

    def digest(self) -> str:
        if not (self.takes_reports or self.serves_artifacts):
            return ""
        doc = {"reports": self.report_group if self.takes_reports else None,
               "artifacts": self.artifact_group if self.serves_artifacts else None}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def sharing_problem(mine: Sharing, others: dict[str, str]) -> str | None:
    """Why this replica must not run beside ``others`` (client id -> sharing digest of
    the live replicas), or None."""
    working = sorted(c for c, digest in others.items() if digest)
    if not working or not mine.digest():
        return None
    names = ", ".join(working)
    if mine.takes_reports and mine.report_group is None:
        return (f"mqtt.shared_group is not set but replica(s) {names} already run: every "
                "replica would process every device report; give all replicas the same group")
    if mine.serves_artifacts and mine.artifact_group is None:
        return (f"artifacts.shared_group is not set but replica(s) {names} already run: every "
                "replica would answer every artifact request; give all replicas the same group")
    differ = [c for c in working if others[c] != mine.digest()]
    if differ:
        return (f"mqtt.shared_group / artifacts.shared_group differ from those of running "
                f"replica(s) {', '.join(differ)}: replicas in different groups each get a copy "
                "of every message; give all replicas the same groups")
    return None


def must_watch(holder: Holder | None, now: float, stale_after: float) -> bool:
    """A holder whose last heartbeat is recent may be alive: watch it before claiming."""
    return holder is not None and now - holder.heartbeat_at < stale_after


def holder_is_alive(first: Holder, second: Holder | None) -> bool:
    """Alive if its heartbeat moved (or another process claimed the id) while we watched."""
    return second is not None and second != first


# --- the registry (I/O) ---------------------------------------------------------------------
class ReplicaRegistry:
    def __init__(self, db: Database, client_id: str, *, heartbeat_s: float,
                 stale_after_s: float, api: str, sharing: Sharing | None = None,
                 counters: Callable[[], dict[str, Any]] = dict,
                 on_superseded: Callable[[], None] = lambda: None) -> None:
        self.db = db
        self.client_id = client_id
        self.instance = uuid.uuid4().hex
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.api = api
        self.sharing = sharing or Sharing(None, None, takes_reports=False,
                                          serves_artifacts=False)
        self.counters = counters
        self.on_superseded = on_superseded
        self.started_at = time.time()
        self.claimed = False
        self.superseded = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat_loop, name="replica-heartbeat",
                                        daemon=True)

    def _holder(self) -> tuple[Holder | None, ReplicaRow | None]:
        with self.db.session() as session:
            row = session.get(ReplicaRow, self.client_id)
            if row is None:
                return None, None
            session.expunge(row)
            return Holder(row.instance, row.heartbeat_at), row

    def claim(self) -> None:
        """Take the client id, or raise :class:`ReplicaConflict` (see the module docstring)."""
        for _attempt in range(3):
            holder, row = self._holder()
            if holder is not None and must_watch(holder, time.time(), self.stale_after_s):
                # Two heartbeats' time: a live holder renews at least once meanwhile.
                time.sleep(2 * self.heartbeat_s + 0.2)
                again, row_now = self._holder()
                if holder_is_alive(holder, again):
                    raise ReplicaConflict(self._in_use_message(row_now or row))
            problem = sharing_problem(self.sharing, self._live_others())
            if problem is not None:
                raise ReplicaConflict(problem)
            if self._take(holder):
                self.claimed = True
                log.info("replica %s registered (instance %s)", self.client_id, self.instance)
                return
        raise ReplicaConflict(f"mqtt.client_id {self.client_id!r}: other processes keep "
                            "claiming it; give each replica its own client_id")

    def _live_others(self) -> dict[str, str]:
        now = time.time()
        with self.db.session() as session:
            return {r.client_id: r.sharing for r in session.scalars(select(ReplicaRow))
                    if r.client_id != self.client_id
                    and now - r.heartbeat_at < self.stale_after_s}

    def _in_use_message(self, row: ReplicaRow | None) -> str:
        who = "" if row is None else (f" (host {row.host}, pid {row.pid}, API {row.api}, "
                                      f"started {time.ctime(row.started_at)})")
        return (f"mqtt.client_id {self.client_id!r} is in use by another running replica{who}: "
                "give each replica its own client_id (it names the replica's MQTT session and "
                "its rollout lease; two processes with one id would take each other's broker "
                "session over and both drive rollouts)")

    def _take(self, holder: Holder | None) -> bool:
        """Insert our row, or replace ``holder``'s if it is still as we saw it."""
        now = time.time()
        values = {"instance": self.instance, "host": socket.gethostname(), "pid": os.getpid(),
                  "api": self.api, "started_at": self.started_at, "heartbeat_at": now,
                  "counters": {}, "sharing": self.sharing.digest()}
        try:
            with self.db.session() as session:
                if holder is None:
                    session.add(ReplicaRow(client_id=self.client_id, **values))
                    session.flush()
                    return True
                taken = session.execute(update(ReplicaRow).where(
                    ReplicaRow.client_id == self.client_id,
                    ReplicaRow.instance == holder.instance,
                    ReplicaRow.heartbeat_at == holder.heartbeat_at).values(**values)).rowcount  # type: ignore[attr-defined]
                return bool(taken)
        except IntegrityError:  # another process inserted the id at the same moment
            return False

    def start(self) -> None:
        if not self.claimed:
            raise RuntimeError("claim() the client id before starting the heartbeat")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self.claimed and not self.superseded:
            try:
                with self.db.session() as session:
                    session.execute(delete(ReplicaRow).where(
                        ReplicaRow.client_id == self.client_id,
                        ReplicaRow.instance == self.instance))
            except Exception:  # the row goes stale by itself
                log.warning("could not unregister replica %s", self.client_id, exc_info=True)
        self.claimed = False

    def beat(self) -> None:
        """Renew the heartbeat (with the counters); notice being superseded."""
        with self.db.session() as session:
            renewed = session.execute(update(ReplicaRow).where(
                ReplicaRow.client_id == self.client_id,
                ReplicaRow.instance == self.instance).values(
                    heartbeat_at=time.time(), counters=self.counters())).rowcount  # type: ignore[attr-defined]
            if renewed:
                return
            row = session.get(ReplicaRow, self.client_id)
            if row is None:  # removed by hand: register again
                session.add(ReplicaRow(
                    client_id=self.client_id, instance=self.instance, host=socket.gethostname(),
                    pid=os.getpid(), api=self.api, started_at=self.started_at,
                    heartbeat_at=time.time(), counters=self.counters(),
                    sharing=self.sharing.digest()))
                return
            other = f"host {row.host}, pid {row.pid}"
        self.superseded = True
        self._stop.set()
        log.error("mqtt.client_id %r was claimed by another process (%s) while this one "
                  "stalled: stopping MQTT and rollout driving here; restart this replica with "
                  "its own client_id", self.client_id, other)
        self.on_superseded()

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.beat()
            except Exception:  # the database may be away; the next beat tries again
                log.warning("replica heartbeat failed", exc_info=True)


def replicas_view(db: Database, stale_after_s: float, now: float | None = None
                  ) -> list[dict[str, Any]]:
    """Every registered replica, with whether its heartbeat is recent (``alive``)."""
    now = time.time() if now is None else now
    with db.session() as session:
        rows = list(session.scalars(select(ReplicaRow).order_by(ReplicaRow.client_id)))
        return [{"client_id": r.client_id, "instance": r.instance, "host": r.host,
                 "pid": r.pid, "api": r.api, "started_at": r.started_at,
                 "heartbeat_age_s": round(now - r.heartbeat_at, 3),
                 "alive": now - r.heartbeat_at < stale_after_s,
                 "counters": dict(r.counters or {})} for r in rows]
