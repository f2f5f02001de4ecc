"""The outbox sender when paho refuses a publish because its bounded queue is full
(query replies share it; review, December 2026): it waits for an ack or a moment instead
of reading the spool and publishing again in a tight loop, and sends once there is room.
The link is a stand-in with paho's own return codes; the spool is the real one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt

from agent.metrics import Counters
from agent.sender import OutboxSender
from agent.spool import Spool


class QueueFullLink:
    """Answers MQTT_ERR_QUEUE_SIZE until ``room`` is set, then queues the message."""

    def __init__(self) -> None:
        self.connected = threading.Event()
        self.connected.set()
        self.room = threading.Event()
        self.calls = 0
        self.sent: list[str] = []

    def on_ack(self, fn: Callable[[int, bool], None]) -> None:
        pass

    def on_up(self, fn: Callable[[], None]) -> None:
        pass

    def on_down(self, fn: Callable[[], None]) -> None:
        pass

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                props: object = None) -> mqtt.MQTTMessageInfo:
        self.calls += 1
        info = mqtt.MQTTMessageInfo(self.calls)
        if self.room.is_set():
            self.sent.append(topic)
            info.rc = mqtt.MQTT_ERR_SUCCESS
        else:
            info.rc = mqtt.MQTT_ERR_QUEUE_SIZE
        return info


def test_a_full_paho_queue_is_waited_out_not_spun_on(tmp_path: Path) -> None:
    counters = Counters()
    spool = Spool(tmp_path / "outbox.db", 1000, 10**7, counters)
    spool.commit([("nanofleet/v1/dev/d/results/logs", b"{}")], {})
    link = QueueFullLink()
    sender = OutboxSender(spool, link, counters, window=20)  # type: ignore[arg-type]
    sender.start()
    try:
        time.sleep(1.0)
        assert 1 <= link.calls <= 40, link.calls  # before: ~13,000 in a second
        assert counters.get("publish_retries") == link.calls
        link.room.set()
        deadline = time.monotonic() + 5
        while not link.sent and time.monotonic() < deadline:
            time.sleep(0.01)
        assert link.sent == ["nanofleet/v1/dev/d/results/logs"]
    finally:
        sender.stop()
        spool.close()
