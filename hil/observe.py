"""The rig's MQTT observer: every message of the devices under test, as received.

It subscribes to ``nanofleet/v1/dev/+/#`` with a persistent MQTT v5 session on a
broker with persistence, so that a broker outage does not make it miss what the
agents replay afterwards. Everything is appended to ``mqtt.jsonl`` (artifact chunks
as topic and size only) and kept in memory, de-duplicated by ``msg_id``, for the
checks and the report.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.topics import PREFIX, device_id_from_topic
from hil.traffic import line_number


@dataclass
class DeviceRecord:
    """What one device published (de-duplicated by msg_id; ``_received`` added)."""

    batches: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    replayed: int = 0  # result batches flagged is_historical (sent from the spool)
    ota: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    status: list[dict[str, Any]] = field(default_factory=list)
    alerts: int = 0
    alert_items: list[dict[str, Any]] = field(default_factory=list)  # source, text, _received
    lines: dict[int, set[int]] = field(default_factory=dict)  # line n -> model versions
    results_by_version: dict[int, int] = field(default_factory=dict)  # version -> items


class Observer:
    def __init__(self, port: int, devices: list[str], out: Path) -> None:
        self.devices = devices
        self.records = {d: DeviceRecord() for d in devices}
        self.messages = 0
        self.lock = threading.Lock()
        self._seen: set[str] = set()
        self._file: IO[str] = open(out, "w", encoding="utf-8")  # noqa: SIM115 - close()
        self._connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=f"hil-observer-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv5)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self._connected.clear()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("the rig's MQTT observer could not subscribe")

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            return
        client.subscribe(f"{PREFIX}/dev/+/#", qos=1)
        self._connected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        received = time.time()
        device = device_id_from_topic(msg.topic)
        kind = msg.topic.split("/", 4)[4] if msg.topic.count("/") >= 4 else ""
        entry: dict[str, Any] = {"t": round(received, 4), "topic": msg.topic,
                                 "retain": bool(msg.retain), "bytes": len(msg.payload)}
        doc: Any = None
        if not kind.startswith("artifacts/"):
            try:
                doc = json.loads(msg.payload)
            except ValueError:
                entry["payload"] = msg.payload[:200].decode("utf-8", "replace")
            else:
                entry["payload"] = doc
        with self.lock:
            self.messages += 1
            self._file.write(json.dumps(entry, separators=(",", ":")) + "\n")
            record = self.records.get(device or "")
            if record is not None and isinstance(doc, dict):
                self._record(record, kind, doc, received)

    def _record(self, record: DeviceRecord, kind: str, doc: dict[str, Any],
                received: float) -> None:
        msg_id = doc.get("msg_id")
        if kind in ("status", "desired"):
            if kind == "status":
                record.status.append({**doc, "_received": received})
            return
        if msg_id is None:
            return
        if msg_id in self._seen:
            if kind.startswith("results/"):
                record.duplicates += 1
            return
        self._seen.add(msg_id)
        doc = {**doc, "_received": received}
        if kind.startswith("results/"):
            record.batches.append(doc)
            record.replayed += bool(doc.get("is_historical"))
            version = int(doc.get("model_version", 0))
            for item in doc.get("items", []):
                n = line_number(str(item.get("text", "")))
                if n is not None:
                    record.lines.setdefault(n, set()).add(version)
                record.results_by_version[version] = record.results_by_version.get(version,
                                                                                     0) + 1
        elif kind == "ota":
            record.ota.append(doc)
        elif kind == "metrics":
            record.metrics.append(doc)
        elif kind == "alerts":
            record.alerts += 1
            item = doc.get("item") or {}
            record.alert_items.append({"source": str(item.get("source", "")),
                                       "text": str(item.get("text", "")),
                                       "_received": received})

    # --- reading (under the lock: copies) ----------------------------------------------
    def ota_events(self, device: str) -> list[dict[str, Any]]:
        with self.lock:
            return sorted(self.records[device].ota, key=lambda e: (e["seq"], e["ts"]))

    def lines_seen(self, device: str) -> set[int]:
        with self.lock:
            return set(self.records[device].lines)

    def last_status(self, device: str) -> dict[str, Any] | None:
        with self.lock:
            status = self.records[device].status
            return dict(status[-1]) if status else None

    def snapshot(self, device: str) -> DeviceRecord:
        with self.lock:
            r = self.records[device]
            return DeviceRecord(
                batches=list(r.batches), duplicates=r.duplicates, replayed=r.replayed,
                ota=list(r.ota),
                metrics=list(r.metrics), status=list(r.status), alerts=r.alerts,
                alert_items=list(r.alert_items),
                lines={k: set(v) for k, v in r.lines.items()},
                results_by_version=dict(r.results_by_version))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        with self.lock:
            self._file.close()
