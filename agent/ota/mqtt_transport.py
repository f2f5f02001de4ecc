"""Artifacts over MQTT, device side: :class:`MqttTransport` fetches ``mqtt:<path>`` URLs
as chunked streams from the fleet server, through the device's own broker.

URLs: ``mqtt:metadata/3.root.json``, ``mqtt:targets/models/m/2/<sha256>.m-2.nfb`` —
the repository-relative path (percent-encoded like an HTTP path) after ``mqtt:``;
the broker is the agent's. Protocol: :mod:`contract.artifacts`.

- It rides on the agent's own connection (:class:`agent.mqtt_link.MqttLink`): the
  production broker makes a device's client id its certificate's CN
  (``use_username_as_clientid``), so a second connection under the device's identity
  would take the main session over, and the two would keep kicking each other off.
  One session per device also halves the broker's connections. The chunk topics are
  subscribed on the first fetch and re-subscribed by the link after every reconnect;
  :meth:`MqttTransport.use_link` moves them to the connection a reload replaced it with.
- Flow control: at most ``window`` chunks are asked for beyond what the caller has
  consumed; the next half window is asked for as the first half is consumed.
- Resume: after a reconnect the rest is asked for again from the last byte received
  (duplicates are recognised by offset and dropped); a fetch with ``start`` > 0 (the
  ``.part`` file of :meth:`TufClient.download_target`) starts there.
- A request nothing answered is re-sent after ``retry_s``; no byte for ``timeout``
  raises :class:`TransferTimeout`, and so does an average below ``min_rate`` bytes/s once
  the transfer is ``timeout`` old (as over HTTP: a publisher dripping a chunk now and then
  cannot hold an update for long). ``busy``/``rate-limited`` answers are waited out.
- Memory is bounded whoever publishes on the chunk topic (the server, or a broker that
  is not ours any more): a chunk longer than the ``chunk_size`` asked for is dropped on
  arrival, the inbox holds at most ``4 x window`` chunks, and chunks kept ahead of the
  next expected byte hold at most ``2 x window x chunk_size`` bytes (and the chunk due
  next, taken at once). Dropped chunks are counted (:attr:`MqttTransport.chunks_dropped`)
  and logged; what was honest in them is asked for again.

Integrity is not this module's business: TufClient checks every byte against the
signed lengths and hashes, as for HTTP.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from agent.ota.config import MQTT_URL_PREFIX
from agent.ota.transport import (
    ArtifactNotFound,
    ArtifactTooLarge,
    ArtifactTransport,
    TransferTimeout,
    TransportError,
    check_rate,
)
from contract import topics
from contract.artifacts import (
    HEADER_PROPERTY,
    MAX_REQUEST_BYTES,
    MAX_REQUEST_CHUNKS,
    ArtifactChunk,
    ArtifactRequest,
)

if TYPE_CHECKING:
    from agent.config import AgentConfig

log = logging.getLogger("nanofleet.agent.ota.mqtt")

_STATUS = {"not-found": 404, "forbidden": 403, "bad-request": 400, "range": 416,
           "internal": 500}
Received = tuple[ArtifactChunk, bytes]


class BrokerLink(Protocol):
    """What the transport needs of the agent's MQTT connection (agent.mqtt_link.MqttLink)."""

    connected: threading.Event
    connect_count: int
    last_error: str | None

    def handle(self, topic: str, handler: Callable[[mqtt.MQTTMessage], None],
               qos: int = 1) -> None: ...
    def unhandle(self, topic: str) -> None: ...
    def on_down(self, fn: Callable[[], None]) -> None: ...
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                props: Properties | None = None) -> mqtt.MQTTMessageInfo: ...


def artifact_path(url: str) -> str:
    """``mqtt:targets/a%20b.nfb`` -> ``targets/a b.nfb``; TransportError for other URLs."""
    if not url.startswith(MQTT_URL_PREFIX):
        raise TransportError(f"{url}: only {MQTT_URL_PREFIX} URLs go over MQTT")
    return unquote(url[len(MQTT_URL_PREFIX):].lstrip("/"))


def chunk_refusal(url: str, chunk: ArtifactChunk) -> TransportError:
    """The transport error for a chunk that carries an error (not busy/rate-limited)."""
    detail = f"{url}: {chunk.error}: {chunk.detail or 'refused by the server'}"
    if chunk.error in ("not-found", "forbidden"):
        return ArtifactNotFound(detail, _STATUS[chunk.error])
    if chunk.error == "too-large":
        return ArtifactTooLarge(detail)
    return TransportError(detail, _STATUS.get(chunk.error or ""))


class MqttTransport(ArtifactTransport):
    def __init__(self, device_id: str, link: BrokerLink, *, timeout: float = 30.0,
                 chunk_size: int = 32 * 1024, window: int = 16,
                 retry_s: float | None = None, min_rate: float = 0.0) -> None:
        self.device_id = topics.check_device_id(device_id)
        self.link = link
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.window = window
        self.min_rate = min_rate  # bytes/s once a transfer is `timeout` old; 0: no bound
        self.retry_s = retry_s if retry_s is not None else max(0.5, min(5.0, timeout / 4))
        self._lock = threading.Lock()
        self._transfers: dict[str, queue.Queue[Received]] = {}
        self._subscribed = False
        self.chunks_dropped = 0  # too long, no room, or outside the window: never kept
        self.most_buffered = 0  # the most bytes any transfer has kept ahead
        self._earlier_connects = 0  # counted on the links used before this one
        link.on_down(self._on_link_down)

    @classmethod
    def for_agent(cls, cfg: AgentConfig, link: BrokerLink) -> MqttTransport:
        """The transport of an agent with ``[ota] transport = "mqtt"``, on its own link."""
        ota = cfg.ota
        assert ota is not None
        return cls(cfg.device_id, link, timeout=ota.http_timeout_s,
                   chunk_size=ota.mqtt_chunk_bytes, window=ota.mqtt_window_chunks,
                   min_rate=ota.min_download_rate)

    def use_link(self, link: BrokerLink) -> None:
        """Ride on ``link`` from now on: the agent replaced its connection (a reload that
        changed ``[mqtt]``). The chunk subscription moves to it, and transfers in flight
        see a reconnect, so they ask for the rest again over it."""
        with self._lock:
            old, self.link = self.link, link
            self._earlier_connects += old.connect_count + 1  # a change, and never back
            subscribed = self._subscribed
        link.on_down(self._on_link_down)
        if subscribed:
            old.unhandle(topics.artifact_chunk_filter(self.device_id))
            link.handle(topics.artifact_chunk_filter(self.device_id), self._on_message)

    @property
    def ready(self) -> threading.Event:
        """Set while the link is up (and so subscribed to our chunk topics)."""
        return self.link.connected

    @property
    def connects(self) -> int:
        """The successful connects (of every link used): a change means what was in
        flight is lost."""
        with self._lock:
            return self._earlier_connects + self.link.connect_count

    @property
    def last_error(self) -> str | None:
        return self.link.last_error

    # --- ArtifactTransport ---------------------------------------------------------------
    def fetch(self, url: str, start: int = 0, max_length: int | None = None) -> Iterator[bytes]:
        if start < 0 or (max_length is not None and max_length < 0):
            raise ValueError("start and max_length must be >= 0")
        path = artifact_path(url)
        return self._stream(url, path, start, max_length)

    def close(self) -> None:
        with self._lock:
            subscribed, self._subscribed = self._subscribed, False
        if subscribed:
            self.link.unhandle(topics.artifact_chunk_filter(self.device_id))

    # --- one transfer ------------------------------------------------------------------
    def _stream(self, url: str, path: str, start: int,
                max_length: int | None) -> Iterator[bytes]:
        transfer = secrets.token_hex(8)
        inbox: queue.Queue[Received] = queue.Queue(maxsize=4 * self.window)
        with self._lock:
            self._transfers[transfer] = inbox
            subscribe, self._subscribed = not self._subscribed, True
        if subscribe:  # once; the link re-subscribes after every reconnect
            self.link.handle(topics.artifact_chunk_filter(self.device_id), self._on_message)
        try:
            if not self.ready.wait(self.timeout):
                raise TransportError(f"{url}: cannot reach the broker"
                                     f"{': ' + self.last_error if self.last_error else ''}")
            yield from _Transfer(self, url, path, transfer, inbox, start, max_length).run()
        finally:
            with self._lock:
                self._transfers.pop(transfer, None)

    def send_request(self, req: ArtifactRequest) -> None:
        if self.ready.is_set():
            self.link.publish(topics.artifact_requests(self.device_id),
                              req.model_dump_json().encode(), qos=1)

    def _on_link_down(self) -> None:
        with self._lock:
            active = len(self._transfers)
        if active:
            log.info("artifact transport disconnected (%d transfers wait for the link): %s",
                     active, self.link.last_error)

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        transfer = msg.topic.rsplit("/", 1)[-1]
        with self._lock:
            inbox = self._transfers.get(transfer)
        if inbox is None:
            return  # a transfer that ended (or another client's): nobody waits for it
        props = getattr(msg, "properties", None)
        pairs = getattr(props, "UserProperty", None) or []
        raw = next((v for k, v in pairs if k == HEADER_PROPERTY), None)
        try:
            header = ArtifactChunk.model_validate_json(raw or "")
        except ValidationError:
            log.warning("chunk on %s without a valid %s header: dropped", msg.topic,
                        HEADER_PROPERTY)
            return
        if header.transfer != transfer:
            return
        if len(msg.payload) > self.chunk_size:
            self.dropped(f"a {len(msg.payload)}-byte chunk on {msg.topic}, longer than the "
                         f"{self.chunk_size} asked for")
            return
        try:
            inbox.put_nowait((header, bytes(msg.payload)))
        except queue.Full:  # more than was asked for: the transfer asks again for its own
            self.dropped(f"a chunk on {msg.topic}: {inbox.maxsize} wait already")

    def dropped(self, what: str) -> None:
        """Count a chunk not kept; log the first of each hundred (a flood stays one line)."""
        with self._lock:
            self.chunks_dropped += 1
            first = self.chunks_dropped % 100 == 1
        if first:
            log.warning("artifact chunk dropped (%d so far): %s", self.chunks_dropped, what)


class _Transfer:
    """The receive loop of one fetch: requests windows, reorders, resumes, times out."""

    def __init__(self, transport: MqttTransport, url: str, path: str, transfer: str,
                 inbox: queue.Queue[Received], start: int, max_length: int | None) -> None:
        self.t = transport
        self.url, self.path, self.transfer, self.inbox = url, path, transfer, inbox
        self.start, self.max_length = start, max_length
        self.expected = start          # next byte the caller gets
        self.requested_end = start     # bytes below this were asked for
        self.size: int | None = None
        self.version: str | None = None
        self.ahead: dict[int, bytes] = {}  # chunks that arrived before an earlier one
        self.ahead_bytes = 0
        self.not_before = 0.0          # busy / rate-limited: wait until then
        now = time.monotonic()
        self.started = now
        self.last_progress = now
        self.last_request = 0.0
        self.connects = transport.connects

    def run(self) -> Iterator[bytes]:
        t, chunk = self.t, self.t.chunk_size
        while True:
            now = time.monotonic()
            if now - self.last_progress > t.timeout:
                state = "connected" if t.ready.is_set() else f"broker away ({t.last_error})"
                raise TransferTimeout(f"{self.url}: no data for {t.timeout} s after "
                                      f"{self.expected - self.start} bytes ({state})")
            check_rate(self.url, self.expected - self.start, now - self.started, t.timeout,
                       t.min_rate)
            if t.connects != self.connects:  # reconnected: what was in flight is lost
                self.connects = t.connects
                self.requested_end = self.expected
            elif now - max(self.last_progress, self.last_request) > t.retry_s:
                self.requested_end = self.expected  # nothing came: ask again
            if t.ready.is_set() and now >= self.not_before:
                self._ask(now, chunk)
            try:
                header, data = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if header.error is not None:
                self._on_error(header)
                continue
            self._check_file(header)
            self._keep(header.offset, data)
            while self.expected in self.ahead:
                piece = self.ahead.pop(self.expected)
                self.ahead_bytes -= len(piece)
                if self.max_length is not None and \
                        self.expected + len(piece) - self.start > self.max_length:
                    raise ArtifactTooLarge(f"{self.url}: server sent more than the "
                                           f"{self.max_length} bytes allowed")
                if piece:
                    yield piece
                self.expected += len(piece)
                self.last_progress = time.monotonic()
                if self.expected == self.size:
                    return
                if not piece:
                    raise TransportError(f"{self.url}: empty chunk at {self.expected} before "
                                         f"the end ({self.size} bytes)")
            self._forget_passed()

    def _keep(self, offset: int, data: bytes) -> None:
        """Keep a chunk until its turn. The next expected one is always kept (it is taken
        at once); others only inside the window and while the kept bytes stay within
        ``2 x window x chunk_size``, so chunks at made-up offsets cannot grow memory."""
        t = self.t
        bound = 2 * t.window * t.chunk_size
        if offset < self.expected or offset in self.ahead:
            return  # a duplicate (a resend after a reconnect): not a drop
        if offset != self.expected and (offset >= self.expected + bound
                                        or self.ahead_bytes + len(data) > bound):
            t.dropped(f"{self.url}: chunk at {offset} outside the window or beyond the "
                      f"{bound} bytes kept ahead of {self.expected}")
            return
        self.ahead[offset] = data
        self.ahead_bytes += len(data)
        t.most_buffered = max(t.most_buffered, self.ahead_bytes)

    def _forget_passed(self) -> None:
        """Drop kept chunks the stream has moved past (they overlapped one taken)."""
        passed = [o for o in self.ahead if o < self.expected]
        for o in passed:
            self.ahead_bytes -= len(self.ahead.pop(o))

    def _ask(self, now: float, chunk: int) -> None:
        """Ask for the rest of the window once no more than half of it is outstanding."""
        window = self.t.window * chunk
        window_end = self.expected + window
        if self.size is not None:
            window_end = min(window_end, self.size)
        if (self.requested_end - self.expected > window // 2
                or self.requested_end >= window_end):
            return
        per_request = max(1, min(MAX_REQUEST_CHUNKS, MAX_REQUEST_BYTES // chunk))
        while self.requested_end < window_end:
            n = min(per_request, -(-(window_end - self.requested_end) // chunk))
            allowance = None if self.max_length is None else \
                max(0, self.start + self.max_length - self.requested_end)
            self.t.send_request(ArtifactRequest(
                transfer=self.transfer, path=self.path, offset=self.requested_end, chunks=n,
                chunk_size=chunk, max_length=allowance))
            self.requested_end += n * chunk
            self.last_request = now

    def _on_error(self, header: ArtifactChunk) -> None:
        if header.error in ("busy", "rate-limited"):
            wait = header.retry_after_s if header.retry_after_s is not None else 1.0
            self.not_before = time.monotonic() + wait
            # Everything from the refused request on must be asked for again.
            self.requested_end = max(self.expected, min(self.requested_end, header.offset))
            return
        raise chunk_refusal(self.url, header)

    def _check_file(self, header: ArtifactChunk) -> None:
        if header.size is None:
            raise TransportError(f"{self.url}: chunk without the file's size")
        if self.size is None:
            self.size, self.version = header.size, header.version
            if self.start > self.size:
                raise TransportError(f"{self.url}: offset {self.start} is past the end "
                                     f"({self.size} bytes)", 416)
            if self.max_length is not None and self.size - self.start > self.max_length:
                raise ArtifactTooLarge(f"{self.url}: server announces {self.size - self.start} "
                                       f"bytes, more than the {self.max_length} allowed")
        elif (header.size, header.version) != (self.size, self.version):
            raise TransportError(f"{self.url}: the file changed on the server during the "
                                 "transfer; fetch it again")
