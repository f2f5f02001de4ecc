"""The agent's one MQTT v5 connection to the fleet's broker (built by agent.mqtt_client).

Owns connect/reconnect, the Last Will (retained "offline" status), topic handlers
that are re-subscribed on every connect, and PUBACK notification for the outbox
sender. The link is "up" only after a *successful* CONNACK.

It is the device's only session on that broker: the production broker sets the
client id to the certificate's CN (``use_username_as_clientid``), so a second
connection with the device's identity would take this session over (and be taken
over in turn). Artifacts over MQTT and MQTT sources on the fleet's broker ride on it.

Sizes: CONNECT announces :data:`contract.limits.AGENT_RECEIVE_MAX_BYTES`, so the
broker drops larger messages for us; :meth:`MqttLink.publish` refuses a packet over
the broker's limit (``MQTT_ERR_PAYLOAD_SIZE``) instead of sending it, because the
broker would disconnect us and the outbox would send it again after every reconnect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import MqttConfig
from agent.mqtt_client import build_client, connect, tls_kwargs
from contract.limits import BROKER_MAX_PACKET_BYTES, PACKET_OVERHEAD_BYTES

log = logging.getLogger("nanofleet.agent.mqtt")
REFUSAL_LOG_S = 60.0  # at most one line this often about publishes the broker refused

MessageHandler = Callable[[mqtt.MQTTMessage], None]


__all__ = ["MessageHandler", "MqttLink", "tls_kwargs"]


# The Last Will for a connection, given its number: (topic, payload).
WillFor = Callable[[int], tuple[str, bytes]]


class MqttLink:
    def __init__(self, cfg: MqttConfig, client_id: str, will: WillFor | None,
                 max_queued: int = 1000, first_connection: int = 1) -> None:
        self.cfg = cfg
        self.connected = threading.Event()
        self.connect_count = 0
        # Connection attempts are numbered across the links of one agent run (a reload
        # builds a new link): the Will sent in a CONNECT names the attempt it belongs to,
        # and a connection takes its attempt's number. Attempts, not connections: a CONNECT
        # the broker accepted but whose CONNACK was lost registered a Will the broker will
        # send, and the retry must not carry that Will's number too (review, December 2026).
        self._attempt = first_connection - 1
        self._connection = first_connection - 1
        self._will_for = will
        self.last_error: str | None = None
        self._handlers: dict[str, tuple[int, MessageHandler]] = {}
        self._on_up: list[Callable[[], None]] = []
        self._on_down: list[Callable[[], None]] = []
        self._on_ack: Callable[[int, bool], None] = lambda mid, ok: None
        self._lock = threading.Lock()
        # Refused publishes since the last line about them, and when that line was logged.
        self._refused_unlogged = 0
        self._refusal_logged_at = -REFUSAL_LOG_S
        # The broker's limit on what we send (CONNACK Maximum Packet Size, if it says).
        self.max_send_bytes = BROKER_MAX_PACKET_BYTES
        # Bounded: the durable copy of every result is in our spool, not in paho's queue.
        c = build_client(cfg, client_id, max_queued=max_queued)
        self.client = c
        c.on_pre_connect = self._on_pre_connect
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish

    @property
    def connection(self) -> int:
        """The number of the current (or last) connection; first_connection - 1 before any."""
        return self._connection

    @property
    def next_connection(self) -> int:
        """The number a link built after this one starts from (past every attempt)."""
        return self._attempt + 1

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        """Before every CONNECT (the first one too), on paho's network thread: the Will it
        carries names this attempt."""
        self._attempt += 1
        if self._will_for is not None:
            topic, payload = self._will_for(self._attempt)
            client.will_set(topic, payload, qos=1, retain=True)

    # --- wiring ------------------------------------------------------------------------
    def handle(self, topic: str, handler: MessageHandler, qos: int = 1) -> None:
        """Subscribe ``topic`` (now if up, and after every reconnect) and route to handler."""
        with self._lock:
            self._handlers[topic] = (qos, handler)
        if self.connected.is_set():
            self.client.subscribe(topic, qos)

    def unhandle(self, topic: str) -> None:
        with self._lock:
            known = self._handlers.pop(topic, None) is not None
        if known and self.connected.is_set():
            self.client.unsubscribe(topic)

    def on_up(self, fn: Callable[[], None]) -> None:
        self._on_up.append(fn)

    def on_down(self, fn: Callable[[], None]) -> None:
        self._on_down.append(fn)

    def on_ack(self, fn: Callable[[int, bool], None]) -> None:
        """``fn(mid, accepted)`` for every PUBACK."""
        self._on_ack = fn

    def start(self) -> None:
        connect(self.client, self.cfg)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                props: Properties | None = None) -> mqtt.MQTTMessageInfo:
        """paho's publish; rc MQTT_ERR_PAYLOAD_SIZE (nothing sent) for a packet over the
        broker's limit, which would only get the link disconnected."""
        if len(payload) + len(topic.encode()) + PACKET_OVERHEAD_BYTES > self.max_send_bytes:
            log.error("not publishing %d bytes on %s: over the broker's packet limit (%d)",
                      len(payload), topic[:200], self.max_send_bytes)
            info = mqtt.MQTTMessageInfo(0)
            info.rc = mqtt.MQTT_ERR_PAYLOAD_SIZE
            return info
        return self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)

    # --- paho callbacks (network thread) ---------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None = None) -> None:
        if rc.is_failure:
            # A refused CONNACK is not a link: do not mark connected (see REFERENCE).
            self.last_error = f"broker refused the connection: {rc}"
            log.warning("mqtt connect refused: %s", rc)
            return
        self.last_error = None
        limit = getattr(props, "MaximumPacketSize", None)
        self.max_send_bytes = min(BROKER_MAX_PACKET_BYTES, limit or BROKER_MAX_PACKET_BYTES)
        with self._lock:
            subs = [(t, q) for t, (q, _) in self._handlers.items()]
        if subs:
            client.subscribe(subs)
        self.connect_count += 1
        self._connection = self._attempt
        self.connected.set()
        # A handle() from another thread between the copy above and set() saw the link
        # down and left the subscribing to us, after our copy: it was never subscribed
        # until the next reconnect, maybe weeks (review, December 2026). Any handler added
        # since the copy is subscribed now (one that raced both may be subscribed twice:
        # harmless).
        with self._lock:
            late = [(t, q) for t, (q, _) in self._handlers.items() if (t, q) not in subs]
        if late:
            client.subscribe(late)
        log.info("mqtt connected to %s:%d", self.cfg.host, self.cfg.port)
        for fn in self._on_up:
            try:
                fn()
            except Exception:
                log.exception("on-connect hook failed")

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                       props: Properties | None = None) -> None:
        was_up = self.connected.is_set()
        self.connected.clear()
        if was_up:
            log.warning("mqtt disconnected: %s", rc)
            for fn in self._on_down:
                try:
                    fn()
                except Exception:
                    log.exception("on-disconnect hook failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            handlers = list(self._handlers.items())
        for pattern, (_, handler) in handlers:
            if mqtt.topic_matches_sub(pattern, msg.topic):
                try:
                    handler(msg)
                except Exception:
                    log.exception("handler for %s failed", msg.topic)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode,
                    props: Properties | None = None) -> None:
        if rc.is_failure:
            # e.g. "Not authorized" from the broker's ACL: retrying cannot help; the
            # sender counts it and moves on instead of stalling the outbox.
            self.last_error = f"publish refused: {rc}"
            self._log_refusal(rc)
        self._on_ack(mid, not rc.is_failure)

    def _log_refusal(self, rc: ReasonCode) -> None:
        """The first refusal at once, then one line a minute at most: a device its broker
        refuses for hours (revoked, or quarantined by the fleet server) publishes all the
        while, and a line per publish would flood the journal (journald then drops other
        lines too)."""
        self._refused_unlogged += 1
        now = time.monotonic()
        if now - self._refusal_logged_at >= REFUSAL_LOG_S:
            log.warning("broker refused %d publish(es), the latest: %s (a revoked or "
                        "quarantined device is refused everything: ask its operator; "
                        "counted in publish_refused)", self._refused_unlogged, rc)
            self._refused_unlogged, self._refusal_logged_at = 0, now
