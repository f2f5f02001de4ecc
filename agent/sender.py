"""Sends the outbox to the broker in order and deletes what the broker acknowledged.

At-least-once: after a reconnect everything not yet acknowledged is sent again
(consumers drop duplicates by ``msg_id``). Messages written before the current
connection came up are flagged ``is_historical``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time

from paho.mqtt.client import MQTT_ERR_PAYLOAD_SIZE

from agent.metrics import Counters
from agent.mqtt_link import MqttLink
from agent.spool import Spool
from agent.token_bucket import TokenBucket

log = logging.getLogger("nanofleet.agent.sender")

# PUBACKs are collected and deleted from the outbox in one transaction at most this
# often (or at ACK_FLUSH_COUNT): one DELETE per acknowledged message was most of the
# agent's CPU at low rates. A crash in between only means those messages are sent
# again after restart, which consumers drop by msg_id (at-least-once, as always).
ACK_FLUSH_S = 0.5
ACK_FLUSH_COUNT = 256
# With nothing to send and nothing to flush the sender sleeps until woken (new
# messages, link up/down); this is only a safety net.
IDLE_POLL_S = 5.0
QUEUE_FULL_WAIT_S = 0.05  # paho refused a publish (its queue full): wait this long at most
# Paced reports sent at once before the rate applies: well under the 200 of one device the
# fleet server keeps waiting to be stored (fleet_server/report_budget.py).
REPORT_BURST = 100.0


def mark_historical(payload: bytes) -> bytes:
    try:
        doc = json.loads(payload)
    except ValueError:
        return payload
    if isinstance(doc, dict):
        doc["is_historical"] = True
        return json.dumps(doc, separators=(",", ":")).encode()
    return payload


class OutboxSender:
    def __init__(self, spool: Spool, link: MqttLink, counters: Counters, window: int,
                 paced: frozenset[str] = frozenset(), pacer: TokenBucket | None = None) -> None:
        self.spool = spool
        self.link = link
        self.counters = counters
        self.window = window
        # Reports the fleet server stores (alerts, OTA events) go out at the pacer's rate:
        # it keeps at most 200 of one device waiting and drops the rest unread, and the
        # broker acknowledges them to us all the same. Results (for technicians, not the
        # server) are not paced.
        self.paced, self.pacer = paced, pacer
        self._cond = threading.Condition()
        self._stop = False
        self._inflight: dict[int, int] = {}  # paho mid -> outbox id
        self._acked: list[int] = []
        # PUBACKs that arrived before publish() returned (paho calls back on its own
        # thread; we must not hold our lock across publish() or the two can deadlock).
        # Keyed by mid with the ack's arrival number: PUBACKs of the link's other publishes
        # (status, metrics, query replies, artifact requests) land here too, and paho
        # reuses mids, so an entry counts only if it arrived after our publish() began.
        self._early: dict[int, tuple[int, bool]] = {}
        self._acks_seen = 0
        self._last_sent = 0
        self._connected_at = 0.0
        self._thread = threading.Thread(target=self._run, name="outbox-sender", daemon=True)
        link.on_ack(self._on_ack)
        link.on_up(self._on_up)
        link.on_down(self.wake)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)
        self._flush_acks()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wake(self) -> None:
        """New messages in the spool (or link state changed)."""
        with self._cond:
            self._cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty (used on shutdown). True when it is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._flush_acks()
            if self.spool.depth()[0] == 0:
                return True
            if not self.link.connected.is_set():
                return False
            self.wake()
            time.sleep(0.02)
        return False

    def _on_up(self) -> None:
        with self._cond:
            # Resend everything unacknowledged, oldest first.
            self._inflight.clear()
            self._early.clear()
            self._last_sent = 0
            self._connected_at = time.time()
            self._cond.notify_all()

    def _on_ack(self, mid: int, accepted: bool) -> None:
        with self._cond:
            self._acks_seen += 1
            outbox_id = self._inflight.pop(mid, None)
            if outbox_id is None:
                if len(self._early) >= 4096:  # foreign acks nobody will claim
                    self._early.clear()
                self._early[mid] = (self._acks_seen, accepted)
                return
            self._record_ack(outbox_id, accepted)

    def _record_ack(self, outbox_id: int, accepted: bool) -> None:
        self._acked.append(outbox_id)
        if not accepted:
            self.counters.inc("publish_refused")
        # Wake the sender only when it waits for room in the window or a flush is due;
        # otherwise its timer flushes the acks (see ACK_FLUSH_S).
        if len(self._inflight) == self.window - 1 or len(self._acked) >= ACK_FLUSH_COUNT:
            self._cond.notify_all()

    def _wait_timeout(self) -> float:
        """How long the sender may sleep (lock held): until the next ack flush is due."""
        return ACK_FLUSH_S if self._acked else IDLE_POLL_S

    def _flush_acks(self) -> None:
        with self._cond:
            ids, self._acked = self._acked, []
        if not ids:
            return
        try:
            self.spool.ack(ids)
        except (sqlite3.Error, OSError) as exc:
            # A full disk refused the DELETE (review, December 2026: it killed this thread,
            # and nothing was published again). The acks wait for the next flush; the
            # messages stay in the outbox until then, never sent twice by this process.
            with self._cond:
                self._acked = ids + self._acked
            self.counters.inc("spool_ack_retries")
            log.warning("acknowledged messages not removed from the spool yet (%s)", exc)
            time.sleep(ACK_FLUSH_S)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                room = self.window - len(self._inflight)
                up = self.link.connected.is_set()
                if not up or room <= 0:
                    self._cond.wait(self._wait_timeout())
                else:
                    after, connected_at = self._last_sent, self._connected_at
            self._flush_acks()
            if not up or room <= 0:
                continue
            batch = self.spool.pending(after, room)
            if not batch:
                with self._cond:
                    if not self._stop:
                        self._cond.wait(self._wait_timeout())
                continue
            for msg in batch:
                if self.pacer is not None and msg.topic in self.paced:
                    wait = self.pacer.take(time.monotonic())
                    if wait > 0:  # this one and those behind it, in order, a moment later
                        self.counters.inc("publish_paced")
                        with self._cond:
                            if not self._stop:
                                self._cond.wait(wait)
                        break
                payload = msg.payload
                if msg.created < connected_at:
                    payload = mark_historical(payload)
                    self.counters.inc("replayed")
                with self._cond:
                    acks_before = self._acks_seen
                info = self.link.publish(msg.topic, payload, qos=1)
                if info.rc == MQTT_ERR_PAYLOAD_SIZE:
                    # Over the broker's packet limit: it can never be sent; drop it,
                    # counted, rather than block the outbox behind it forever.
                    self.counters.inc("publish_too_large")
                    with self._cond:
                        self._last_sent = msg.id
                        self._acked.append(msg.id)
                    continue
                if info.rc != 0:
                    # Not connected any more (retried after the reconnect), or paho's queue
                    # is full (query replies share it): wait for an ack or a moment, not
                    # straight back to the spool (review, December 2026: 13,000 reads and
                    # publishes a second while the queue stayed full).
                    self.counters.inc("publish_retries")
                    with self._cond:
                        if not self._stop:
                            self._cond.wait(QUEUE_FULL_WAIT_S)
                    break
                with self._cond:
                    if self._connected_at != connected_at:
                        break  # reconnected meanwhile: _on_up restarted from the oldest
                    self._last_sent = msg.id
                    early = self._early.pop(info.mid, None)
                    if early is not None and early[0] > acks_before:
                        self._record_ack(msg.id, early[1])
                    else:
                        self._inflight[info.mid] = msg.id
