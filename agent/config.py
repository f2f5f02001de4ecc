"""Agent configuration: a TOML file validated by pydantic (unknown keys are errors).

``load_config`` raises :class:`ConfigError` whose lines each name the field path
and a hint, e.g. ``mqtt.port: Input should be less than or equal to 65535 (hint: ...)``.

Secrets: the config is readable by the ``nanofleet`` group (technicians), so the broker
password belongs in ``mqtt.password_file``, a file only the agent's user can read;
``load_config`` reads it and refuses one that group or others can read. An inline
``mqtt.password`` still works (older configs) but is reported when the config file is
readable by anyone but its owner.
"""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator

from agent.journal_catalog import CatalogEvidenceConfig
from agent.keyword_evidence import KeywordEvidenceConfig
from agent.level_evidence import LevelEvidenceConfig
from agent.ota.config import OtaConfig
from agent.sources.mqtt_topic_config import (
    MqttTopicSourceConfig,
    reads_agent_input,
    reads_own_output,
)
from agent.sources.registry import SourceConfig, default_source_name
from contract.strict import Strict
from contract.topics import DEVICE_ID_PATTERN, SLOT_PATTERN, device_root


class TlsConfig(Strict):
    ca_file: Path = Field(description="CA certificate (PEM) that signed the broker's certificate.")
    cert_file: Path | None = Field(
        default=None, description="Client certificate (PEM); CN = device id for brokers that map "
        "the certificate identity to the username.")
    key_file: Path | None = Field(default=None, description="Client private key (PEM).")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both cert_file and key_file, or neither")
        return self


class MqttConfig(Strict):
    host: str = Field(description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker TCP port.")
    client_id: str | None = Field(
        default=None, description="MQTT client id; default: nanofleet-<device_id>.")
    username: str | None = Field(default=None, description="Username, if the broker wants one.")
    password: SecretStr | None = Field(
        default=None, description="Password (never logged). Prefer password_file: this file "
        "is readable by the nanofleet group.")
    password_file: Path | None = Field(
        default=None, description="File holding the broker password (one line), readable by "
        "the agent's user only (mode 0600 or 0400: a group- or world-readable file is "
        "refused).")
    tls: TlsConfig | None = Field(default=None, description="TLS settings; omit for plain TCP.")
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive (s).")
    max_inflight: int = Field(default=20, ge=1, le=1000,
                              description="QoS 1 messages in flight before waiting for PUBACKs.")
    reconnect_max_s: int = Field(default=30, ge=1, le=3600,
                                 description="Longest wait between reconnect attempts (s).")

    @model_validator(mode="after")
    def _one_password(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password_file or password, not both (password_file keeps "
                             "the secret out of this group-readable file)")
        return self


class PipelineConfig(Strict):
    queue_size: int = Field(default=2048, ge=10, le=1_000_000,
                            description="Lines held in memory between sources and the model.")
    batch_size: int = Field(default=64, ge=1, le=4096, description="Lines per inference batch.")
    batch_min_lines: int = Field(
        default=20, ge=1, le=4096,
        description="A batch runs as soon as this many lines wait (at most batch_size are "
        "taken). A file source reads about this many lines at a time (its read window is "
        "the time they take to arrive, within read_coalesce_ms..batch_max_wait_ms) and a "
        "read is classified as one batch. With batch_max_wait_ms it sets the trade "
        "between CPU and latency: at 1,000 lines/s 20 lines arrive in 20 ms.")
    batch_max_wait_ms: int = Field(
        default=200, ge=0, le=60_000,
        description="Longest a line waits, from when its source noticed it, for its batch "
        "to reach batch_min_lines (ms). Each batch has a fixed cost (a read, the featurizer, "
        "a runtime call, a spool transaction, a publish), so when lines trickle in one batch "
        "per window is what keeps the agent's CPU low: 100 lines/s cost ~1.5 % of a core "
        "with 200 ms, ~2.5 % with 100 ms. Lower it for lower latency at low rates.")
    max_line_bytes: int = Field(default=2048, ge=64, le=1_048_576,
                                description="Longer lines are truncated (and counted).")
    publish_text: bool = Field(default=True,
                               description="Include each line's text in published results.")
    heap_trim_interval_s: float = Field(
        default=10.0, ge=0, le=3600,
        description="After a batch, hand the C heap's freed pages back to the system "
        "(glibc malloc_trim) if this long passed since the last time (s). With LiteRT "
        "~0.5 MB less resident at 10 s, ~1 MB at 2 s (nothing measurable with ONNX "
        "Runtime); each trim costs ~0.5 ms plus re-faulting the pages the next batches "
        "touch (2 s: +0.05-0.2 % of a core at 100 lines/s). An idle agent never trims. "
        "0 turns it off.")


class ModelConfig(Strict):
    slot: str | None = Field(
        default=None, pattern=SLOT_PATTERN,
        description="Slot this model serves (results/<slot>, status, OTA state); default: the "
        "slot named in the live bundle's manifest. Set it only to rename the slot on this "
        "device; deployments must then name the same slot.")
    bundle: Path | None = Field(
        default=None, description="Model bundle (.nfb) to start with when no update has been "
        "installed; default: the nano model shipped with the agent.")
    runtime: Literal["onnxruntime", "litert"] = Field(
        default="onnxruntime", description="Preferred runtime; the other is used, with a "
        "warning, when this one is not installed.")
    threads: int = Field(default=1, ge=1, le=64, description="Runtime threads.")
    level_evidence: LevelEvidenceConfig = Field(
        default_factory=LevelEvidenceConfig, description="Weigh in the level a program "
        "logged a line at, where the source knows it (journald's PRIORITY).")
    catalog_evidence: CatalogEvidenceConfig = Field(
        default_factory=CatalogEvidenceConfig, description="Weigh in the service manager's "
        "journal catalog id of a failure (MESSAGE_ID: a unit failed, a start job failed), "
        "where the source knows it.")
    keyword_evidence: KeywordEvidenceConfig = Field(
        default_factory=KeywordEvidenceConfig, description="How the keywords weigh in on "
        "the lines of sources with `keyword_evidence = true` (software the model has never "
        "read: agent.keyword_evidence).")


class AlertRule(Strict):
    label: str = Field(description="Label that raises an alert.")
    min_score: float = Field(ge=0.0, le=1.0, description="Probability at or above which it fires.")


class AlertConfig(Strict):
    default_min_score: float = Field(
        default=0.8, ge=0.0, le=1.0,
        description="Any label other than the model's normal label at or above this fires.")
    rules: list[AlertRule] = Field(
        default_factory=list, description="Per-label thresholds overriding the default.")
    anomaly_threshold: float = Field(
        default=0.95, ge=0.0, le=1.0, description="Anomaly score at or above this fires.")
    max_per_minute: int = Field(
        default=600, ge=1, description="Alert rate limit; excess is counted, not published.")
    repeat_window_s: float = Field(
        default=10.0, ge=0.0, le=86_400.0,
        description="Repeats of an alert (same source and label; for the journal also the "
        "same _UID, the user the kernel says logged it) within this window are "
        "held back and counted; the next alert sent says how many. 0: send every one.")
    recent: int = Field(default=500, ge=1, le=100_000,
                        description="Alerts kept in memory for the recent_alerts query.")
    explain: bool = Field(
        default=True, description="Name, in each alert's reason, the words that pushed the "
        "line towards an alert (as classify --explain does): about 1 ms per alert sent and "
        "~0.3 MB for the weights, read on the first alert. A bundle whose model is not the "
        "nano network sends its alerts without words.")
    mutes: bool = Field(
        default=True, description="Accept alert mutes from the fleet server (an operator's "
        "\"this line is a false alarm here\": alerts of that message shape are not sent; "
        "the lines are still classified and published); false: ignore them (every alert "
        "is sent).")
    mute_storm_per_minute: int = Field(
        default=30, ge=1, le=100_000,
        description="A muted shape seen more often than this in a minute is alerted again: "
        "a storm of one line is not the device's normal.")


class SpoolConfig(Strict):
    max_messages: int = Field(default=100_000, ge=100,
                              description="Messages kept on disk while the broker is away.")
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024,
                           description="Bytes kept on disk; beyond, the oldest are dropped.")
    report_rate_per_s: float = Field(
        default=50.0, ge=1.0, le=10_000.0,
        description="Alerts and OTA events are sent at most this fast (after a burst of "
        "twice as many, at most 100), the rest of the outbox waiting behind them: the fleet "
        "server keeps at most 200 reports of one device waiting to be stored and drops the "
        "rest unread, though the broker acknowledged them. An alert storm or the alerts "
        "spooled during an outage sent at full speed lost a third or more.")


class ControlConfig(Strict):
    socket: Path | None = Field(
        default=None, description="Unix socket for the local CLI; default <state_dir>/agent.sock.")
    socket_mode: int = Field(default=0o660, ge=0, le=0o777,
                             description="Permissions of the socket (who may query).")


class AgentConfig(Strict):
    device_id: str = Field(pattern=DEVICE_ID_PATTERN,
                           description="This device's id; appears in every topic.")
    state_dir: Path = Field(description="Writable directory for spool, checkpoints, models.")
    mqtt: MqttConfig = Field(description="Broker connection.")
    sources: list[SourceConfig] = Field(min_length=1, description="Where lines come from.")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig,
                                     description="Queueing and batching.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The live model.")
    alerts: AlertConfig = Field(default_factory=AlertConfig, description="Alert thresholds.")
    spool: SpoolConfig = Field(default_factory=SpoolConfig, description="Store-and-forward.")
    control: ControlConfig = Field(default_factory=ControlConfig, description="Local CLI socket.")
    metrics_interval_s: float = Field(default=30.0, ge=1.0, le=3600.0,
                                      description="How often metrics are published (s).")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level.")
    # --- OTA (agent/ota) ---
    ota: OtaConfig | None = Field(
        default=None, description="Signed model updates (TUF repository, trial health "
        "criteria); omit to run the configured bundle only.")

    @model_validator(mode="after")
    def _unique_sources(self) -> AgentConfig:
        names = [self.source_name(i) for i in range(len(self.sources))]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}; "
                             "set `name` on each [[sources]] entry")
        return self

    @model_validator(mode="after")
    def _one_handler_per_filter(self) -> AgentConfig:
        """MQTT sources on the agent's own broker share its connection, where a filter has
        one handler: a second source with the same filter took the first one's messages,
        and stopping either unsubscribed both (review, December 2026)."""
        seen: dict[str, int] = {}
        for i, src in enumerate(self.sources):
            if not isinstance(src, MqttTopicSourceConfig) or src.host is not None:
                continue
            for topic in src.topics:
                if topic in seen:
                    raise ValueError(f"sources[{i}].topics: {topic!r} is also a filter of "
                                     f"sources[{seen[topic]}] on the agent's broker: give it "
                                     "to one source")
                seen[topic] = i
        return self

    @model_validator(mode="after")
    def _no_source_reads_own_output(self) -> AgentConfig:
        for i, src in enumerate(self.sources):
            for topic in src.topics if isinstance(src, MqttTopicSourceConfig) else []:
                if reads_own_output(topic, self.device_id):
                    raise ValueError(
                        f"sources[{i}].topics: {topic!r} matches the agent's own topics "
                        f"({device_root(self.device_id)}/results/..., alerts, metrics, ...): "
                        "the agent would classify its own output for ever; subscribe to the "
                        "sensors' topics only (e.g. sensors/#)")
                if reads_agent_input(topic, self.device_id):
                    raise ValueError(
                        f"sources[{i}].topics: {topic!r} matches a topic the agent itself "
                        f"reads ({device_root(self.device_id)}/query, desired, mutes, "
                        "artifacts/chunk/...): the source would take the agent's own "
                        "messages; subscribe to the sensors' topics only (e.g. sensors/#)")
        return self

    def source_name(self, index: int) -> str:
        cfg = self.sources[index]
        return cfg.name or default_source_name(cfg)

    @property
    def control_socket(self) -> Path:
        return self.control.socket or self.state_dir / "agent.sock"


_HINTS = {
    "missing": "add this key",
    "extra_forbidden": "unknown key: check the spelling, or remove it",
    "union_tag_invalid": "kind must be one of: file, journald, mqtt",
    "union_tag_not_found": "add kind = \"file\" | \"journald\" | \"mqtt\"",
    "string_pattern_mismatch": "see the allowed characters in the docs",
    "int_parsing": "use a whole number",
    "float_parsing": "use a number",
    "bool_parsing": "use true or false",
    "literal_error": "use one of the listed values",
    "greater_than_equal": "raise the value",
    "less_than_equal": "lower the value",
    "too_short": "add at least one entry",
}


class ConfigError(ValueError):
    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{path}: invalid configuration:\n  " + "\n  ".join(problems))


def _describe_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = _loc(err["loc"])
        hint = _HINTS.get(err["type"], "")
        problems.append(f"{loc}: {err['msg']}" + (f" (hint: {hint})" if hint else ""))
    return problems


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p in ("file", "journald", "mqtt") and out.endswith("]"):
            continue  # discriminator tag pydantic inserts: not a key the user wrote
        else:
            out += ("." if out else "") + str(p)
    return out or "(top level)"


def parse_config(data: dict[str, Any], origin: Path | str = "<config>") -> AgentConfig:
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(origin, _describe_errors(exc)) from None


MAX_SECRET_BYTES = 4096
log = logging.getLogger("nanofleet.agent.config")


def read_secret_file(path: Path, field: str) -> str:
    """The secret in ``path`` (one line); ValueError naming ``field`` if the file can be
    read by group or others, is not a regular file, or is empty or too long."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise ValueError(f"{field}: cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{field}: {path} is not a regular file")
        if st.st_mode & 0o077:
            raise ValueError(f"{field}: {path} is readable by group or others (mode "
                             f"{stat.S_IMODE(st.st_mode):04o}): it holds a secret; chmod 600 "
                             f"{path} (owned by the agent's user, e.g. chown nanofleet)")
        data = f.read(MAX_SECRET_BYTES + 1)
    text = data.decode("utf-8", "replace").rstrip("\r\n")
    if not text or len(data) > MAX_SECRET_BYTES or "\n" in text:
        raise ValueError(f"{field}: {path} must hold the secret on one line "
                         f"(1..{MAX_SECRET_BYTES} bytes)")
    return text


def resolve_secrets(cfg: AgentConfig, path: Path, mode: int) -> AgentConfig:
    """Read ``mqtt.password_file`` into ``mqtt.password``; note an inline password in a
    config that others can read (``mode``: the config file's)."""
    if cfg.mqtt.password_file is not None:
        try:
            secret = read_secret_file(cfg.mqtt.password_file, "mqtt.password_file")
        except ValueError as exc:
            raise ConfigError(path, [str(exc)]) from None
        cfg.mqtt.password = SecretStr(secret)
    elif cfg.mqtt.password is not None and mode & 0o077:
        log.warning("%s: mqtt.password is in a file readable by group or others (mode %04o): "
                    "every technician in its group can read the broker password; move it to "
                    "mqtt.password_file (mode 0600, the agent's user)", path, mode & 0o777)
    return cfg


def load_config(path: Path, secrets: bool = True) -> AgentConfig:
    """The validated config; ``secrets`` reads ``password_file`` too (not for tools that
    only need the socket path, run by technicians who may not read the secret)."""
    try:
        raw = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, ["the file is not UTF-8 text"]) from None
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, 5000-digit ints, depth
        raise ConfigError(path, [f"TOML syntax error: {exc}"]) from None
    cfg = parse_config(data, path)
    return resolve_secrets(cfg, path, mode) if secrets else cfg


