"""Artifacts over MQTT, server side: repository files as chunked streams for devices
that reach only the broker (protocol: :mod:`contract.artifacts`).

- subscribes to every device's ``artifacts/req`` as the MQTT v5 shared subscription
  ``$share/<group>/nanofleet/v1/dev/+/artifacts/req``, so replicas split the requests;
- answers on the requesting device's own ``artifacts/chunk/<transfer>`` (the device
  id comes from the topic, which the broker ACL ties to the device's certificate);
- serves only files below ``metadata/`` and ``targets/`` of the repository directory;
- bounded concurrency (a fixed pool of workers behind a bounded queue; a full queue
  or too many requests of one device are answered ``busy``) and a per-device byte
  rate (token bucket; over it, ``rate-limited`` with the time to wait);
- back-pressure: a worker waits for the broker's PUBACKs of one request's chunks
  before it takes the next, so at most ``workers`` x 1 MiB are in flight.

The bytes are not trusted by anyone: devices check them against signed TUF metadata.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from contract import topics
from contract.artifacts import (
    HEADER_PROPERTY,
    TRANSFER_ID_PATTERN,
    ArtifactChunk,
    ArtifactRequest,
    ChunkError,
)
from fleet_server.artifact_plan import (
    Bucket,
    DeviceBuckets,
    Refused,
    artifact_file,
    bucket_take,
    file_version,
    plan_range,
)
from fleet_server.config import ArtifactSettings, MqttSettings
from fleet_server.flood_alarm import FloodAlarm
from fleet_server.mqtt_client import build_client, connect

log = logging.getLogger("nanofleet.server.artifacts")

CHUNK_EXPIRY_S = 120  # a chunk nobody fetched in time is stale: the device re-asks anyway
_BUCKETS_PRUNE_AT = 10_000
_TRANSFER_RE = re.compile(TRANSFER_ID_PATTERN)
MAX_PACKET_BYTES = 16 * 1024  # requests are small JSON: the broker drops bigger ones for us
REFUSED_CHARGE_BYTES = 64 * 1024  # what a refused request costs a device's byte rate
MIN_CHARGED_CHUNK_BYTES = 4 * 1024  # what a chunk costs at least (the agent asks 32 KiB)


# --- I/O --------------------------------------------------------------------------------------
@dataclass
class StreamCounters:
    requests: int = 0
    chunks: int = 0
    bytes: int = 0
    refused: int = 0
    busy: int = 0
    rate_limited: int = 0
    invalid: int = 0
    errors: int = 0
    dropped: int = 0  # over a device's request rate: not read, not answered
    floods: int = 0  # times a device was found flooding its requests (FloodWatch)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self.lock:
            for name, value in deltas.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, Any]:
        with self.lock:
            return {k: getattr(self, k) for k in ("requests", "chunks", "bytes", "refused",
                                                  "busy", "rate_limited", "invalid", "errors",
                                                  "dropped", "floods")}


def request_filter(shared_group: str | None) -> str:
    f = topics.ARTIFACT_REQUEST_FILTER
    return f"$share/{shared_group}/{f}" if shared_group else f


def _transfer_of(payload: bytes) -> str | None:
    """The transfer id of a request that failed validation, to answer it bad-request."""
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError):  # pydantic refused it: so may json (too deep)
        return None
    transfer = doc.get("transfer") if isinstance(doc, dict) else None
    return transfer if isinstance(transfer, str) and _TRANSFER_RE.match(transfer) else None


class ArtifactStreamer:
    def __init__(self, mqtt_settings: MqttSettings, settings: ArtifactSettings,
                 repo_dir: Path) -> None:
        self.settings = settings
        self.mqtt_settings = mqtt_settings
        self.repo_dir = Path(repo_dir)
        self.counters = StreamCounters()
        self.connected = threading.Event()
        self._queue: queue.Queue[tuple[str, ArtifactRequest] | None] = queue.Queue(
            settings.queue_size)
        self._pending: dict[str, int] = {}
        self._lock = threading.Lock()
        # Bytes per device (bursts of one second's worth), charged by the workers.
        self._bytes = DeviceBuckets(float(settings.device_rate_bytes_s),
                                    float(settings.device_rate_bytes_s), _BUCKETS_PRUNE_AT)
        # Requests per device (bursts of two seconds' worth), on the network thread only.
        self._asks = DeviceBuckets(float(settings.device_requests_per_s),
                                   2.0 * settings.device_requests_per_s, _BUCKETS_PRUNE_AT)
        # A device whose requests are dropped on and on is flooding the stream's broker
        # queue (which drops other devices' requests too): the server quarantines it,
        # as for a report flood (fleet_server.identity.quarantine). Told on the network
        # thread: it must only hand the id on.
        self.flood_alarm = FloodAlarm(mqtt_settings.flood_shed_reports,
                                      mqtt_settings.flood_min_s, log, " the artifact stream",
                                      "requests")
        self._workers = [threading.Thread(target=self._work, name=f"artifacts-{i}", daemon=True)
                         for i in range(settings.workers)]
        c = build_client(mqtt_settings, f"{mqtt_settings.client_id}-artifacts",
                         max_queued=10_000, max_inflight=64)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self._sub_mid: int | None = None
        self.client = c

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        for w in self._workers:
            w.start()
        # Clean start: requests sent while we were away are re-sent by the devices.
        connect(self.client, self.mqtt_settings, max_packet_bytes=MAX_PACKET_BYTES,
                clean_start=True)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
        while True:  # drop what waits; the devices ask again
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in self._workers:
            self._queue.put(None)
        for w in self._workers:
            w.join(timeout=10)

    def health(self) -> dict[str, Any]:
        return {"connected": self.connected.is_set(), **self.counters.as_dict()}

    # --- paho callbacks (network thread) ---------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                    props: Properties | None = None) -> None:
        if rc.is_failure:
            log.warning("artifact stream: broker refused the connection: %s", rc)
            return
        _, self._sub_mid = client.subscribe(request_filter(self.settings.shared_group), qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      codes: list[ReasonCode], props: Properties | None = None) -> None:
        if mid != self._sub_mid:
            return
        if any(c.is_failure for c in codes):
            log.error("artifact stream: subscription to %s refused: %s",
                      request_filter(self.settings.shared_group), codes)
            return
        self.connected.set()  # "connected" = requests reach us
        log.info("artifact stream serving %s on %s:%d", self.repo_dir, self.mqtt_settings.host,
                 self.mqtt_settings.port)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode,
                       props: Properties | None = None) -> None:
        if self.connected.is_set():
            log.warning("artifact stream disconnected: %s", rc)
        self.connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        device = topics.device_id_from_topic(msg.topic)
        if device is None or msg.topic != topics.artifact_requests(device):
            self.counters.add(invalid=1)
            return
        if not self._may_ask(device):
            # Before anything is parsed or answered: one device's flood of requests (for
            # files that do not exist, or answered busy) cost a parse and a publish each
            # on this one thread, and every other device's downloads stalled behind them
            # (review, December 2026). Dropped unanswered; the agent asks again.
            self.counters.add(dropped=1)
            if self.flood_alarm.dropped(device):
                self.counters.add(floods=1)
            return
        payload = bytes(msg.payload)
        try:
            req = ArtifactRequest.model_validate_json(payload)
        except ValidationError as exc:
            self.counters.add(invalid=1)
            transfer = _transfer_of(payload)
            if transfer is not None:
                problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'request'}: "
                                     f"{e['msg']}" for e in exc.errors())
                self._send_error(device, transfer, 0, "bad-request", problems[:900])
            return
        self.counters.add(requests=1)
        with self._lock:
            pending = self._pending.get(device, 0)
            if pending >= self.settings.per_device_pending:
                busy = f"{pending} requests of {device} in service"
            else:
                try:
                    self._queue.put_nowait((device, req))
                    self._pending[device] = pending + 1
                    return
                except queue.Full:
                    busy = f"{self._queue.maxsize} requests waiting"
        self.counters.add(busy=1)
        self._send_error(device, req.transfer, req.offset, "busy", busy, retry_after_s=0.5)

    def _may_ask(self, device: str) -> bool:
        """One request of ``device`` within its request rate (network thread only)."""
        return self._asks.take(device, 1, time.monotonic()) == 0.0

    # --- workers -----------------------------------------------------------------------
    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            device, req = item
            try:
                self._serve(device, req)
            except Exception as exc:  # a worker must survive anything one request does
                log.exception("serving %s to %s failed", req.path, device)
                self.counters.add(errors=1)
                self._send_error(device, req.transfer, req.offset, "internal",
                                 f"{type(exc).__name__}: {exc}"[:900])
            finally:
                with self._lock:
                    left = self._pending.get(device, 1) - 1
                    if left > 0:
                        self._pending[device] = left
                    else:
                        self._pending.pop(device, None)

    def _serve(self, device: str, req: ArtifactRequest) -> None:
        if not self.connected.is_set():
            return  # nothing could be sent; the device asks again after reconnecting
        try:
            path = artifact_file(self.repo_dir, req.path)
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                plan = plan_range(st.st_size, req)
                # Small chunks cost the server as much per message as big ones: each is
                # charged at least MIN_CHARGED_CHUNK_BYTES (1 KiB chunks within the byte
                # rate were 4,096 messages a second of one device).
                if self._within_rate(device, req, sum(max(length, MIN_CHARGED_CHUNK_BYTES)
                                                      for _, length in plan)):
                    self._send_range(device, req, fh, st, plan)
        except Refused as exc:
            self._refuse(device, req, exc.error, exc.detail, exc.size)
        except OSError as exc:
            self._refuse(device, req, "not-found", f"{req.path!r}: {exc.strerror or exc}",
                         None)

    def _refuse(self, device: str, req: ArtifactRequest, error: ChunkError, detail: str,
                size: int | None) -> None:
        """A refusal is charged too (a refused request was free: a flood of them cost
        the server a worker and a publish each)."""
        if not self._within_rate(device, req, REFUSED_CHARGE_BYTES):
            return
        self.counters.add(refused=1)
        log.info("artifact request of %s refused: %s %s", device, error, detail[:200])
        self._send_error(device, req.transfer, req.offset, error, detail, size=size)

    def _within_rate(self, device: str, req: ArtifactRequest, cost: int) -> bool:
        """Charge ``cost`` bytes to the device; over its rate, answer rate-limited with the
        time to wait instead."""
        wait = self._charge(device, cost)
        if wait <= 0:
            return True
        self.counters.add(rate_limited=1)
        self._send_error(device, req.transfer, req.offset, "rate-limited",
                         f"over {self.settings.device_rate_bytes_s} bytes/s",
                         retry_after_s=round(wait, 3))
        return False

    def _charge(self, device: str, cost: int) -> float:
        with self._lock:
            return self._bytes.take(device, cost, time.monotonic())

    def _send_range(self, device: str, req: ArtifactRequest, fh: Any, st: os.stat_result,
                    plan: list[tuple[int, int]]) -> None:
        topic = topics.artifact_chunks(device, req.transfer)
        version = file_version(st)
        fh.seek(plan[0][0])
        infos = []
        for offset, length in plan:
            data = fh.read(length)
            if len(data) != length:  # the file shrank under us: it was replaced
                raise Refused("not-found", f"{req.path} changed while it was read")
            header = ArtifactChunk(transfer=req.transfer, offset=offset, size=st.st_size,
                                   version=version, final=offset + length == st.st_size)
            infos.append(self._publish(topic, data, header))
        self.counters.add(chunks=len(plan), bytes=sum(length for _, length in plan))
        # Back-pressure: the next request waits until the broker has taken these chunks.
        # Disconnected: paho re-sends them after reconnecting; stop waiting now.
        deadline = time.monotonic() + self.settings.publish_timeout_s
        for info in infos:
            try:
                while not info.is_published() and self.connected.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    info.wait_for_publish(min(0.5, left))
            except (RuntimeError, ValueError):
                return  # not queued: the device re-asks after its own retry interval

    def _publish(self, topic: str, data: bytes, header: ArtifactChunk) -> mqtt.MQTTMessageInfo:
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = [(HEADER_PROPERTY, header.model_dump_json(exclude_none=True))]
        props.MessageExpiryInterval = CHUNK_EXPIRY_S
        return self.client.publish(topic, data, qos=1, properties=props)

    def _send_error(self, device: str, transfer: str, offset: int, error: ChunkError,
                    detail: str, *, size: int | None = None,
                    retry_after_s: float | None = None) -> None:
        header = ArtifactChunk(transfer=transfer, offset=offset, size=size, error=error,
                               detail=detail, retry_after_s=retry_after_s)
        self._publish(topics.artifact_chunks(device, transfer), b"", header)


__all__ = ["ArtifactStreamer", "Bucket", "Refused", "artifact_file", "bucket_take", "file_version",
           "plan_range", "request_filter"]
