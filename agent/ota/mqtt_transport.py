"""Artifacts over MQTT, device side: :class:`MqttTransport` fetches ``mqtt:<path>`` URLs
as chunked streams from the fleet server, through the device's own broker.

URLs: ``mqtt:metadata/3.root.json``, ``mqtt:targets/models/m/2/<sha256>.m-2.nfb`` —
the repository-relative path (percent-encoded like an HTTP path) after ``mqtt:``;
the broker is the agent's. Protocol: :mod:`contract.artifacts`.

- Its own paho client (client id ``<agent client id>-ota``, clean start), connected
  on the first fetch and closed after ``idle_close_s`` without one, so an idle device
  holds one connection and the agent's MqttLink is never disturbed.
- Flow control: at most ``window`` chunks are asked for beyond what the caller has
  consumed; the next half window is asked for as the first half is consumed.
- Resume: after a reconnect the rest is asked for again from the last byte received
  (duplicates are recognised by offset and dropped); a fetch with ``start`` > 0 (the
  ``.part`` file of :meth:`TufClient.download_target`) starts there.
- A request nothing answered is re-sent after ``retry_s``; no byte for ``timeout``
  raises :class:`TransferTimeout`. ``busy``/``rate-limited`` answers are waited out.

Integrity is not this module's business: TufClient checks every byte against the
signed lengths and hashes, as for HTTP.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from agent.ota.config import MQTT_URL_PREFIX
from agent.ota.transport import (
    ArtifactNotFound,
    ArtifactTooLarge,
    ArtifactTransport,
    TransferTimeout,
    TransportError,
)
from contract import topics
from contract.artifacts import (
    HEADER_PROPERTY,
    MAX_REQUEST_BYTES,
    MAX_REQUEST_CHUNKS,
    ArtifactChunk,
    ArtifactRequest,
    set_tcp_nodelay,
)

if TYPE_CHECKING:
    from agent.config import AgentConfig

log = logging.getLogger("nanofleet.agent.ota.mqtt")

_STATUS = {"not-found": 404, "forbidden": 403, "bad-request": 400, "range": 416,
           "internal": 500}
Received = tuple[ArtifactChunk, bytes]


@dataclass(frozen=True)
class BrokerEndpoint:
    """How to reach the broker (the agent's ``[mqtt]`` settings)."""

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: dict[str, Any] | None = None  # paho tls_set() keyword arguments
    keepalive_s: int = 30
    reconnect_max_s: int = 5


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
    def __init__(self, device_id: str, endpoint: BrokerEndpoint, *, timeout: float = 30.0,
                 chunk_size: int = 32 * 1024, window: int = 16, retry_s: float | None = None,
                 idle_close_s: float = 60.0) -> None:
        self.device_id = topics.check_device_id(device_id)
        self.endpoint = endpoint
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.window = window
        self.retry_s = retry_s if retry_s is not None else max(0.5, min(5.0, timeout / 4))
        self.idle_close_s = idle_close_s
        self.last_error: str | None = None
        self.connects = 0  # successful (re)subscriptions, for tests and diagnostics
        self.ready = threading.Event()  # connected and subscribed to our chunk topics
        self._lock = threading.Lock()
        self._transfers: dict[str, queue.Queue[Received]] = {}
        self._client: mqtt.Client | None = None
        self._active = 0
        self._idle_timer: threading.Timer | None = None
        self._sub_mid: int | None = None

    @classmethod
    def for_agent(cls, cfg: AgentConfig) -> MqttTransport:
        """The transport of an agent with ``[ota] transport = "mqtt"``: its broker settings."""
        from agent.mqtt_link import tls_kwargs

        m, ota = cfg.mqtt, cfg.ota
        assert ota is not None
        endpoint = BrokerEndpoint(
            host=m.host, port=m.port, client_id=f"{m.client_id or 'nanofleet-' + cfg.device_id}"
            "-ota", username=m.username,
            password=m.password.get_secret_value() if m.password else None,
            tls=tls_kwargs(m), keepalive_s=m.keepalive_s, reconnect_max_s=m.reconnect_max_s)
        return cls(cfg.device_id, endpoint, timeout=ota.http_timeout_s,
                   chunk_size=ota.mqtt_chunk_bytes, window=ota.mqtt_window_chunks)

    # --- ArtifactTransport ---------------------------------------------------------------
    def fetch(self, url: str, start: int = 0, max_length: int | None = None) -> Iterator[bytes]:
        if start < 0 or (max_length is not None and max_length < 0):
            raise ValueError("start and max_length must be >= 0")
        path = artifact_path(url)
        return self._stream(url, path, start, max_length)

    def close(self) -> None:
        with self._lock:
            client = self._detach()
        self._disconnect(client)

    def _detach(self) -> mqtt.Client | None:
        """Forget the client (caller holds the lock); disconnect it outside the lock."""
        self._cancel_idle_timer()
        client, self._client = self._client, None
        self.ready.clear()
        return client

    @staticmethod
    def _disconnect(client: mqtt.Client | None) -> None:
        if client is not None:
            client.disconnect()
            client.loop_stop()

    # --- one transfer ------------------------------------------------------------------
    def _stream(self, url: str, path: str, start: int,
                max_length: int | None) -> Iterator[bytes]:
        transfer = secrets.token_hex(8)
        inbox: queue.Queue[Received] = queue.Queue()
        with self._lock:
            self._transfers[transfer] = inbox
            self._active += 1
            self._cancel_idle_timer()
            self._ensure_client()
        try:
            if not self.ready.wait(self.timeout):
                raise TransportError(f"{url}: cannot reach the broker "
                                     f"{self.endpoint.host}:{self.endpoint.port}"
                                     f"{': ' + self.last_error if self.last_error else ''}")
            yield from _Transfer(self, url, path, transfer, inbox, start, max_length).run()
        finally:
            with self._lock:
                self._transfers.pop(transfer, None)
                self._active -= 1
                if self._active == 0 and self._client is not None:
                    self._idle_timer = threading.Timer(self.idle_close_s, self._close_if_idle)
                    self._idle_timer.daemon = True
                    self._idle_timer.start()

    def send_request(self, req: ArtifactRequest) -> None:
        client = self._client
        if client is not None and self.ready.is_set():
            client.publish(topics.artifact_requests(self.device_id), req.model_dump_json(),
                           qos=1)

    # --- connection ----------------------------------------------------------------------
    def _ensure_client(self) -> None:
        if self._client is not None:
            return
        e = self.endpoint
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=e.client_id,
                        protocol=mqtt.MQTTv5)
        c.reconnect_delay_set(1, e.reconnect_max_s)
        c.max_queued_messages_set(100)
        if e.username:
            c.username_pw_set(e.username, e.password)
        if e.tls:
            c.tls_set(**e.tls)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_socket_open = set_tcp_nodelay
        c.on_message = self._on_message
        self._client = c
        c.connect_async(e.host, e.port, keepalive=e.keepalive_s, clean_start=True)
        c.loop_start()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _close_if_idle(self) -> None:
        with self._lock:  # a fetch starting now either keeps the client or makes a new one
            if self._active:
                return
            client = self._detach()
        self._disconnect(client)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None = None) -> None:
        if client is not self._client:
            return  # a client closed a moment ago
        if rc.is_failure:
            self.last_error = f"broker refused the connection: {rc}"
            log.warning("artifact transport: %s", self.last_error)
            return
        _, self._sub_mid = client.subscribe(topics.artifact_chunk_filter(self.device_id), qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      codes: list[ReasonCode], props: Properties | None = None) -> None:
        if client is not self._client or mid != self._sub_mid:
            return
        if any(c.is_failure for c in codes):
            self.last_error = f"subscription to the chunk topic refused: {codes}"
            log.warning("artifact transport: %s", self.last_error)
            return
        self.last_error = None
        self.connects += 1
        self.ready.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                       props: Properties | None = None) -> None:
        if client is not self._client:
            return
        if self.ready.is_set():
            log.info("artifact transport disconnected: %s", rc)
        self.last_error = f"disconnected: {rc}"
        self.ready.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
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
        if header.transfer == transfer:
            inbox.put((header, bytes(msg.payload)))


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
        self.not_before = 0.0          # busy / rate-limited: wait until then
        now = time.monotonic()
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
            if header.offset >= self.expected and header.offset not in self.ahead and \
                    header.offset < self.expected + 2 * t.window * chunk:
                self.ahead[header.offset] = data
            while self.expected in self.ahead:
                piece = self.ahead.pop(self.expected)
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
