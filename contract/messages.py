"""Messages on the wire, as pydantic models shared by agent and fleet server.

Every message a device publishes carries an :class:`Envelope`: a unique
``msg_id`` and a per-device, per-stream ``seq`` so consumers can drop
duplicates (store-and-forward delivers at least once), plus ``is_historical``
for messages replayed from the device's spool (as Sparkplug B does).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_core import PydanticSerializationError

from contract.bundle_features import MAX_FEATURE_CHARS, MAX_FEATURES
from contract.limits import MAX_STORED_INT
from contract.reasons import ReasonCode
from contract.strict import Strict
from contract.topics import SLOT_PATTERN

# A counter a device reports: any 64-bit value (a busy device's lines_in passes 2^31 in
# months; the server folds what it stores into its columns' range, metrics_store.sample_of).
Counter = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]

MAX_QUERY_BYTES = 64 * 1024
MAX_MODEL_SLOTS = 16  # models one status may list (an agent runs one per slot)
MAX_OTA_DETAIL_CHARS = 4000  # of an OtaEvent's detail (what the fleet server keeps of one)


def new_msg_id() -> str:
    return uuid.uuid4().hex


class Envelope(Strict):
    msg_id: str = Field(default_factory=new_msg_id, min_length=1, max_length=64,
                        description="Unique id (hex uuid4; at most 64 characters).")
    seq: int = Field(ge=0, le=MAX_STORED_INT,
                     description="Monotonic per device and stream; survives restarts.")
    device_id: str = Field(description="The publishing device.")
    ts: float = Field(default_factory=time.time, description="Unix time of creation (s).")
    is_historical: bool = Field(
        default=False, description="True when replayed from the spool after an outage."
    )


class ResultItem(Strict):
    source: str = Field(description="Name of the source the line came from.")
    ts: float = Field(description="Unix time the line was read (or journal timestamp).")
    text: str = Field(description="The line as classified (bounded, valid UTF-8).")
    label: str = Field(description="Most probable label.")
    score: float = Field(description="Probability of `label`.")
    anomaly: float = Field(description="Anomaly score in [0, 1].")
    truncated: bool = Field(default=False, description="The line was cut at max_line_bytes.")


class ResultBatch(Envelope):
    kind: Literal["results"] = "results"
    slot: str = Field(pattern=SLOT_PATTERN, description="Model slot that produced the results.")
    model_version: int = Field(ge=0, le=MAX_STORED_INT,
                               description="Version of the model bundle used.")
    items: list[ResultItem] = Field(description="One entry per line, in source order.")


class Alert(Envelope):
    kind: Literal["alert"] = "alert"
    slot: str = Field(pattern=SLOT_PATTERN, description="Model slot that raised the alert.")
    model_version: int = Field(ge=0, le=MAX_STORED_INT,
                               description="Version of the model bundle used.")
    item: ResultItem = Field(description="The classified line that raised the alert.")
    reason: str = Field(description="Which threshold fired, e.g. 'label thermal >= 0.80'.")
    repeats: int = Field(
        default=0, ge=0, le=MAX_STORED_INT,
        description="Alerts of the same source and label held back since "
        "the previous one was sent (repeat grouping).")


MAX_METRICS = 512  # counters, and gauges, in one metrics report


class Metrics(Envelope):
    kind: Literal["metrics"] = "metrics"
    uptime_s: float = Field(description="Seconds since the agent started.")
    # Bounded: an agent has about a hundred; 14,000 took the server's one ingest thread
    # 70 ms per report to refuse (review, December 2026).
    counters: dict[str, Counter] = Field(max_length=MAX_METRICS,
                                         description="Monotonic counters since start.")
    gauges: dict[str, float] = Field(max_length=MAX_METRICS,
                                     description="Current values (queue depth, latency...).")


class ModelInfo(Strict):
    # Bounded as the bundle manifest bounds them: a device's claims are shown to operators
    # (review, December 2026: unbounded, one status drew a 488 KB console page).
    slot: str = Field(pattern=SLOT_PATTERN, description="Slot name.")
    name: str = Field(min_length=1, max_length=64,
                      description="Model name from the bundle manifest.")
    version: int = Field(ge=0, le=MAX_STORED_INT, description="Monotonic bundle version.")
    label: str = Field(max_length=64, description="Human version label.")
    runtime: str = Field(max_length=32, description="Runtime executing it (onnxruntime, litert).")
    sha256: str = Field(max_length=64, description="Hash of the bundle file.")
    # Agents before this field sent none: a missing one reads False, so a server cannot
    # tell "committed" from "an older agent, maybe on trial" by the value alone; it looks
    # at whether the field was sent (pydantic's ``model_fields_set``).
    trial: bool = Field(default=False,
                        description="The model is live on trial (not committed yet)")


class Status(Envelope):
    kind: Literal["status"] = "status"
    state: Literal["online", "offline", "stopped"] = Field(
        description="online: running; offline: Last Will (connection lost); stopped: clean exit."
    )
    agent_version: str = Field(default="", max_length=64,
                               description="nanofleet agent version.")
    started_at: float = Field(default=0.0, description="Unix time the agent process started.")
    connection: int = Field(
        default=0, ge=0, le=MAX_STORED_INT,
        description="Which broker connection of this agent run the status belongs to: the "
        "number of its CONNECT attempt (1, 2, ...); the Last Will carries the number of the "
        "attempt whose loss it reports. Orders a Will against the next connection's "
        "statuses whatever replica receives them. 0: not sent (agents before December "
        "2026).")
    uptime_s: float = Field(default=0.0, description="Seconds since start.")
    models: list[ModelInfo] = Field(default_factory=list, max_length=MAX_MODEL_SLOTS,
                                    description="Live models per slot.")
    health: Literal["ok", "degraded", "unknown"] = Field(
        default="unknown", description="Pipeline health as seen by the watchdog check."
    )
    # Names, not a Literal: a newer agent's features are kept, not refused (the server
    # compares them with a bundle's, contract.bundle_features).
    reads: list[Annotated[str, Field(max_length=MAX_FEATURE_CHARS)]] | None = Field(
        default=None, max_length=MAX_FEATURES,
        description="The bundle manifest features this agent reads "
        "(contract.bundle_features.BUNDLE_FEATURES of its version): the fleet server does "
        "not send it a bundle that needs another. None: not sent (agents before December "
        "2026).")


class QueryRequest(Strict):
    """A technician query. ``args`` are validated per command by the agent."""

    cmd: str = Field(description="Command: status, models, sources, metrics, ...")
    args: dict[str, Any] = Field(default_factory=dict, description="Command arguments.")


class QueryResponse(Strict):
    ok: bool = Field(description="True when the command ran.")
    cmd: str = Field(default="", description="The command answered.")
    result: Any = Field(default=None, description="Command result when ok.")
    error: str | None = Field(default=None, description="What went wrong, when not ok.")


def parse_query(payload: bytes) -> QueryRequest:
    """Parse a query payload; raises ValueError with a message fit for the caller."""
    if len(payload) > MAX_QUERY_BYTES:
        raise ValueError(f"query too large ({len(payload)} bytes, max {MAX_QUERY_BYTES})")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"query is not valid UTF-8: {exc}") from None
    text = text.strip()
    if not text:
        raise ValueError('empty query: send JSON like {"cmd": "status"}')
    if not text.startswith("{"):
        # Convenience for mosquitto_rr -m status: a bare command word.
        return QueryRequest(cmd=text.split()[0])
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # too deep, or an int of 5000 digits
        raise ValueError(f"query is not valid JSON: {exc}") from None
    try:
        # JSON may escape a lone UTF-16 surrogate ("\ud800"), which is no character: an
        # answer echoing it could not be encoded, so the query is refused here.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("query is not valid JSON text: it escapes a lone UTF-16 surrogate "
                         "(U+D800-U+DFFF)") from None
    except RecursionError:
        raise ValueError("query is not valid JSON: nested too deep") from None
    try:
        return QueryRequest.model_validate(data)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc)) from None


def response_bytes(resp: QueryResponse) -> bytes:
    """The answer as sent; one that cannot be encoded (text that is not Unicode) becomes an
    error answer, so a caller always gets a reply."""
    try:
        return resp.model_dump_json().encode()
    except (ValueError, PydanticSerializationError) as exc:
        return QueryResponse(ok=False, error=f"the answer could not be encoded: {str(exc)[:200]}"
                             ).model_dump_json().encode()


def format_validation_error(exc: ValidationError, most: int = 5) -> str:
    """The first ``most`` errors, then how many more: a list of a thousand bad items makes
    a thousand errors, and an answer 27 times its request (review, December 2026)."""
    errors = exc.errors()
    parts = []
    for err in errors[:most]:
        loc = ".".join(str(p) for p in err["loc"])[:100] or "(root)"
        parts.append(f"{loc}: {str(err['msg'])[:200]}")
    if len(errors) > most:
        parts.append(f"... and {len(errors) - most} more")
    return "; ".join(parts)


# --- desired state and OTA reports ---------------------------------------------------------

OtaState = Literal["idle", "downloading", "verifying", "staged", "smoke_testing", "trial",
                   "committed", "failed", "rolled_back"]


class DesiredModel(Strict):
    model: str = Field(description="Model name (bundle manifest `name`).")
    version: int = Field(ge=1, le=MAX_STORED_INT, description="Wanted bundle version.")


class DesiredState(Strict):
    """Retained on ``dev/{id}/desired``; written by the fleet server only."""

    revision: int = Field(ge=0, le=MAX_STORED_INT,
                          description="Increases with every change of this document.")
    slots: dict[str, DesiredModel] = Field(description="Slot -> wanted model version.")
    metadata_url: str | None = Field(
        default=None, description="TUF metadata base URL; None: the device's configured one.")
    target_base_url: str | None = Field(
        default=None, description="Artifact base URL (mirror/CDN); None: the configured one.")
    rollout_id: str | None = Field(default=None, max_length=64,
                                   description="Rollout this change belongs to.")
    action: Literal["install", "rollback"] = Field(
        default="install", description="rollback: leave trial and return to the previous model.")


def cut_detail(value: object) -> object:
    """A detail past :data:`MAX_OTA_DETAIL_CHARS` cut to it (ending in ``…``): cut, not
    refused, since the agent builds details from exception texts of any length, and a
    refused event would lose the state change it reports."""
    if isinstance(value, str) and len(value) > MAX_OTA_DETAIL_CHARS:
        return value[:MAX_OTA_DETAIL_CHARS - 1] + "…"
    return value


class OtaEvent(Envelope):
    """An OTA state change, published on ``dev/{id}/ota`` (QoS 1)."""

    kind: Literal["ota"] = "ota"
    slot: str = Field(pattern=SLOT_PATTERN, description="Slot being updated.")
    state: OtaState = Field(description="New state.")
    from_version: int | None = Field(default=None, ge=0, le=MAX_STORED_INT,
                                     description="Version live before.")
    to_version: int | None = Field(default=None, ge=0, le=MAX_STORED_INT,
                                   description="Version being installed.")
    rollout_id: str | None = Field(default=None, max_length=64,
                                   description="From the desired state.")
    artifact: Literal["delta", "full"] | None = Field(
        default=None, description="What was downloaded.")
    bytes_downloaded: int | None = Field(default=None, ge=0, le=MAX_STORED_INT,
                                         description="Bytes fetched.")
    # ReasonCode: a code this version does not know (from a newer agent) is kept as text.
    reason: ReasonCode | None = Field(
        default=None, max_length=64, description="Why it failed or rolled back (machine "
        "code, see contract.reasons.OtaReason).")
    # Bounded: a device's text shown to operators (review, December 2026: unbounded).
    detail: Annotated[str | None, BeforeValidator(cut_detail)] = Field(
        default=None, max_length=MAX_OTA_DETAIL_CHARS,
        description="Human explanation (a longer one is cut to 4000 characters).")
