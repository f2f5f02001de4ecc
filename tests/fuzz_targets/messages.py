"""Fuzz targets of the messages and files nanofleet reads from others: what reaches the
agent over MQTT (technician queries, desired states), what reaches the fleet server
(device reports, artifact requests), config files (agent, HIL scenarios) and log lines.

Each ``run`` feeds the product's real code path for that input and catches only the
refusal it documents: ``answer`` never raises (errors are responses); the OTA engine
counts and ignores an invalid desired state; ``parse_report`` raises ReportRejected and
what it accepts must store (a report that parses but fails to insert would fail the
whole batch of other devices' reports); artifact requests are refused with a
ValidationError or :class:`Refused`; configs with ConfigError / ScenarioError.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from paho.mqtt.client import MQTTMessage
from pydantic import ValidationError

from agent import default_bundle_path
from agent.config import ConfigError, MqttConfig, load_config
from agent.metrics import Counters
from agent.model import LoadedModel
from agent.mute_inbox import MuteInbox
from agent.mutes import MuteSet
from agent.ota.config import OtaConfig
from agent.ota.engine import OtaEngine
from agent.queries import answer
from agent.sources.base import sanitize
from agent.sources.mqtt_topic import AgentBroker, MqttTopicSource
from agent.sources.mqtt_topic_config import MqttTopicSourceConfig
from contract import topics
from contract.artifacts import ArtifactRequest
from contract.messages import (
    DesiredModel,
    DesiredState,
    Metrics,
    ModelInfo,
    OtaEvent,
    QueryResponse,
    Status,
)
from contract.mutes import AlertMute, MuteList, message_shape, prefix_shape
from fleet_server.artifact_stream import Refused, artifact_file, plan_range
from fleet_server.db import Database
from fleet_server.device_reports import ReportRejected, parse_report
from fleet_server.inventory import ingest
from fleet_server.migrations import upgrade
from hil.scenario import ScenarioError, load_scenario, shipped_scenarios
from tests.fuzz_targets.base import FuzzTarget
from tests.support.line_sink import ListSink

ROOT = Path(__file__).resolve().parents[2]
DEVICE = "pump-07"
KINDS = ("status", "ota", "metrics")


@functools.cache
def _workdir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="nanofleet-fuzz-messages-"))
    atexit.register(shutil.rmtree, d, True)
    return d


# --- agent: technician queries (MQTT query topic and the control socket) ---------------------
class _Agent:
    """The queries' target with the agent's real live model (classify runs it)."""

    def __init__(self) -> None:
        self.model = LoadedModel.load(default_bundle_path(), "onnxruntime", 1)

    def status_doc(self) -> dict[str, Any]:
        return {"state": "online"}

    def models_doc(self) -> list[dict[str, Any]]:
        return [{"slot": "logs", "name": self.model.manifest.name}]

    def sources_doc(self) -> list[dict[str, Any]]:
        return []

    def metrics_doc(self) -> dict[str, Any]:
        return {"counters": {}}

    def recent_alerts(self) -> list[dict[str, Any]]:
        return [{"ts": 1.0, "item": {"label": "security", "text": "x"}}]

    def classify(self, texts: list[str], explain: bool = False, level: int | None = None,
                 message_id: str | None = None, keywords: bool = False,
                 text_levels: bool = False) -> list[dict[str, Any]]:
        probs, anomaly = self.model.classify(texts)
        labels = self.model.manifest.labels
        return [{"label": labels[int(p.argmax())], "anomaly": float(a)}
                for p, a in zip(probs, anomaly, strict=True)]

    def ota_doc(self) -> dict[str, Any]:
        return {"enabled": False}

    def mutes_doc(self) -> dict[str, Any]:
        return {"enabled": True, "revision": None, "storm_per_minute": 30, "mutes": []}


@functools.cache
def _agent() -> _Agent:
    return _Agent()


def _query_seeds() -> list[bytes]:
    docs: list[dict[str, Any]] = [
        {"cmd": "status"}, {"cmd": "help"}, {"cmd": "models", "args": {}}, {"cmd": "mutes"},
        {"cmd": "recent_alerts", "args": {"label": "security", "limit": 5, "since": 0}},
        {"cmd": "classify", "args": {"text": "kernel: usb 1-1: new high-speed USB device"}},
        {"cmd": "classify", "args": {"text": ["sshd[1]: Failed password for root", "ok"]}}]
    return [json.dumps(d).encode() for d in docs]


def _run_query(data: bytes) -> None:
    response = answer(_agent(), data)  # documented: never raises, errors are responses
    assert isinstance(response, QueryResponse)
    response.model_dump_json()  # and what it answers can be sent


# --- agent: desired state (retained, from the fleet server) --------------------------------
@functools.cache
def _engine() -> OtaEngine:
    d = _workdir() / "ota"
    d.mkdir()
    (d / "root.json").write_text("{}")
    cfg = OtaConfig(metadata_url="http://127.0.0.1:9/repo/metadata/",
                    target_base_url="http://127.0.0.1:9/repo/targets/", root_file=d / "root.json")
    return OtaEngine(cfg, d / "state", "logs", runtime="onnxruntime", threads=1,
                     initial_bundle=default_bundle_path(), report=lambda fields: None)


def _desired_seeds() -> list[bytes]:
    extras: list[tuple[int, int, dict[str, Any]]] = [
        (1, 2, {}), (7, 1, {"action": "rollback", "rollout_id": "r1"}),
        (9, 3, {"metadata_url": "mqtt:metadata/", "target_base_url": "mqtt:targets/"})]
    return [DesiredState(revision=r, slots={"logs": DesiredModel(model="nano-logs", version=v)},
                         **extra).model_dump_json().encode() for r, v, extra in extras]


def _run_desired(data: bytes) -> None:
    engine = _engine()
    engine.submit_desired(data)  # documented: an invalid document is counted and ignored
    engine.inbox._latest = None  # each case on its own (a higher revision would mask the next)


# --- agent: the fleet server's mute list (dev/{id}/mutes) ------------------------------------
_MUTE_NOW = 1_800_000_000.0
_MUTED_LINE = "sshd[7]: Connection closed by 192.0.2.1 port 22 [preauth]"
# A long JSON line (the fleet server keeps 500 characters: a prefix mute of its start).
_LONG_LINE = ('{"ts": "2026-03-01T10:00:00Z", "level": "error", "msg": "disk write failed: I/O '
              'error on /dev/mmcblk0p2 sector 123456", ' + ", ".join(
                  f'"field_{i}": "value {i * 7919}"' for i in range(40)) + "}")


def _mutes_seeds() -> list[bytes]:
    shape = message_shape(_MUTED_LINE)
    lists = [MuteList(revision=1, mutes=[AlertMute(id="0123456789ab", shape=shape,
                                                   expires=_MUTE_NOW + 3600)]),
             MuteList(revision=7, mutes=[
                 AlertMute(id="0123456789ac", shape=shape, source="file:/var/log/auth.log",
                           expires=_MUTE_NOW + 86400 * 365, reason="scanner noise"),
                 AlertMute(id="0123456789ad", shape="x", expires=1.0)]),
             MuteList(revision=3, mutes=[
                 AlertMute(id="0123456789ae", shape=prefix_shape(_LONG_LINE[:500]), prefix=True,
                           source="file:/var/log/auth.log", expires=_MUTE_NOW + 3600),
                 AlertMute(id="0123456789af", shape=shape, expires=_MUTE_NOW + 60)]),
             MuteList(revision=0, mutes=[])]
    return [d.model_dump_json().encode() for d in lists] + [b""]


def _run_mutes(data: bytes) -> None:
    mutes = MuteSet(storm_per_minute=3)
    # documented: an invalid list is counted and refused, the list held stays
    MuteInbox(mutes, Counters(), DEVICE).submit(data, now=_MUTE_NOW)
    for i in range(5):  # an accepted list must also answer the alert gate's questions
        mutes.check("file:/var/log/auth.log", _MUTED_LINE, _MUTE_NOW + i)
        mutes.check("file:/var/log/auth.log", _LONG_LINE, _MUTE_NOW + i)
    mutes.active(_MUTE_NOW)


# --- fleet server: device reports ------------------------------------------------------------
@functools.cache
def _db() -> Database:
    db = Database(f"sqlite:///{_workdir() / 'fleet.db'}")
    upgrade(db)
    return db


def _report_seeds() -> list[bytes]:
    model = ModelInfo(slot="logs", name="nano-logs", version=2, label="v2",
                      runtime="onnxruntime", sha256="ab" * 32)
    docs = [Status(seq=1, device_id=DEVICE, state="online", agent_version="0.1",
                   models=[model], uptime_s=3.5),
            OtaEvent(seq=4, device_id=DEVICE, state="committed", slot="logs", from_version=1,
                     to_version=2, bytes_downloaded=4096),
            Metrics(seq=2, device_id=DEVICE, uptime_s=9.0, counters={"lines_in": 10},
                    gauges={"queue_depth": 0.0})]
    kinds = {Status: 0, OtaEvent: 1, Metrics: 2}
    return [bytes([kinds[type(d)]]) + d.model_dump_json().encode() for d in docs]


def _run_report(data: bytes) -> None:
    if not data:
        return
    topic = f"{topics.device_root(DEVICE)}/{KINDS[data[0] % len(KINDS)]}"
    try:
        report = parse_report(topic, data[1:], time.time())
    except ReportRejected:
        return
    with _db().session() as session:  # accepted means storable (see the module docstring)
        ingest(session, [report])


# --- fleet server: artifact requests ------------------------------------------------------
@functools.cache
def _repository() -> Path:
    root = _workdir() / "repository"
    (root / "metadata").mkdir(parents=True)
    (root / "targets" / "models").mkdir(parents=True)
    (root / "metadata" / "timestamp.json").write_bytes(b'{"signed": {"version": 7}}')
    (root / "targets" / "models" / "m.nfb").write_bytes(bytes(range(256)) * 64)
    return root


def _artifact_seeds() -> list[bytes]:
    reqs = [ArtifactRequest(transfer="t1", path="metadata/timestamp.json", offset=0, chunks=1,
                            chunk_size=1024),
            ArtifactRequest(transfer="a_b-2", path="targets/models/m.nfb", offset=8192,
                            chunks=4, chunk_size=4096, max_length=16384)]
    return [r.model_dump_json().encode() for r in reqs]


def _run_artifact(data: bytes) -> None:
    try:
        req = ArtifactRequest.model_validate_json(data)
        path = artifact_file(_repository(), req.path)
        plan_range(path.stat().st_size, req)
    except (ValidationError, Refused):
        return


# --- config files ----------------------------------------------------------------------------
def _agent_config_seeds() -> list[bytes]:
    return [(ROOT / "packaging" / "agent.toml.example").read_bytes(), b"""
device_id = "pump-07"
state_dir = "/var/lib/nanofleet"
[mqtt]
host = "broker.local"
port = 8883
[mqtt.tls]
ca_file = "/etc/nanofleet/ca.crt"
cert_file = "/var/lib/nanofleet/identity/device.crt"
key_file = "/var/lib/nanofleet/identity/device.key"
[[sources]]
kind = "journald"
units = ["pumpd"]
[[sources]]
kind = "mqtt"
topics = ["sensors/+/text"]
host = "127.0.0.1"
[ota]
transport = "mqtt"
root_file = "/etc/nanofleet/root.json"
"""]


def _run_agent_config(data: bytes) -> None:
    path = _workdir() / "agent.toml"
    path.write_bytes(data)
    try:
        load_config(path)
    except ConfigError:
        return


def _scenario_seeds() -> list[bytes]:
    return [p.read_bytes() for p in shipped_scenarios()]


def _run_scenario(data: bytes) -> None:
    path = _workdir() / "scenario.toml"
    path.write_bytes(data)
    try:
        load_scenario(path)
    except ScenarioError:
        return


# --- log lines -------------------------------------------------------------------------------
@functools.cache
def _mqtt_source() -> tuple[MqttTopicSource, ListSink]:
    sink = ListSink(capacity=64)
    cfg = MqttTopicSourceConfig(kind="mqtt", topics=["sensors/#"])
    src = MqttTopicSource("mqtt:sensors/#", cfg, sink, Counters(), 256,
                          AgentBroker(MqttConfig(host="127.0.0.1")))
    return src, sink


def _line_seeds() -> list[bytes]:
    return [b"Dec  3 07:20:42 pump-07 kernel: usb 1-1: new high-speed USB device number 2\n",
            b"pumpd[42]: cycle 7 complete, flow=41.0 l/min\r\ntemp 41 \xc2\xb0C\n\n",
            b"sshd[812]: Failed password for invalid user admin from 10.0.0.5 port 22"]


def _run_lines(data: bytes) -> None:
    counters = Counters()
    for raw in data.split(b"\n"):
        text, truncated = sanitize(raw, 256, counters)
        assert len(text.encode("utf-8", "surrogatepass")) <= 256 * 3 and isinstance(truncated,
                                                                                    bool)
    src, sink = _mqtt_source()
    msg = MQTTMessage(topic=b"sensors/pump1/text")
    msg.payload = data
    src._on_message(None, None, msg)  # type: ignore[arg-type]  # paho's network thread
    sink.lines.clear()


TARGETS = [
    FuzzTarget("agent.query", _query_seeds, _run_query, max_len=70_000),
    FuzzTarget("agent.desired", _desired_seeds, _run_desired, max_len=16_384),
    FuzzTarget("agent.mutes", _mutes_seeds, _run_mutes, max_len=65_536),
    FuzzTarget("server.report", _report_seeds, _run_report, max_len=65_536),
    FuzzTarget("server.artifact-request", _artifact_seeds, _run_artifact, max_len=4096),
    FuzzTarget("config.agent", _agent_config_seeds, _run_agent_config, max_len=16_384),
    FuzzTarget("config.scenario", _scenario_seeds, _run_scenario, max_len=16_384),
    FuzzTarget("agent.lines", _line_seeds, _run_lines, max_len=65_536),
]
