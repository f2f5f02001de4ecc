"""Lines from MQTT topics (sensor text): each payload is one or more lines.

On a broker named by ``host``: a paho-mqtt 2.x client of its own (MQTT v5),
reconnecting with backoff and re-subscribing on every connect. At QoS 1 it is at
least once: its network thread queues a message's lines with back-pressure (the
connection is this source's alone), and the message is acknowledged to the broker
only once its last line is committed (``Line.ack``); the broker holds the rest
(persistent session, no clean start: across our restarts too).

On the agent's own broker the source rides on the agent's connection, which
acknowledges on arrival (its control traffic must not wait behind sensor lines):
lines go in with ``block=False`` from paho's thread and a full queue means a counted
drop (``lines_dropped``); a persistent session lets the broker hold QoS 1 messages
across short disconnects. Nothing can be re-read, so there is no checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.metrics import Counters
from agent.mqtt_client import build_client, connect, tls_kwargs
from agent.sources.base import LineSink, Source
from agent.sources.mqtt_topic_config import MqttTopicSourceConfig, source_broker
from contract.topics import device_root

log = logging.getLogger("nanofleet.agent.sources")

if TYPE_CHECKING:  # agent.config imports this module
    from agent.config import MqttConfig


class SharedLink(Protocol):
    """The agent's connection to its own broker (agent.mqtt_link.MqttLink)."""

    connected: threading.Event
    connect_count: int

    def handle(self, topic: str, handler: Callable[[mqtt.MQTTMessage], None],
               qos: int = 1) -> None: ...
    def unhandle(self, topic: str) -> None: ...


@dataclass(frozen=True)
class AgentBroker:
    """The agent's own broker, for MQTT sources that name no broker: its settings and,
    in the daemon, the agent's connection to it, which such sources share (the
    production broker gives a device identity one session: a second connection with
    the device's certificate would take the agent's session over)."""

    settings: MqttConfig
    client_id_prefix: str = "nanofleet"
    link: SharedLink | None = None
    device_id: str | None = None  # whose own topics a source never reads


def _printable(topic: str) -> str:
    """``topic`` with control characters shown as ``?``."""
    return topic if topic.isprintable() else "".join(
        c if c.isprintable() else "?" for c in topic)


# The most of a topic put before its lines (include_topic): real sensor topics are far
# shorter, and the line's own text must still fit in max_line_bytes.
MAX_TOPIC_PREFIX_CHARS = 200

# The longest a stopped source keeps its connection for acknowledgements (the daemon
# closes it once the pipeline drained: at most its 10 s reload drain).
CLOSE_WAIT_S = 15.0


def _client_id(prefix: str, name: str, topics: list[str]) -> str:
    # Source names contain '/', '#' and ':'; a hash keeps the id short and valid. The
    # topics are in it because the broker keeps a persistent session's subscriptions: a
    # filter taken out of the config would otherwise go on delivering to the new one.
    key = "\0".join([name, *sorted(topics)])
    return f"{prefix}-src-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


class MqttTopicSource(Source):
    kind = "mqtt"

    def __init__(self, name: str, cfg: MqttTopicSourceConfig, sink: LineSink,
                 counters: Counters, max_line_bytes: int, agent: AgentBroker) -> None:
        super().__init__(name, sink, counters, max_line_bytes)
        self.cfg = cfg
        own_broker = cfg.host is None
        self.settings = source_broker(cfg, agent.settings)
        self.host, self.port = self.settings.host, self.settings.port
        self.tls = tls_kwargs(self.settings)
        self.agent = agent
        # On the agent's own broker (same host and port) the agent's link carries us.
        self.link = agent.link if own_broker and self.port == agent.settings.port else None
        # Config refuses filters that match the agent's own topics; a bridge may still
        # bring them from another broker.
        self._own_root = f"{device_root(agent.device_id)}/" if agent.device_id else None
        self.connected = False
        self.subscribed = False
        self.connects = 0
        self.messages = 0
        self.lines_dropped = 0
        self.last_disconnect: str | None = None
        self._lock = threading.Lock()  # paho's thread vs. describe()
        # At least once, on a broker of its own (see _run): the client that acknowledges
        # a message once its last line is committed (Line.ack), and which connection a
        # message came on (its id means something only there).
        self._client: mqtt.Client | None = None
        self._connection = 0
        # Stopped with keep_open: the connection stays for the drained lines' acks.
        self._close = threading.Event()

    def _run(self, checkpoint: str | None) -> None:
        if self.link is not None:
            self._run_on_link(self.link)
            return
        # A broker of its own: a QoS 1 message is acknowledged only once its lines are
        # committed, so a crash, a kill -9 or a full line queue loses none of them: the
        # broker sends again what was not acknowledged (a persistent session keeps it
        # across our restarts: no clean start). This connection is the source's alone,
        # so its network thread may wait for room in the line queue (the back-pressure:
        # the broker holds the rest; past the keepalive it drops the connection, and
        # sends the unacknowledged again on the next). Not on the agent's own connection
        # (_run_on_link): its queries, desired states and model downloads must not wait
        # behind sensor lines. Receive Maximum bounds what the broker sends ahead (it is
        # not a bound we rely on: Mosquitto 2.0.11 sends one more per acknowledgement).
        manual = self.cfg.qos == 1
        # Bounded queue: this client only subscribes (nothing of ours waits in it).
        client = build_client(self.settings, _client_id(self.agent.client_id_prefix,
                                                        self.name, self.cfg.topics),
                              max_queued=10, manual_ack=manual)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client if manual else None
        # The broker withholds larger messages (MQTT v5 Maximum Packet Size).
        connect(client, self.settings, max_packet_bytes=self.cfg.max_payload_bytes + 1024,
                session_expiry_s=self.cfg.session_expiry_s,
                clean_start=(False if manual and self.cfg.session_expiry_s
                             else mqtt.MQTT_CLEAN_START_FIRST_ONLY),
                receive_maximum=self.cfg.receive_maximum if manual else None)
        try:
            self._stop.wait()
            if manual:  # the lines queued before the stop are acknowledged once drained
                self._close.wait(CLOSE_WAIT_S)
        finally:
            client.disconnect()
            client.loop_stop()
            self.connected = self.subscribed = False

    def stop(self, timeout: float = 5.0, keep_open: bool = False) -> None:
        """``keep_open``: stop taking messages but keep the connection until
        :meth:`close`, so the lines already queued are acknowledged once the pipeline
        commits them (disconnecting first dropped those acknowledgements, and the broker
        sent every such message again: each line classified and alerted twice after
        every clean stop; review, December 2026)."""
        self._stop.set()
        self._wake()
        if not keep_open:
            self.close(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self._close.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _take(self, msg: mqtt.MQTTMessage, ts: float, connection: int) -> None:
        """A message's lines, queued with back-pressure (on this source's own network
        thread); the last one acknowledges it (QoS 1) once committed. Stopped half-way:
        not acknowledged, so sent again."""
        ack = functools.partial(self._ack, msg.mid, msg.qos, connection)
        lines = self._lines_of(msg)
        for i, raw in enumerate(lines):
            last = i == len(lines) - 1
            # Waits like a file (the queue's reserve is for lines nothing can send
            # again: sensor lines on the agent's connection, which a backlog here must
            # not starve; review, December 2026): its broker holds the rest.
            if not self.emit(raw, ts, None, block=True, ack=ack if last else None):
                return
        if not lines:
            ack()

    def _ack(self, mid: int, qos: int, connection: int) -> None:
        """Called by the pipeline once the message's lines are committed. A message id
        means something only on the connection it came on: one of an older connection
        is not acknowledged (the broker sends that message again, under a new id)."""
        client = self._client
        with self._lock:
            current = connection == self._connection and self.connected
        if client is not None and current and qos:
            client.ack(mid, qos)

    def _run_on_link(self, link: SharedLink) -> None:
        for topic in self.cfg.topics:
            link.handle(topic, self._on_link_message, self.cfg.qos)
        try:
            while True:  # the link reconnects and re-subscribes: we only mirror its state
                self.connected = self.subscribed = link.connected.is_set()
                self.connects = link.connect_count
                if self._stop.wait(0.2):
                    break
        finally:
            for topic in self.cfg.topics:
                link.unhandle(topic)
            self.connected = self.subscribed = False

    def _on_link_message(self, msg: mqtt.MQTTMessage) -> None:
        if len(msg.payload) > self.cfg.max_payload_bytes:  # the link accepts chunks: larger
            self.counters.inc("source_errors")
            self.last_error = f"message of {len(msg.payload)} bytes on {msg.topic} dropped"
            return
        self._on_message(None, None, msg)  # type: ignore[arg-type]

    # -- paho callbacks (network thread: never blocks here, except on a broker of its own,
    # -- where it waits for room in the line queue: _take) --------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason_code: ReasonCode, properties: Any) -> None:
        if reason_code.is_failure:  # a refused CONNACK is not a link
            self.connected = False
            self.last_error = f"broker refused the connection: {reason_code}"
            self.counters.inc("source_errors")
            return
        with self._lock:
            self.connected = True
            self.connects += 1
            self._connection += 1
        opts = SubscribeOptions(qos=self.cfg.qos)
        client.subscribe([(t, opts) for t in self.cfg.topics])

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self.last_error = f"cannot connect to {self.host}:{self.port}"

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason_code: ReasonCode, properties: Any) -> None:
        self.connected = self.subscribed = False
        self.last_disconnect = str(reason_code)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[ReasonCode], properties: Any) -> None:
        refused = [f"{t}: {rc}" for t, rc in zip(self.cfg.topics, reason_codes, strict=False)
                   if rc.is_failure]
        if refused:
            self.last_error = f"subscription refused: {'; '.join(refused)}"
            self.counters.inc("source_errors")
        self.subscribed = len(refused) < len(self.cfg.topics)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._handle(msg)
        except Exception as exc:  # paho would swallow it and the message stay unacknowledged:
            # receive_maximum of those and the broker stops sending, silently
            self._drop(msg)
            self.counters.inc("source_errors")
            # Not msg.topic: a topic that is not UTF-8 (another broker, a bridge) raises
            # there, which is how a message can fail in the first place.
            topic = _printable(bytes(msg._topic).decode("utf-8", errors="replace"))
            self.last_error = f"message on {topic[:200]} dropped: {exc!r}"[:500]
            log.exception("MQTT source %s: a message could not be taken", self.name)

    def _handle(self, msg: mqtt.MQTTMessage) -> None:
        ts = time.time()
        if self._stop.is_set() and self._client is not None:
            return  # stopping: not taken, not acknowledged (its broker sends it again)
        if not self._wanted(msg):
            self._drop(msg)
            return
        with self._lock:
            self.messages += 1
            connection = self._connection
        if self._client is not None:
            self._take(msg, ts, connection)
        else:
            self._put_now(msg, ts)

    def _drop(self, msg: mqtt.MQTTMessage) -> None:
        """A message dropped on purpose, acknowledged at once (where acknowledging is
        ours): not to be sent again."""
        if self._client is not None and msg.qos:
            self._client.ack(msg.mid, msg.qos)

    def _wanted(self, msg: mqtt.MQTTMessage) -> bool:
        if msg.retain:
            # The broker's kept last value, sent again at every (re)subscription: not a
            # new line (review, December 2026: classified, and alerted, at every
            # reconnect). A retained message published while we listen arrives unflagged.
            self.counters.inc("lines_retained_skipped")
            return False
        if self._own_root is not None and msg.topic.startswith(self._own_root):
            self.counters.inc("source_errors")
            self.last_error = (f"message on the agent's own topic {_printable(msg.topic)[:200]} "
                               "dropped: a source never reads the agent's output")
            return False
        return True

    def _lines_of(self, msg: mqtt.MQTTMessage) -> list[bytes]:
        """The message's non-blank lines, at most max_lines_per_message (the rest
        counted as dropped), each behind its topic when include_topic."""
        # A topic level matched by a wildcard may hold any character: a newline there
        # would put a forged second line inside this one. And any length (64 KiB): copied
        # before each of 256 lines it made one message 16 MiB, and left no room in a line
        # for the text (review, December 2026). Cut, and marked as cut.
        topic = _printable(msg.topic)
        if len(topic) > MAX_TOPIC_PREFIX_CHARS:
            topic = topic[:MAX_TOPIC_PREFIX_CHARS] + "…"
        prefix = f"{topic}: ".encode() if self.cfg.include_topic else b""
        parts = [part for part in msg.payload.split(b"\n") if part.strip()]
        self._count_dropped(len(parts) - self.cfg.max_lines_per_message)
        return [prefix + part for part in parts[:self.cfg.max_lines_per_message]]

    def _count_dropped(self, dropped: int) -> None:
        if dropped > 0:
            with self._lock:
                self.lines_dropped += dropped
            self.counters.inc("lines_dropped", dropped)

    def _put_now(self, msg: mqtt.MQTTMessage, ts: float) -> None:
        """On paho's thread, which must not wait: a full line queue drops the rest."""
        taken = self._lines_of(msg)
        for i, part in enumerate(taken):
            if not self.emit(part, ts, None, block=False):
                # The queue is full: the rest of this message would be refused too, so
                # it is counted at once rather than each line made and refused (review,
                # December 2026: 0.7 s of CPU for one 256 KiB message of short lines).
                self._count_dropped(len(taken) - i)
                break

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        with self._lock:
            messages, dropped = self.messages, self.lines_dropped
        info.update({"broker": f"{self.host}:{self.port}", "tls": self.tls is not None,
                     "topics": list(self.cfg.topics), "qos": self.cfg.qos,
                     "connected": self.connected, "subscribed": self.subscribed,
                     "connects": self.connects, "last_disconnect": self.last_disconnect,
                     "messages": messages, "lines_dropped": dropped,
                     "acknowledged_when_committed": self._client is not None})
        return info
