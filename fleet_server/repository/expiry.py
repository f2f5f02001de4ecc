"""Metadata lifetimes: how long each role stays valid and when online roles are re-signed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from tuf.api.metadata import Root, Snapshot, Targets, Timestamp

from contract.tuf_targets import DELTAS_ROLE


class ExpiryPolicy(BaseModel):
    """How long each role's metadata stays valid, and when online roles are re-signed."""

    model_config = ConfigDict(extra="forbid")

    root_days: float = Field(default=365, gt=0, description="Root metadata lifetime (days).")
    targets_days: float = Field(default=90, gt=0, description="Targets lifetime (days).")
    deltas_days: float = Field(default=30, gt=0, description="Delta role lifetime (days).")
    snapshot_days: float = Field(default=7, gt=0, description="Snapshot lifetime (days).")
    timestamp_hours: float = Field(default=24, gt=0, description="Timestamp lifetime (hours).")
    resign_fraction: float = Field(
        default=0.5, gt=0, lt=1,
        description="Re-sign an online role once less than this fraction of its lifetime is left.",
    )

    def lifetime(self, role: str) -> timedelta:
        if role == Timestamp.type:
            return timedelta(hours=self.timestamp_hours)
        days = {Root.type: self.root_days, Targets.type: self.targets_days,
                DELTAS_ROLE: self.deltas_days, Snapshot.type: self.snapshot_days}[role]
        return timedelta(days=days)

    def expires(self, role: str, now: datetime | None = None) -> datetime:
        now = now or datetime.now(UTC)
        return (now + self.lifetime(role)).replace(microsecond=0)

    def needs_resign(self, role: str, expires: datetime, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return expires - now < self.lifetime(role) * self.resign_fraction
