"""The agent's broker link numbers its CONNECT attempts and puts the number in the Last
Will it registers with each one (agent/mqtt_link.py), so the fleet server can order a Will
against the next connection's statuses (fleet_server/inventory.py). Real Mosquitto, real
paho, a relay that can lose a CONNACK."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

from agent.config import MqttConfig
from agent.mqtt_link import MqttLink
from contract.messages import Status
from fleet_server.db import Device
from fleet_server.inventory import apply_status
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector

TOPIC = "nanofleet/v1/dev/d1/status"


class ConnackEater:
    """A TCP relay to the broker that, on its connection number ``eat`` (0-based), resets
    both sides when the broker's first bytes (the CONNACK) come back: the broker has
    accepted the CONNECT and registered its Will, the client never learns it."""

    def __init__(self, broker_port: int, eat: int) -> None:
        self.broker_port, self.eat = broker_port, eat
        self.accepted = 0
        self.live: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                dev, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(dev, self.accepted), daemon=True).start()
            self.accepted += 1

    def _relay(self, dev: socket.socket, index: int) -> None:
        broker = socket.create_connection(("127.0.0.1", self.broker_port))
        self.live += [dev, broker]
        try:
            while True:
                readable, _, _ = select.select([dev, broker], [], [], 0.5)
                for src in readable:
                    data = src.recv(65536)
                    if not data or (src is broker and index == self.eat):
                        raise OSError("reset")
                    (broker if src is dev else dev).sendall(data)
        except OSError:
            for s in (dev, broker):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def reset_all(self) -> None:
        for s in list(self.live):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()
        self.reset_all()


def test_a_lost_connack_does_not_leave_the_next_connection_offline(broker: Mosquitto) -> None:
    """Review, December 2026: the Will was re-armed only after a CONNACK, so a CONNECT whose
    CONNACK was lost and its retry carried the same number; the broker's Will for the lost
    one sorted after the retry's statuses and the server showed the device offline for its
    whole connection. Attempts are numbered instead: every CONNECT its own Will."""
    relay = ConnackEater(broker.port, eat=1)  # the first reconnect's CONNACK is lost
    sub = Collector(broker.port, TOPIC)
    started = time.time()
    seq = [0]

    def will(n: int) -> tuple[str, bytes]:
        return TOPIC, Status(seq=0, device_id="d1", state="offline", started_at=started,
                             connection=n).model_dump_json().encode()

    link = MqttLink(MqttConfig(host="127.0.0.1", port=relay.port, reconnect_max_s=1),
                    "nanofleet-d1", will=will)

    def online() -> None:
        seq[0] += 1
        link.publish(TOPIC, Status(seq=seq[0], device_id="d1", state="online",
                                   started_at=started, connection=link.connection
                                   ).model_dump_json().encode(), retain=True)

    link.on_up(online)
    link.start()
    try:
        assert link.connected.wait(10) and link.connection == 1
        time.sleep(0.3)
        relay.reset_all()  # connection 1 lost; attempt 2's CONNACK is eaten; attempt 3 works

        def statuses(messages: list) -> list[Status]:
            return [Status.model_validate_json(m.payload) for m in messages]

        got = statuses(sub.wait_for(lambda ms: any(
            s.state == "online" and s.connection >= 3 for s in statuses(ms)), timeout=30))
        time.sleep(0.5)  # the Will of attempt 2, if the broker sends it late
        got = statuses(sub.on(TOPIC))
        assert link.connection >= 3 and relay.accepted >= 3
        wills = sorted({s.connection for s in got if s.state == "offline"})
        assert wills[:2] == [1, 2], got  # each lost connection's Will names its own attempt
        device = Device(device_id="d1", models=[], metrics={}, tags=[], state="unknown",
                        agent_version="", health="unknown")
        for i, status in enumerate(got):
            apply_status(device, status, 100.0 + i)
        assert device.state == "online", [(s.state, s.connection, s.seq) for s in got]
        # In whatever order the replicas stamp them.
        device = Device(device_id="d1", models=[], metrics={}, tags=[], state="unknown",
                        agent_version="", health="unknown")
        for i, status in enumerate(sorted(got, key=lambda s: s.state == "offline")):
            apply_status(device, status, 100.0 + i)
        assert device.state == "online"
    finally:
        link.stop()
        sub.close()
        relay.close()


def test_a_handler_added_while_the_link_connects_is_subscribed(broker: Mosquitto) -> None:
    """Review, December 2026: a handle() from another thread between _on_connect's copy of
    the handlers and the link marked up saw the link down and did not subscribe, and the
    copy did not have it: the topic (an agent's desired state, its artifact chunks) stayed
    unsubscribed until the next reconnect. The window is made certain here: the handler
    is added while _on_connect subscribes what it copied."""
    link = MqttLink(MqttConfig(host="127.0.0.1", port=broker.port, reconnect_max_s=1),
                    "race-1", will=None)
    got: list[bytes] = []
    link.handle("t/early", lambda msg: None)
    subscribe = link.client.subscribe
    added: list[bool] = []

    def subscribe_then_race(*args: object, **kwargs: object) -> object:
        if not added:
            added.append(True)
            late = threading.Thread(target=link.handle,
                                    args=("t/late", lambda msg: got.append(msg.payload)))
            late.start()
            late.join(5)
        return subscribe(*args, **kwargs)  # type: ignore[arg-type]

    link.client.subscribe = subscribe_then_race  # type: ignore[method-assign]
    link.start()
    pub = Collector(broker.port, "unused/never")
    try:
        assert link.connected.wait(10) and added
        deadline = time.monotonic() + 10
        while not got:
            assert time.monotonic() < deadline, "t/late was never subscribed"
            pub.publish("t/late", b"desired")
            time.sleep(0.2)
        assert got[0] == b"desired"
    finally:
        pub.close()
        link.stop()
