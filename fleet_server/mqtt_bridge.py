"""The fleet server's MQTT v5 report sessions (paho-mqtt 2.x, VERSION2 callbacks).

- subscribes to every device's reports (as the shared subscription
  ``$share/<group>/...`` when configured, so replicas split reports) on two sessions,
  :data:`LANES`: statuses and OTA events on the server's own client id, metrics and
  alerts on ``<client id>-bulk``. The broker keeps a bounded queue per session and
  drops what overflows it (fleet_server.broker_config); one device certificate that
  floods its metrics faster than the server reads them (review, December 2026) used to
  fill the one queue every report travelled in, and other devices' statuses were
  dropped with the flood. Now such a flood fills the bulk lane's queue only: statuses
  and OTA events, which drive the inventory and rollouts, keep their own;
- hands received reports, in batches, to an ingest callback on its own thread
  (paho's network thread only enqueues; a full queue pushes back on the broker), and
  acknowledges each report (PUBACK) only after the batch holding it was stored, so a
  report is never acknowledged and then lost with the process;
- publishes retained desired-state documents and waits for the broker's PUBACK;
- calls ``on_connected`` after every successful (re)connect of the first lane's
  session, on a separate thread, so the server can re-publish what the broker missed
  while it was away.

Alone (no shared group) each session is persistent (clean_start false, an hour's
expiry): QoS 1 reports sent while the server restarts wait in the broker. As one of
several replicas (shared group) the session ends with the connection: a broker keeps
giving a member with a persistent session its turn while it is away (Mosquitto 2.0
does: a killed member took 10 of 20 reports into its offline session), so the reports
of a dead replica would wait for it instead of going to the live ones. A clean stop
unsubscribes first and stores and acknowledges everything received before it
disconnects; a killed replica loses what it had received but not yet acknowledged (at
most ``RECEIVE_MAXIMUM`` per session), unless the broker hands such messages to another member.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from contract.limits import PACKET_OVERHEAD_BYTES
from contract.topics import device_id_from_topic
from fleet_server.config import MqttSettings
from fleet_server.device_reports import MAX_REPORT_BYTES, Report, ReportRejected, parse_report
from fleet_server.flood_alarm import FloodAlarm
from fleet_server.mqtt_client import build_client, connect
from fleet_server.report_budget import LogBudget, PendingBudget
from fleet_server.report_lanes import (
    LANES,
    REPORT_KINDS,
    Lane,
    report_filters,
    session_expiry_s,
)

log = logging.getLogger("nanofleet.server.mqtt")

BATCH_MAX = 500
QUEUE_MAX = 50_000
RECEIVE_MAXIMUM = 1000  # reports the broker may send before we acknowledge (2 batches)
UNSUBSCRIBE_WAIT_S = 5.0
SESSION_TAKEN_OVER = 142  # MQTT v5 DISCONNECT reason: another client used our client id
MAX_PACKET_BYTES = MAX_REPORT_BYTES + PACKET_OVERHEAD_BYTES  # announced in CONNECT

ReportsHandler = Callable[[list[Report]], None]


@dataclass(frozen=True)
class Received:
    """A report as it came off the wire, with what it takes to acknowledge it later."""

    topic: str
    payload: bytes
    received_at: float
    mid: int
    qos: int
    connection: int  # which connection brought it: an ack is only valid on that one
    device: str  # whose budget it counts against (fleet_server.report_budget)
    lane: int  # index in LANES: the session that must acknowledge it


@dataclass
class BridgeCounters:
    received: int = 0
    rejected: int = 0
    ingested: int = 0
    ingest_failures: int = 0
    shed: int = 0  # over their device's budget: acknowledged and dropped unread
    floods: int = 0  # times a device was found flooding (FloodWatch)
    connects: int = 0
    session_takeovers: int = 0
    last_rejection: str | None = None
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {"received": self.received, "rejected": self.rejected,
                    "ingested": self.ingested, "ingest_failures": self.ingest_failures,
                    "shed": self.shed, "floods": self.floods,
                    "connects": self.connects, "session_takeovers": self.session_takeovers,
                    "last_rejection": self.last_rejection,
                    "last_error": self.last_error}


class _Session:
    """One lane's paho client and what its callbacks need to tell connections apart."""

    def __init__(self, index: int, lane: Lane, client_id: str, client: mqtt.Client) -> None:
        self.index = index  # in LANES
        self.lane = lane
        self.client_id = client_id
        self.client = client
        self.connection = 0  # bumped on every connect (network thread)
        self.connected = threading.Event()
        self.unsubscribed = threading.Event()  # the broker confirmed the stop's unsubscribe
        # The unsubscribes every connect sends (_on_connect, on this network thread, so
        # recorded before their UNSUBACK can be read; the stop's id is known only after
        # paho has sent it, and the answer may come first).
        self.connect_unsubscribes: set[int] = set()

    def on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                       *_rest: Any) -> None:
        if mid in self.connect_unsubscribes:
            self.connect_unsubscribes.discard(mid)
        else:
            self.unsubscribed.set()


class MqttBridge:
    def __init__(self, settings: MqttSettings, on_reports: ReportsHandler,
                 on_connected: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.on_reports = on_reports
        self.on_connected = on_connected
        self.counters = BridgeCounters()
        self._queue: queue.Queue[Received | None] = queue.Queue(QUEUE_MAX)
        self._budget = PendingBudget()
        self._log_budget = LogBudget()
        # a device shed on and on is flooding: the server quarantines it (on_flood)
        self.flood_alarm = FloodAlarm(settings.flood_shed_reports, settings.flood_min_s, log,
                                      "", "reports")
        self._worker = threading.Thread(target=self._ingest_loop, name="mqtt-ingest",
                                        daemon=True)
        self._sessions = [self._session(i, lane) for i, lane in enumerate(LANES)]
        self.client = self._sessions[0].client  # the one that publishes
        self.connected = self._sessions[0].connected

    def _session(self, index: int, lane: Lane) -> _Session:
        client_id = self.settings.client_id + lane.client_id_suffix
        c = build_client(self.settings, client_id, max_queued=10_000, manual_ack=True)
        session = _Session(index, lane, client_id, c)
        c.on_connect = lambda *args: self._on_connect(session, *args)
        c.on_disconnect = lambda *args: self._on_disconnect(session, *args)
        c.on_message = lambda _c, _u, msg: self._on_message(session, msg)
        c.on_unsubscribe = session.on_unsubscribe
        return session

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._worker.start()
        for session in self._sessions:
            # The broker drops a report over our limit instead of sending it: parse_report's
            # own size check never sees a 256 MB payload.
            connect(session.client, self.settings, max_packet_bytes=MAX_PACKET_BYTES,
                    clean_start=False, receive_maximum=RECEIVE_MAXIMUM,
                    session_expiry_s=session_expiry_s(self.settings.shared_group))

    def stop(self) -> None:
        """Stop taking reports (unsubscribe), store and acknowledge those received, then
        disconnect: nothing the broker handed us is lost on a clean stop."""
        waiting = []
        for session in self._sessions:
            if session.connected.is_set():
                session.unsubscribed.clear()
                session.client.unsubscribe(report_filters(self.settings.shared_group,
                                                          session.lane.kinds))
                waiting.append(session)
        deadline = time.monotonic() + UNSUBSCRIBE_WAIT_S
        for session in waiting:
            if not session.unsubscribed.wait(max(0.0, deadline - time.monotonic())):
                log.warning("broker did not confirm the unsubscribe of %r in %.0f s",
                            session.client_id, UNSUBSCRIBE_WAIT_S)
        self._queue.put(None)
        if self._worker.is_alive():
            self._worker.join(timeout=10)
        for session in self._sessions:
            session.client.disconnect()  # after the acknowledgements, sent in order
            session.client.loop_stop()
            session.connected.clear()

    def health(self) -> dict[str, Any]:
        """Connected only when every lane is; the counters cover all lanes."""
        sessions = {s.client_id: s.connected.is_set() for s in self._sessions}
        return {"connected": all(sessions.values()), "sessions": sessions,
                **self.counters.as_dict()}

    def wait_connected(self, timeout: float) -> bool:
        """True once every lane's session is connected."""
        deadline = time.monotonic() + timeout
        return all(s.connected.wait(max(0.0, deadline - time.monotonic()))
                   for s in self._sessions)

    # --- publishing ----------------------------------------------------------------------
    def publish_retained_many(self, messages: Sequence[tuple[str, bytes]],
                              timeout: float) -> list[bool]:
        """Publish retained at QoS 1; True for each message the broker acknowledged in time."""
        if not self.connected.is_set():
            return [False] * len(messages)
        infos: list[mqtt.MQTTMessageInfo | None] = []
        for topic, payload in messages:
            info = self.client.publish(topic, payload, qos=1, retain=True)
            infos.append(info if info.rc == mqtt.MQTT_ERR_SUCCESS else None)
        deadline = time.monotonic() + timeout
        results = []
        for pending in infos:
            if pending is None:
                results.append(False)
                continue
            try:
                pending.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                results.append(False)
                continue
            results.append(pending.is_published())
        return results

    # --- paho callbacks (network threads) --------------------------------------------
    def _on_connect(self, session: _Session, client: mqtt.Client, userdata: Any, flags: Any,
                    rc: ReasonCode, props: Properties | None = None) -> None:
        if rc.is_failure:
            with self.counters.lock:
                self.counters.last_error = f"broker refused the connection: {rc}"
            log.warning("mqtt connect to %s:%d refused (%s): %s", self.settings.host,
                        self.settings.port, session.client_id, rc)
            return
        group = self.settings.shared_group
        client.subscribe([(f, 1) for f in report_filters(group, session.lane.kinds)])
        # The session may have been made by a server that read every kind on it (before
        # the lanes, December 2026): what another lane reads must not come here as well.
        others = [k for k in REPORT_KINDS if k not in session.lane.kinds]
        if others:
            _rc, mid = client.unsubscribe(report_filters(group, others))
            # A new connection: the answers to an earlier one's will never come.
            session.connect_unsubscribes = {mid} if mid is not None else set()
        session.connection += 1
        with self.counters.lock:
            self.counters.connects += 1
            self.counters.last_error = None
        session.connected.set()
        log.info("mqtt connected to %s:%d as %r (the %s lane: %s)", self.settings.host,
                 self.settings.port, session.client_id, session.lane.name,
                 ", ".join(session.lane.kinds))
        if session is self._sessions[0] and self.on_connected is not None:
            # It publishes and waits for PUBACKs, which this (network) thread delivers.
            threading.Thread(target=self._run_on_connected, name="mqtt-on-connect",
                             daemon=True).start()

    def _run_on_connected(self) -> None:
        assert self.on_connected is not None
        try:
            self.on_connected()
        except Exception:
            log.exception("on-connect work failed")

    def _on_disconnect(self, session: _Session, client: mqtt.Client, userdata: Any,
                       flags: Any, rc: ReasonCode, props: Properties | None = None) -> None:
        if rc.value == SESSION_TAKEN_OVER:
            # Someone connected with our client id: a misconfigured replica or another
            # program. paho reconnects and takes it back, and the two fight on.
            with self.counters.lock:
                self.counters.session_takeovers += 1
                self.counters.last_error = (f"session taken over: another client connected "
                                            f"with client id {session.client_id!r}")
            log.error("mqtt session taken over: another client uses client id %r (give "
                      "every replica and program its own)", session.client_id)
        elif session.connected.is_set():
            log.warning("mqtt disconnected (%s): %s", session.client_id, rc)
        session.connected.clear()

    def _on_message(self, session: _Session, msg: mqtt.MQTTMessage) -> None:
        with self.counters.lock:
            self.counters.received += 1
        device = device_id_from_topic(msg.topic) or "?"
        if not self._budget.admit(device, len(msg.payload)):
            self._shed(session.client, msg, device)
            return
        # Blocks when the ingest thread is behind: back-pressure to the broker, not loss.
        # The arrival time orders a device's statuses (inventory.apply_status).
        self._queue.put(Received(msg.topic, bytes(msg.payload), time.time(), msg.mid, msg.qos,
                                 session.connection, device, session.index))

    def _shed(self, client: mqtt.Client, msg: mqtt.MQTTMessage, device: str) -> None:
        """A report over its device's budget: acknowledged at once, unread, so the broker's
        queue for us keeps draining and other devices' reports get through."""
        if msg.qos > 0:
            client.ack(msg.mid, msg.qos)
        with self.counters.lock:
            self.counters.shed += 1
        self._log(device, "device %r has %d reports (%d bytes) waiting to be stored: a "
                  "report dropped unread", device, *self._budget.pending(device))
        if self.flood_alarm.dropped(device):
            with self.counters.lock:
                self.counters.floods += 1

    # --- ingest thread -----------------------------------------------------------------
    def _next_batch(self) -> list[Received] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < BATCH_MAX:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # handle the stop after this batch
                break
            batch.append(item)
        return batch

    def _ingest_loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            reports = []
            for item in batch:
                try:
                    reports.append(parse_report(item.topic, item.payload, item.received_at))
                except ReportRejected as exc:
                    with self.counters.lock:
                        self.counters.rejected += 1
                        self.counters.last_rejection = str(exc)
                    # %r: the text quotes the device's own field names (review,
                    # December 2026); the log formatter escapes the rest.
                    self._log(item.device, "device report refused: %r", str(exc))
            if reports:
                self._deliver(reports)
            self._acknowledge(batch)
            for item in batch:
                self._budget.release(item.device, len(item.payload))

    def _log(self, device: str, message: str, *args: object) -> None:
        """A warning about what ``device`` sent, at most a few a minute per device."""
        allowed, held_back = self._log_budget.allow(device, time.time())
        if held_back:
            log.warning("%d more warnings about device %r were not logged in its last "
                        "minute (see the counters in /api/v1/health/detail)", held_back, device)
        if allowed:
            log.warning(message, *args)

    def _acknowledge(self, batch: list[Received]) -> None:
        """PUBACK what this batch brought: stored, refused as invalid, or given up on."""
        for item in batch:
            session = self._sessions[item.lane]
            # A redelivery on a later connection carries its own packet id; acknowledging
            # an old id there could confirm a message we have not read yet.
            if item.qos > 0 and item.connection == session.connection:
                session.client.ack(item.mid, item.qos)

    def _deliver(self, reports: list[Report]) -> None:
        if self._store(reports, attempts=3):
            return
        failed = reports
        if len(reports) > 1:
            # One report the database refuses (a value the contract let through but a
            # column cannot hold) must not take other devices' reports with it: each is
            # stored on its own, and only those that still fail are dropped.
            log.warning("storing the %d reports of a failed batch one by one", len(reports))
            failed = [r for r in reports if not self._store([r], attempts=1)]
        if failed:
            with self.counters.lock:
                self.counters.ingest_failures += len(failed)
            log.error("dropped %d device reports the database did not take", len(failed))

    def _store(self, reports: list[Report], attempts: int) -> bool:
        """Store ``reports`` in one transaction, trying up to ``attempts`` times."""
        for attempt in range(1, attempts + 1):
            try:
                self.on_reports(reports)
            except Exception as exc:
                log.warning("storing %d device reports failed (attempt %d): %s",
                            len(reports), attempt, exc)
                with self.counters.lock:
                    self.counters.last_error = f"ingest: {exc}"
                if attempt < attempts:
                    time.sleep(0.2 * attempt)
                continue
            with self.counters.lock:
                self.counters.ingested += len(reports)
            return True
        return False
