"""The agent's one MQTT v5 connection (paho-mqtt 2.x, VERSION2 callbacks).

Owns connect/reconnect, TLS, the Last Will (retained "offline" status), topic
handlers that are re-subscribed on every connect, and PUBACK notification for
the outbox sender. The link is "up" only after a *successful* CONNACK.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.config import MqttConfig

log = logging.getLogger("nanofleet.agent.mqtt")

MessageHandler = Callable[[mqtt.MQTTMessage], None]


def tls_kwargs(cfg: MqttConfig) -> dict[str, Any] | None:
    if cfg.tls is None:
        return None
    return {"ca_certs": str(cfg.tls.ca_file),
            "certfile": str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
            "keyfile": str(cfg.tls.key_file) if cfg.tls.key_file else None,
            "cert_reqs": ssl.CERT_REQUIRED, "tls_version": ssl.PROTOCOL_TLS_CLIENT}


class MqttLink:
    def __init__(self, cfg: MqttConfig, client_id: str, will: tuple[str, bytes] | None,
                 max_queued: int = 1000) -> None:
        self.cfg = cfg
        self.connected = threading.Event()
        self.connect_count = 0
        self.last_error: str | None = None
        self._handlers: dict[str, tuple[int, MessageHandler]] = {}
        self._on_up: list[Callable[[], None]] = []
        self._on_down: list[Callable[[], None]] = []
        self._on_ack: Callable[[int, bool], None] = lambda mid, ok: None
        self._lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.max_inflight_messages_set(cfg.max_inflight)
        # Bounded: the durable copy of every result is in our spool, not in paho's queue.
        c.max_queued_messages_set(max_queued)
        c.reconnect_delay_set(1, cfg.reconnect_max_s)
        if cfg.username:
            c.username_pw_set(cfg.username,
                              cfg.password.get_secret_value() if cfg.password else None)
        tls = tls_kwargs(cfg)
        if tls:
            c.tls_set(**tls)
        if will:
            c.will_set(will[0], will[1], qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        self.client = c

    # --- wiring ------------------------------------------------------------------------
    def handle(self, topic: str, handler: MessageHandler, qos: int = 1) -> None:
        """Subscribe ``topic`` (now if up, and after every reconnect) and route to handler."""
        with self._lock:
            self._handlers[topic] = (qos, handler)
        if self.connected.is_set():
            self.client.subscribe(topic, qos)

    def on_up(self, fn: Callable[[], None]) -> None:
        self._on_up.append(fn)

    def on_down(self, fn: Callable[[], None]) -> None:
        self._on_down.append(fn)

    def on_ack(self, fn: Callable[[int, bool], None]) -> None:
        """``fn(mid, accepted)`` for every PUBACK."""
        self._on_ack = fn

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                props: Properties | None = None) -> mqtt.MQTTMessageInfo:
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
        with self._lock:
            subs = [(t, q) for t, (q, _) in self._handlers.items()]
        if subs:
            client.subscribe(subs)
        self.connect_count += 1
        self.connected.set()
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
            log.warning("broker refused a publish: %s", rc)
        self._on_ack(mid, not rc.is_failure)
