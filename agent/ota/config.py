"""Configuration of the device's OTA client (the ``[ota]`` table of the agent config).

The runtime the smoke test uses is the agent's own ``model.runtime``: a model is
tested on exactly the runtime that will serve it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from contract.artifacts import (
    MAX_CHUNK_BYTES,
    MAX_REQUEST_CHUNKS,
    MIN_CHUNK_BYTES,
)
from contract.bundle import MAX_BUNDLE_BYTES
from contract.strict import Strict

MQTT_URL_PREFIX = "mqtt:"  # mqtt:<repository path>, fetched through the device's broker
MQTT_DEFAULT_URLS = {"metadata_url": "mqtt:metadata/", "target_base_url": "mqtt:targets/"}


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://", MQTT_URL_PREFIX)):
        raise ValueError(f"{value!r} is not an http://, https:// or mqtt: URL")
    return value


def transport_of(url: str) -> Literal["http", "mqtt"]:
    """Which transport fetches ``url``: ``mqtt:`` URLs go through the broker."""
    return "mqtt" if url.startswith(MQTT_URL_PREFIX) else "http"


class TrialConfig(Strict):
    """When a new model in trial is committed, and what makes it roll back."""

    duration_s: float = Field(
        default=60.0, ge=0.0, le=86_400.0,
        description="Shortest trial: the new model serves this long before a verdict.")
    min_inferences: int = Field(
        default=200, ge=0, le=10_000_000,
        description="Lines the new model must classify before a verdict (unless timeout_s).")
    timeout_s: float = Field(
        default=900.0, gt=0.0, le=7 * 86_400.0,
        description="Longest trial: a verdict is made then even with fewer lines.")
    on_low_traffic: Literal["commit", "rollback"] = Field(
        default="commit",
        description="Verdict at timeout_s when fewer than min_inferences lines came in and "
        "nothing else was wrong (the smoke test passed, so commit is the default).")
    max_error_rate: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="Failed inferences / lines above which the model is rolled back (0: any "
        "failure rolls back).")
    max_nonfinite_rate: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="Share of output rows with NaN/inf above which the model is rolled back.")
    prob_sum_tolerance: float = Field(
        default=1e-3, gt=0.0, le=1.0,
        description="A row of probabilities whose sum is further than this from 1 is insane.")
    max_bad_sum_rate: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="Share of rows whose probabilities do not sum to 1 that is tolerated.")
    max_latency_ratio: float = Field(
        default=3.0, ge=1.0, le=1000.0,
        description="Rolled back when its p99 batch latency exceeds the old model's by this "
        "factor (both measured on the same lines).")
    latency_floor_ms: float = Field(
        default=5.0, ge=0.0, le=60_000.0,
        description="A p99 below this is never a latency failure (timer noise on tiny models).")
    collapse_share: float = Field(
        default=0.95, gt=0.0, le=1.0,
        description="Output collapse: at least this share of the sampled lines get one label...")
    collapse_margin: float = Field(
        default=0.3, gt=0.0, le=1.0,
        description="...while the old model gives that label to at most (share - margin) of "
        "the same lines.")
    swap_min_lines: int = Field(
        default=8, ge=1, le=100_000,
        description="Swapped labels: a label the old model gave to at least this many "
        "sampled lines is followed to the label the new model gives most of them...")
    swap_share: float = Field(
        default=0.6, gt=0.5, le=1.0,
        description="...when that is at least this share of them; labels that lead to each "
        "other in a ring (security -> hardware -> security) are a mix-up of the output "
        "order, rolled back.")
    flag_threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0,
        description="A sampled line counts as flagged when its anomaly is above this (the "
        "model's own flag), for the two checks below.")
    max_flag_ratio: float = Field(
        default=3.0, ge=1.0, le=1000.0,
        description="Alert storm: rolled back when the new model leaves this many times "
        "fewer of the sampled lines unflagged than the old model...")
    flag_margin: float = Field(
        default=0.1, ge=0.0, le=1.0,
        description="...and more than the old share plus this (so a few more flags on a quiet "
        "device are no storm).")
    silence_min_flags: int = Field(
        default=0, ge=0, le=100_000,
        description="Silence: rolled back when the old model flagged at least this many "
        "sampled lines and the new one none. 0 (default): off, because a site's fine-tune "
        "that ends a device's false alarms looks exactly like that.")
    max_memory_growth_mb: float = Field(
        default=64.0, ge=0.0, le=1_048_576.0,
        description="Refused before it goes live (or rolled back in its trial) when the "
        "agent's peak resident memory grows by more than this many MiB, plus four times the "
        "new bundle's size, from just before the new model loads (both models are loaded "
        "then; the shipped model adds ~4-7 MiB). 0: not checked.")
    sample_lines: int = Field(
        default=256, ge=1, le=100_000,
        description="Trial lines kept (reservoir sample) to compare new and old models on.")
    min_sample_lines: int = Field(
        default=20, ge=1, le=100_000,
        description="Fewer sampled lines than this: topped up with the bundles' own example "
        "lines (golden vectors) for the comparison.")

    @model_validator(mode="after")
    def _consistent(self) -> TrialConfig:
        if self.timeout_s < self.duration_s:
            raise ValueError(f"timeout_s ({self.timeout_s}) must be at least duration_s "
                             f"({self.duration_s})")
        return self


class OtaConfig(Strict):
    """Signed model updates: where the repository is, limits, and trial health criteria."""

    transport: Literal["http", "mqtt"] = Field(
        default="http",
        description="How metadata and targets are fetched: http (HTTP(S) URLs, resumed with "
        "Range) or mqtt (chunked streams through the agent's broker, for devices with no HTTP "
        "route; URLs are then mqtt:metadata/ and mqtt:targets/, the defaults). Integrity is "
        "the same either way: signed TUF lengths and hashes.")
    metadata_url: str = Field(
        description="Base URL of the TUF metadata (…/metadata); a desired state may name a "
        "mirror instead. Every byte is verified against the provisioned root, whoever serves it.")
    target_base_url: str = Field(
        description="Base URL of the target files (…/targets), e.g. the fleet server or a CDN.")
    root_file: Path = Field(
        description="The root.json this device was provisioned with: the start of all trust. "
        "Copied into the state directory on first use; later root rotations are followed.")
    ca_file: Path | None = Field(
        default=None, description="CA bundle (PEM) for https URLs; default: system CAs.")
    check_interval_s: float = Field(
        default=300.0, ge=1.0, le=86_400.0,
        description="How often the desired state is looked at again without a new message "
        "(retries after a transient failure such as an unreachable server).")
    rejected_hold_s: float = Field(
        default=86_400.0, ge=0.0, le=366 * 86_400.0,
        description="A version this device refused for its own fault (smoke test, labels, "
        "trial health) is not tried again for this long, whatever new revision asks for it: "
        "a server cannot make a bad model go live again and again (0: no hold).")
    retry_after_s: float = Field(
        default=300.0, ge=0.0, le=86_400.0,
        description="Wait at least this long before retrying an update that failed for a "
        "transient reason (network, expired metadata, not yet published).")
    http_timeout_s: float = Field(
        default=30.0, gt=0.0, le=600.0, description="No byte for this long: the transfer fails.")
    min_download_rate: float = Field(
        default=1024.0, ge=0.0,
        description="Bytes/s a transfer (HTTP or MQTT) must average once it is "
        "http_timeout_s old: a server dripping bytes cannot hold an update longer than about "
        "http_timeout_s + length / min_download_rate (0: no rate bound).")
    download_attempts: int = Field(
        default=3, ge=1, le=20,
        description="Tries per download within one update attempt (each resumes with Range).")
    max_download_bytes: int = Field(
        default=MAX_BUNDLE_BYTES, ge=1024, le=MAX_BUNDLE_BYTES,
        description="Refuse artifacts whose signed length is larger than this.")
    min_free_bytes: int = Field(
        default=16 * 1024 * 1024, ge=0,
        description="Disk space to leave free in the state directory after downloading.")
    max_resumes: int = Field(
        default=3, ge=0, le=100,
        description="Restarts in the middle of one update before it is given up as "
        "'crash-loop' (a model that kills the process must not do so forever).")
    boot_id_file: Path = Field(
        default=Path("/proc/sys/kernel/random/boot_id"),
        description="Where the kernel's boot id is read: a trial cut by a restart of the "
        "whole device (a new boot id) is tried again, one cut by the agent's own death is "
        "rolled back. Unreadable: every restart counts as the agent's death.")
    trial: TrialConfig = Field(default_factory=TrialConfig,
                               description="Trial length and the health criteria.")
    mqtt_chunk_bytes: int = Field(
        default=32 * 1024, ge=MIN_CHUNK_BYTES, le=MAX_CHUNK_BYTES,
        description="transport = mqtt: bytes per chunk message (keep below the broker's "
        "maximum packet size).")
    mqtt_window_chunks: int = Field(
        default=16, ge=2, le=MAX_REQUEST_CHUNKS,
        description="transport = mqtt: chunks asked for ahead of what was consumed (flow "
        "control: what is in flight is bounded by window x chunk size).")

    @model_validator(mode="before")
    @classmethod
    def _mqtt_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("transport") == "mqtt":
            return {**MQTT_DEFAULT_URLS, **data}
        return data

    @field_validator("metadata_url", "target_base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _http_url(value)

    @model_validator(mode="after")
    def _urls_match_transport(self) -> OtaConfig:
        for name in ("metadata_url", "target_base_url"):
            url = getattr(self, name)
            if transport_of(url) != self.transport:
                want = "mqtt:..." if self.transport == "mqtt" else "http(s)://..."
                raise ValueError(f"{name} {url!r} cannot be fetched with transport = "
                                 f"{self.transport!r}: use {want} or change transport")
        return self
