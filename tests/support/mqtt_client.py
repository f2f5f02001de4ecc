"""A small real MQTT v5 client for tests: subscribe, collect, publish."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class Collector:
    def __init__(self, port: int, topics: list[str] | str = "#", host: str = "127.0.0.1",
                 tls: dict[str, Any] | None = None, session: bool = False) -> None:
        """``session=True``: a persistent MQTT v5 session, so a broker with persistence
        keeps queueing for us across its restart."""
        self.messages: list[mqtt.MQTTMessage] = []
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.topics = [topics] if isinstance(topics, str) else topics
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"test-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        connect_props = None
        if session:
            connect_props = Properties(PacketTypes.CONNECT)
            connect_props.SessionExpiryInterval = 3600
        if tls:
            self.client.tls_set(**tls)
        self._subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(host, port, clean_start=not session, properties=connect_props)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("test collector did not subscribe")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any,
                    props: Any = None) -> None:
        client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[list[mqtt.MQTTMessage]], bool],
                 timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met; got {len(self.messages)} messages: "
                                       f"{[m.topic for m in self.messages[-10:]]}")
                self.cond.wait(left)
            return list(self.messages)

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self.lock:
            return [m for m in self.messages if m.topic == topic]

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False,
                props: Properties | None = None) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
