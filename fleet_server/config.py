"""Fleet server configuration: a TOML file validated by pydantic (unknown keys are errors).

Everything the server keeps lives under ``data_dir`` unless configured otherwise::

    <data_dir>/fleet.db          inventory, releases, desired state (SQLite default)
    <data_dir>/repository/       the signed TUF repository, served under /repo/
    <data_dir>/keys/             ONLINE keys only: snapshot.pem, timestamp.pem, deltas.pem
    <data_dir>/uploads/          temporary files of uploads in progress

Operator tokens are stored as SHA-256 hashes (the tokens are 256-bit random
strings, so a plain hash is enough; there is nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator

from contract.strict import Strict
from fleet_server.console.settings import ConsoleSettings, MetricsRetention
from fleet_server.identity.settings import EnrollmentSettings
from fleet_server.repository.expiry import ExpiryPolicy

TOKEN_HASH_PATTERN = r"^[0-9a-f]{64}$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


class MqttTls(Strict):
    ca_file: Path = Field(description="CA certificate (PEM) that signed the broker's certificate.")
    cert_file: Path | None = Field(default=None, description="Client certificate (PEM).")
    key_file: Path | None = Field(default=None, description="Client private key (PEM).")

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("set both cert_file and key_file, or neither")
        return self


class MqttSettings(Strict):
    host: str = Field(default="127.0.0.1", description="Broker host name or address.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker TCP port.")
    client_id: str = Field(default="nanofleet-server", min_length=1, max_length=128,
                           description="MQTT client id, unique per server replica (a "
                           "replica refuses to start under an id a running one holds; see "
                           "docs/scaling.md). Also names the replica and its rollout lease.")
    username: str | None = Field(default=None, description="Username, if the broker wants one.")
    password: SecretStr | None = Field(default=None, description="Password (never logged).")
    tls: MqttTls | None = Field(default=None, description="TLS settings; omit for plain TCP.")
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive (s).")
    shared_group: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Subscribe to device reports as the MQTT v5 shared subscription "
        "$share/<group>/... so several server replicas split the work; None: plain subscription.")
    enabled: bool = Field(default=True, description="False: run without a broker (API only).")
    flood_shed_reports: int = Field(
        default=1000, ge=50, le=1_000_000,
        description="A device is flooding when this many of its reports were dropped unread "
        "(each over its ingest budget: 200 reports waiting) in one run of shedding (no "
        "pause over 5 s) that has lasted flood_min_s. A healthy agent is never shed live.")
    flood_min_s: float = Field(
        default=30.0, ge=1, le=3600,
        description="How long such a run must last (s): an agent back from a long outage "
        "sends its spooled alerts in a burst of seconds that may be shed thousands of "
        "times; a flood goes on.")
    flood_quarantine_s: float = Field(
        default=900.0, ge=0, le=86400,
        description="How long a flooding device is quarantined at the broker (its id denied "
        "every topic in the device ACL, the broker reloaded through "
        "enrollment.broker_reload_command); doubled for each earlier quarantine of the "
        "device in the last 24 hours, up to 24 hours. 0: never automatically (the server "
        "only logs the flood).")


class DeltaSettings(Strict):
    previous_versions: int = Field(
        default=3, ge=0, le=50,
        description="On publish, compute deltas from this many earlier versions (K); 0: none.")
    max_fraction: float = Field(
        default=0.5, gt=0, le=1,
        description="Publish a delta only when it is smaller than this fraction of the bundle.")
    level: int = Field(default=19, ge=1, le=22, description="zstd level for delta payloads.")
    time_budget_s: float = Field(
        default=120.0, gt=0, le=180,
        description="Seconds a publish may spend building deltas: the first (a runtime "
        "variant's from the newest earlier version) is always built, the others only if they "
        "can end within the budget judged by the slowest so far, so one at most ends past it "
        "(the publish answers after them, and the CLI waits 300 s; devices on a skipped "
        "version download the full bundle).")
    keep_target_versions: int = Field(
        default=3, ge=1, le=50,
        description="Deltas leading to one of this many newest versions stay listed; older "
        "ones are removed from the delta role on the next publish.")


class ArtifactSettings(Strict):
    """Artifacts over MQTT (fleet_server/artifact_stream.py): repository files for devices
    that reach only the broker."""

    enabled: bool = Field(default=True, description="Serve artifact requests over MQTT "
                          "(needs mqtt.enabled).")
    shared_group: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="Subscribe to requests as $share/<group>/... so replicas split them; "
        "None: plain subscription (every replica would answer every request). Use a name "
        "devices cannot guess: a device joining the group would take its share of requests "
        "(`nanofleet server init` writes a random one).")
    workers: int = Field(default=4, ge=1, le=64,
                         description="Requests served at the same time (reading and publishing).")
    queue_size: int = Field(default=256, ge=1, le=100_000,
                            description="Requests waiting for a worker; more are answered busy.")
    per_device_pending: int = Field(
        default=2, ge=1, le=64,
        description="Requests of one device waiting or in service; more are answered busy. "
        "Below `workers` (when there are several), so one device never holds them all.")
    device_rate_bytes_s: int = Field(
        default=4 * 1024 * 1024, ge=64 * 1024,
        description="Bytes per second one device may fetch (token bucket, bursts of one "
        "second's worth); over it, requests are answered rate-limited with the time to wait. "
        "Every request is charged, a refused one 64 KiB and a chunk at least 4 KiB.")
    device_requests_per_s: int = Field(
        default=50, ge=1, le=100_000,
        description="Requests one device may send a second (bursts of two seconds' worth); "
        "more are dropped unanswered before they are read, and counted (`dropped`): the "
        "agent asks again after its retry time. An agent at full rate asks ~16 a second.")
    publish_timeout_s: float = Field(
        default=30.0, gt=0, le=600,
        description="Longest wait for the broker to acknowledge one request's chunks.")

    @model_validator(mode="after")
    def _one_device_leaves_workers_free(self) -> ArtifactSettings:
        if self.workers > 1 and self.per_device_pending >= self.workers:
            raise ValueError(
                f"per_device_pending ({self.per_device_pending}) must be below workers "
                f"({self.workers}): one device's requests would hold every worker; set "
                f"per_device_pending = {self.workers - 1} or more workers")
        return self


class OperatorToken(Strict):
    name: str = Field(pattern=_NAME, description="Who uses the token (shown in the audit log).")
    sha256: str = Field(pattern=TOKEN_HASH_PATTERN,
                        description="SHA-256 (hex) of the token; the token itself is not stored.")
    scopes: list[Literal["read", "deploy", "admin"]] = Field(
        default=["admin"], min_length=1,
        description="read: look; deploy: publish, deploy, rollouts, tagging (and read); "
        "admin: manage tokens (and everything). Config tokens are admin by default.")


class ServerConfig(Strict):
    data_dir: Path = Field(description="Directory for the database, repository and online keys.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/fleet; "
        "default: sqlite:///<data_dir>/fleet.db.")
    repository_dir: Path | None = Field(
        default=None, description="TUF repository directory; default <data_dir>/repository.")
    online_keys_dir: Path | None = Field(
        default=None, description="Directory with snapshot.pem, timestamp.pem and (optional) "
        "deltas.pem; default <data_dir>/keys.")
    bind_host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    bind_port: int = Field(default=8080, ge=0, le=65535, description="HTTP port (0: any free).")
    public_url: str | None = Field(
        default=None, pattern=r"^https?://",
        description="Base URL devices reach this server (or a mirror) at; put into desired "
        "state as <url>/repo/metadata and <url>/repo/targets. None: devices use their own "
        "configured URLs.")
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Broker connection.")
    deltas: DeltaSettings = Field(default_factory=DeltaSettings, description="Delta policy.")
    artifacts: ArtifactSettings = Field(default_factory=ArtifactSettings,
                                        description="Artifacts over MQTT for devices without "
                                        "an HTTP route.")
    expiry: ExpiryPolicy = Field(default_factory=ExpiryPolicy,
                                 description="Metadata lifetimes and re-sign threshold.")
    timestamp_check_s: float = Field(
        default=300.0, ge=0.05, le=86_400,
        description="How often the server checks whether timestamp/snapshot/deltas need "
        "re-signing (they are re-signed when less than expiry.resign_fraction is left).")
    operator_tokens: list[OperatorToken] = Field(
        default_factory=list, description="Bearer tokens allowed on /api/v1 (hashed).")
    enrollment: EnrollmentSettings = Field(
        default_factory=EnrollmentSettings,
        description="Device enrollment: certificate lifetime, tokens, the broker devices use.")
    console: ConsoleSettings = Field(default_factory=ConsoleSettings,
                                     description="The operators' web console (/console).")
    metrics: MetricsRetention = Field(default_factory=MetricsRetention,
                                      description="Device metrics and alerts kept for the "
                                      "console's plots (retention, downsampling).")
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, ge=1024,
                                  description="Largest upload accepted for one publish.")
    max_concurrent_publishes: int = Field(
        default=2, ge=1, le=64,
        description="Publishes this server receives at once; more are refused with 429 "
        "(publish-busy) before their body is read. Each holds up to about twice "
        "max_upload_bytes on disk while it is received.")
    rollout_tick_s: float = Field(
        default=1.0, ge=0.01, le=60,
        description="How often the rollout driver re-evaluates active rollouts (it also "
        "wakes at once when a device report moves a rollout on).")
    rollout_lease_s: float = Field(
        default=15.0, ge=0.5, le=600,
        description="With several replicas on one database: how long the replica driving "
        "rollouts holds its lease without renewing it (it renews every tick). A replica that "
        "died without releasing it is replaced after this long; it also sets how often "
        "replicas renew their registration (a fifth of it).")
    recent_events: int = Field(default=50, ge=1, le=10_000,
                               description="OTA events shown per device by default.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level.")

    @model_validator(mode="after")
    def _lease_outlives_ticks(self) -> ServerConfig:
        if self.rollout_lease_s < 3 * self.rollout_tick_s:
            raise ValueError(f"rollout_lease_s ({self.rollout_lease_s}) must be at least three "
                             f"rollout ticks ({3 * self.rollout_tick_s}): the driving replica "
                             "renews its lease once per tick")
        return self

    @model_validator(mode="after")
    def _unique_tokens(self) -> ServerConfig:
        names = [t.name for t in self.operator_tokens]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"operator token names must be unique, repeated: {dupes}")
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'fleet.db'}"

    @property
    def repo_path(self) -> Path:
        return self.repository_dir or self.data_dir / "repository"

    @property
    def keys_path(self) -> Path:
        return self.online_keys_dir or self.data_dir / "keys"

    @property
    def uploads_path(self) -> Path:
        return self.data_dir / "uploads"

    def repo_urls(self) -> tuple[str | None, str | None]:
        """(metadata URL, target base URL) for desired state, from ``public_url``."""
        if self.public_url is None:
            return None, None
        base = self.public_url.rstrip("/")
        return f"{base}/repo/metadata/", f"{base}/repo/targets/"


def new_operator_token() -> str:
    """A fresh operator token. The ``nfo_`` prefix makes leaked tokens easy to spot (and
    to scan for), and keeps a token from starting with '-', which command lines would
    take for an option."""
    return f"nfo_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ServerConfigError(ValueError):
    def __init__(self, origin: Path | str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{origin}: invalid server configuration:\n  " + "\n  ".join(problems))


def _describe(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        hint = " (hint: unknown key: check the spelling)" if err["type"] == "extra_forbidden" \
            else ""
        out.append(f"{loc}: {err['msg']}{hint}")
    return out


def parse_config(data: dict[str, Any], origin: Path | str = "<config>") -> ServerConfig:
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as exc:
        raise ServerConfigError(origin, _describe(exc)) from None


def load_config(path: Path) -> ServerConfig:
    """Read and validate a TOML config; relative paths are taken from the file's directory."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ServerConfigError(path, [f"cannot read the file: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise ServerConfigError(path, [f"not UTF-8: {exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ServerConfigError(path, [f"not valid TOML: {exc}"]) from None
    config = parse_config(data, path)
    base = path.parent.resolve()

    def rel(p: Path | None) -> Path | None:
        return None if p is None or p.is_absolute() else base / p

    updates: dict[str, Any] = {"data_dir": rel(config.data_dir) or config.data_dir}
    for key in ("repository_dir", "online_keys_dir"):
        value = getattr(config, key)
        if value is not None:
            updates[key] = rel(value) or value
    return config.model_copy(update=updates)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list) and all(not isinstance(v, dict) for v in value):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def to_toml(data: dict[str, Any], _prefix: str = "") -> str:
    """Plain TOML for config data: scalars, lists, tables, arrays of tables (None skipped)."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in data.items():
        if value is None:
            continue
        name = f"{_prefix}.{key}" if _prefix else key
        if isinstance(value, dict):
            tables.append(f"\n[{name}]\n" + to_toml(value, name))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables += [f"\n[[{name}]]\n" + to_toml(v, name) for v in value]
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + ("\n" if lines else "") + "".join(tables)


def config_toml(config: ServerConfig) -> str:
    """``config`` as a TOML file that :func:`load_config` reads back unchanged."""
    data = config.model_dump(mode="json", exclude_none=True)
    mqtt = config.mqtt
    if mqtt.password is not None:
        data["mqtt"]["password"] = mqtt.password.get_secret_value()
    return "# nanofleet fleet server (see docs/fleet-server.md)\n" + to_toml(data)


def render_config(data_dir: Path, *, token_name: str, token_sha256: str,
                  bind_host: str = "127.0.0.1", bind_port: int = 8080,
                  public_url: str | None = None, mqtt_host: str = "127.0.0.1",
                  mqtt_port: int = 1883) -> str:
    """A starting config file (what ``nanofleet server init`` writes)."""
    # Mosquitto's ACL does not check subscriptions: a device that guessed a $share group
    # would take its turn and drop reports or requests meant for the server. A random
    # group name per installation (replicas share the config) closes that.
    group = f"fleet-{secrets.token_hex(8)}"
    config = ServerConfig(
        data_dir=data_dir, bind_host=bind_host, bind_port=bind_port, public_url=public_url,
        mqtt=MqttSettings(host=mqtt_host, port=mqtt_port, shared_group=group),
        artifacts=ArtifactSettings(shared_group=group),
        operator_tokens=[OperatorToken(name=token_name, sha256=token_sha256)])
    return config_toml(config)
