"""Settings of the console and of the device metrics it plots (``[console]`` and
``[metrics]`` of the server config)."""

from __future__ import annotations

from pydantic import Field, model_validator

from contract.strict import Strict


class ConsoleSettings(Strict):
    enabled: bool = Field(default=True, description="Serve the web console under /console.")
    session_idle_s: float = Field(
        default=8 * 3600, ge=60, le=30 * 86_400,
        description="A console session not used for this long is signed out (the pages' "
        "own live polling is not use: an open tab left alone is signed out too).")
    session_max_s: float = Field(
        default=12 * 3600, ge=300, le=30 * 86_400,
        description="A console session ends this long after sign-in, used or not.")
    stale_after_s: float = Field(
        default=300, ge=5, le=86_400,
        description="An online device with no report for this long is shown as stale.")
    page_size: int = Field(default=50, ge=10, le=500, description="Devices per page.")
    refresh_s: float = Field(default=2.0, ge=0.5, le=60,
                             description="How often open pages poll for live updates.")


class MetricsRetention(Strict):
    """How much of the devices' metrics reports the server keeps (for the console's plots).

    Every report is kept as it came for ``raw_keep_s``; older ones are folded into
    ``bucket_s`` buckets (counters: the last value; gauges: the maximum), kept for
    ``rollup_keep_s``. Alerts are kept ``alert_keep_s``, at most ``max_alerts`` in all and
    ``max_alerts_per_device`` of one device; OTA events at most ``ota_events_per_device``."""

    enabled: bool = Field(default=True, description="Store metrics reports and alerts.")
    raw_keep_s: float = Field(default=6 * 3600, ge=60, le=30 * 86_400,
                              description="Keep every report this long.")
    min_interval_s: float = Field(
        default=1.0, ge=0.0, le=3600,
        description="A device's reports closer together than this are not stored (bounds "
        "a device that reports too often).")
    bucket_s: int = Field(default=300, ge=10, le=86_400,
                          description="Bucket size of the downsampled history (s).")
    rollup_keep_s: float = Field(default=7 * 86_400, ge=3600, le=366 * 86_400,
                                 description="Keep the downsampled history this long.")
    alert_keep_s: float = Field(default=7 * 86_400, ge=3600, le=366 * 86_400,
                                description="Keep device alerts this long.")
    max_alerts: int = Field(default=200_000, ge=100, le=10_000_000,
                            description="Keep at most this many alerts (oldest go first).")
    max_alerts_per_device: int = Field(
        default=5_000, ge=10, le=10_000_000,
        description="Keep at most this many alerts of one device (its oldest go first), so "
        "one device's flood cannot push the other devices' alerts out.")
    alerts_per_device_minute: int = Field(
        default=600, ge=1, le=1_000_000,
        description="Store at most this many alerts of one device a minute (the agent sends "
        "at most its [alerts] max_per_minute); the rest are counted, not stored.")
    ota_events_per_device: int = Field(
        default=1_000, ge=10, le=10_000_000,
        description="Keep at most this many OTA events of one device (its oldest go first); "
        "also when `enabled` is false.")
    ota_events_per_device_minute: int = Field(
        default=60, ge=1, le=1_000_000,
        description="Store at most this many OTA events of one device a minute as rows (an "
        "update reports about six); the rest still move the inventory and the rollout, "
        "they are counted and not stored.")
    compact_every_s: float = Field(default=60.0, ge=0.1, le=3600,
                                   description="How often expired rows are folded or removed.")

    @model_validator(mode="after")
    def _rollup_outlives_raw(self) -> MetricsRetention:
        if self.rollup_keep_s < self.raw_keep_s:
            raise ValueError(f"rollup_keep_s ({self.rollup_keep_s}) must be at least "
                             f"raw_keep_s ({self.raw_keep_s})")
        return self
