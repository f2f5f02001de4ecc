"""What an operator asks for when creating a rollout: which devices, and the strategy.

Pydantic models (unknown fields are errors, every field described: they are also the
OpenAPI schema of ``POST /api/v1/rollouts``) plus the parsers for the CLI's short
forms: ``5%`` or ``3`` (failure threshold), ``10m`` / ``90s`` / ``1h30m`` (durations),
``95%`` (success), ``10,50,100`` (waves), ``group=G`` / ``tag=T`` / ``ids=a,b`` / ``all``
(selection).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StrictBool, model_validator

from contract.strict import Strict
from contract.topics import DEVICE_ID_PATTERN

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)
DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
Label = Annotated[str, Field(pattern=NAME_PATTERN)]


class FailureThreshold(Strict):
    """How many failed devices the rollout tolerates before it halts by itself."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={  # what _range checks
        "oneOf": [{"properties": {"kind": {"const": "percent"}, "value": {"maximum": 100}}},
                  {"properties": {"kind": {"const": "count"}, "value": {"multipleOf": 1}}}]})

    kind: Literal["count", "percent"] = Field(
        description="count: halt when more than `value` devices failed; percent: halt when "
        "more than `value` % of the devices with an outcome failed (once at least "
        "min_sample devices, or every notified device if fewer, have an outcome).")
    value: float = Field(ge=0, description="The tolerated count or percentage.")

    @model_validator(mode="after")
    def _range(self) -> FailureThreshold:
        if self.kind == "percent" and self.value > 100:
            raise ValueError(f"a percentage is at most 100, got {self.value}")
        if self.kind == "count" and self.value != int(self.value):
            raise ValueError(f"a failure count is a whole number, got {self.value}")
        return self

    def describe(self) -> str:
        return f"{self.value:g} %" if self.kind == "percent" else f"{int(self.value)} device(s)"


class Strategy(Strict):
    """How a rollout proceeds: canary, waves, soak, success and halt rules, retries."""

    canary: int = Field(default=1, ge=0, le=10_000,
                        description="Devices updated first, on their own (online ones preferred).")
    waves: list[Annotated[float, Field(gt=0, le=100)]] = Field(
        default_factory=lambda: [100.0], min_length=1, max_length=20,
        description="Cumulative percentages of the selection updated after the canary, "
        "e.g. [10, 50, 100]; strictly increasing, the last one 100.")
    soak_s: float = Field(default=300.0, ge=0, le=30 * 86_400,
                          description="Seconds to wait after a stage settled (every device "
                          "finished or is offline) before the next stage starts.")
    success_percent: float = Field(
        default=95.0, gt=0, le=100,
        description="A stage passes when at least this % of its devices that reported an "
        "outcome committed; otherwise the rollout halts.")
    max_failures: FailureThreshold = Field(
        default_factory=lambda: FailureThreshold(kind="percent", value=5.0),
        description="Automatic halt once failures (failed, rolled back, timed out) pass this.")
    min_sample: int = Field(default=10, ge=1, le=100_000,
                            description="Outcomes needed before a percentage threshold applies "
                            "(capped at the number of devices notified so far).")
    device_timeout_s: float = Field(
        default=3600.0, gt=0, le=30 * 86_400,
        description="A device that is online but shows no progress (no new state) for this "
        "long is judged by its status (a lost final report: committed, or rolled_back after a "
        "trial, reason 'inferred-from-status') or fails with reason 'timeout' (offline devices "
        "wait; they catch up when they return). One that reported but has no outcome 3 times "
        "this long after its latest notification fails with 'timeout' too, whatever it "
        "reports. Keep it above the agents' trial timeout_s.")
    max_retries: int = Field(default=3, ge=0, le=100,
                             description="Re-notifications after transient failures (download "
                             "errors, no space...) before the failure counts.")
    retry_base_s: float = Field(default=30.0, gt=0, le=86_400,
                                description="First retry delay; doubled on every further retry.")
    retry_max_s: float = Field(default=900.0, gt=0, le=7 * 86_400,
                               description="Longest retry delay.")

    @model_validator(mode="after")
    def _waves(self) -> Strategy:
        previous = 0.0
        for pct in self.waves:
            if not 0 < pct <= 100:
                raise ValueError(f"wave percentages are in (0, 100], got {pct:g}")
            if pct <= previous:
                raise ValueError(f"wave percentages must increase: {self.waves}")
            previous = pct
        if self.waves[-1] != 100:
            raise ValueError(f"the last wave must be 100 (the whole selection), got "
                             f"{self.waves[-1]:g}")
        return self


class Selector(Strict):
    """Which devices a rollout covers: the devices matching every criterion given."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={  # what _something checks
        "anyOf": [{"required": ["all"], "properties": {"all": {"const": True}}},
                  {"required": ["group"], "properties": {"group": {"type": "string"}}},
                  {"required": ["tags"], "properties": {"tags": {"minItems": 1}}},
                  {"required": ["ids"], "properties": {"ids": {"type": "array"}}}]})

    all: StrictBool = Field(default=False, description="Every device in the inventory.")
    group: Label | None = Field(default=None, description="Devices in this group.")
    tags: list[Label] = Field(default_factory=list, max_length=20,
                              description="Devices carrying every one of these tags.")
    ids: list[DeviceId] | None = Field(
        default=None, min_length=1, max_length=100_000,
        description="Exactly these devices (ones that never reported are included: they "
        "catch up when they first connect).")

    @model_validator(mode="after")
    def _something(self) -> Selector:
        if not (self.all or self.group or self.tags or self.ids):
            raise ValueError("select devices: all, a group, tags or ids")
        if self.ids is not None and not self.ids:
            raise ValueError("ids is empty")
        return self

    def describe(self) -> str:
        parts = ["all"] if self.all else []
        if self.group:
            parts.append(f"group={self.group}")
        parts += [f"tag={t}" for t in self.tags]
        if self.ids is not None:
            shown = ",".join(self.ids[:5]) + (",…" if len(self.ids) > 5 else "")
            parts.append(f"ids={shown}")
        return " ".join(parts)


# --- the CLI's short forms ------------------------------------------------------------------

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str) -> float:
    """``90`` (seconds), ``90s``, ``10m``, ``1h30m``, ``2d`` -> seconds."""
    s = text.strip().lower()
    try:
        return float(s)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"invalid duration {text!r}: use e.g. 90, 90s, 10m, 1h30m, 2d")
    return total


def parse_threshold(text: str) -> FailureThreshold:
    """``5%`` -> percent 5; ``3`` -> count 3."""
    s = text.strip()
    try:
        if s.endswith("%"):
            return FailureThreshold(kind="percent", value=float(s[:-1]))
        return FailureThreshold(kind="count", value=int(s))
    except ValueError as exc:
        raise ValueError(f"invalid failure threshold {text!r}: use a count (3) or a "
                         f"percentage (5%): {exc}") from None


def parse_percent(text: str) -> float:
    s = text.strip().removesuffix("%")
    try:
        return float(s)
    except ValueError:
        raise ValueError(f"invalid percentage {text!r}: use e.g. 95%") from None


def parse_waves(text: str) -> list[float]:
    try:
        return [float(p.strip().removesuffix("%")) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"invalid waves {text!r}: use cumulative percentages, e.g. "
                         "10,50,100") from None


def parse_selector(terms: list[str]) -> Selector:
    """``["group=eu", "tag=pumps"]`` -> Selector (every term must match)."""
    fields: dict[str, object] = {}
    tags: list[str] = []
    for term in terms:
        key, sep, value = term.partition("=")
        key, value = key.strip(), value.strip()
        if key == "all" and not sep:
            fields["all"] = True
        elif key == "group" and value:
            if "group" in fields:
                raise ValueError("--select group= given twice: a device is in one group")
            fields["group"] = value
        elif key in ("tag", "tags") and value:
            tags += [t.strip() for t in value.split(",") if t.strip()]
        elif key == "ids" and value:
            ids = [i.strip() for i in value.split(",") if i.strip()]
            fields["ids"] = list(fields.get("ids", [])) + ids  # type: ignore[call-overload]
        else:
            raise ValueError(f"invalid --select {term!r}: use group=G, tag=T, ids=a,b or all")
    for name in [*tags, fields.get("group")]:
        if name is not None and not _NAME_RE.match(str(name)):
            raise ValueError(f"invalid group/tag {name!r}: 1-64 characters from "
                             "A-Z a-z 0-9 . _ -")
    return Selector.model_validate({**fields, "tags": tags})
