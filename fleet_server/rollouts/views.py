"""What the API returns about rollouts (pydantic: these are the OpenAPI schemas too)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import Field

from contract.limits import MAX_STORED_INT
from contract.strict import Strict
from contract.tuf_targets import MODEL_NAME_PATTERN
from fleet_server.rollouts.records import (
    DEVICE_STATES,
    IN_FLIGHT,
    DeviceLive,
    DeviceProgress,
    DeviceState,
    RolloutStatus,
    is_final_failure,
    is_finished,
    state_counts,
)
from fleet_server.rollouts.spec import DeviceId, Selector, Strategy
from fleet_server.rollouts.store import RolloutDeviceRow, RolloutRow, device_of


class RolloutCreate(Strict):
    """``POST /api/v1/rollouts``."""

    model: str = Field(pattern=MODEL_NAME_PATTERN, description="Published model name.")
    version: int = Field(ge=1, le=MAX_STORED_INT, description="Published version to roll out.")
    select: Selector = Field(description="Which devices (every criterion must match).")
    strategy: Strategy = Field(default_factory=Strategy, description="How to proceed.")


class RolloutDeviceView(Strict):
    device_id: DeviceId = Field(description="Device id.")
    stage: int = Field(description="Index of the device's stage.")
    stage_name: str = Field(description="canary, or the wave's cumulative percentage.")
    state: DeviceState = Field(description="The device's state in this rollout.")
    reason: str | None = Field(description="Machine code of a failure or rollback.")
    detail: str | None = Field(description="Human explanation from the device or the server.")
    attempts: int = Field(description="Notifications sent (1 + retries).")
    notified_at: float | None = Field(description="Unix time of the last notification.")
    changed_at: float | None = Field(description="Unix time the state last changed.")
    retry_at: float | None = Field(description="When a transient failure is retried.")
    from_version: int | None = Field(description="Version the device ran before.")
    online: bool = Field(description="The device is connected now (inventory).")
    rollback_sent: bool = Field(description="An abort sent this device a rollback.")


class StageView(Strict):
    index: int = Field(description="Stage index (0 = first).")
    name: str = Field(description="canary or 'wave N%'.")
    devices: int = Field(description="Devices in this stage.")
    status: Literal["pending", "active", "soaking", "passed"] = Field(
        description="pending: not started; active: notified, waiting for outcomes; "
        "soaking: passed, waiting soak_s; passed: done.")
    counts: dict[str, int] = Field(description="Devices per state (non-zero only).")


class LogLine(Strict):
    at: float = Field(description="Unix time.")
    text: str = Field(description="What happened.")


class RolloutView(Strict):
    id: str = Field(description="Rollout id (also in the devices' desired state and reports).")
    model: str = Field(description="Model name.")
    version: int = Field(description="Version rolled out.")
    slot: str = Field(description="Model slot.")
    status: RolloutStatus = Field(description="running, paused, halted (by itself, see "
                                  "halt_reason), aborted or completed.")
    selector: Selector = Field(description="How the devices were selected.")
    strategy: Strategy = Field(description="Canary, waves, soak, success and halt rules.")
    stage: int = Field(description="Current stage index (-1 before the first tick).")
    stage_name: str | None = Field(description="Current stage name.")
    stages: list[StageView] = Field(description="Every stage with its per-state counts.")
    total: int = Field(description="Devices in the rollout.")
    counts: dict[str, int] = Field(description="Devices per state, every state listed.")
    finished: int = Field(description="Devices committed, failed, rolled back, skipped or "
                          "cancelled.")
    waiting_offline: int = Field(description="Notified devices that are offline (they catch "
                                 "up when they return).")
    halt_reason: str | None = Field(description="failure-threshold or success-criteria.")
    halt_detail: str | None = Field(description="Why it halted, with the failed devices.")
    note: str = Field(description="What the rollout is doing or waiting for, in words.")
    created_at: float = Field(description="Unix time of creation.")
    created_by: str = Field(description="Operator token name that created it.")
    updated_at: float = Field(description="Unix time of the last progress change.")
    finished_at: float | None = Field(description="When it was completed or aborted.")
    log: list[LogLine] = Field(description="Recent rollout events, oldest first.")
    devices: list[RolloutDeviceView] | None = Field(
        default=None, description="Per-device records (with ?devices=true).")


class RolloutList(Strict):
    rollouts: list[RolloutView] = Field(description="Newest first (no device lists).")


class RolloutActionResult(Strict):
    rollout: RolloutView = Field(description="The rollout after the action.")
    rollback_sent: list[DeviceId] = Field(
        default_factory=list, description="abort: devices sent a rollback desired state.")


def _stage_status(row: RolloutRow, index: int) -> Literal["pending", "active", "soaking",
                                                          "passed"]:
    if index > row.stage or row.stage < 0:
        return "pending"
    if index < row.stage:
        return "passed"
    if row.stage_settled_at is None:
        return "active"
    return "passed" if index + 1 == len(row.stage_names) else "soaking"


def _note(row: RolloutRow, devices: Sequence[DeviceProgress], offline: int, now: float) -> str:
    if row.status == "halted":
        return f"halted ({row.halt_reason}): resume to continue anyway, or abort"
    if row.status == "aborted":
        trial = sum(1 for d in devices if d.state in IN_FLIGHT)
        return "aborted" + (f"; {trial} device(s) still finishing or rolling back" if trial
                            else "")
    if row.status == "completed":
        return "completed"
    prefix = "paused; " if row.status == "paused" else ""
    if row.stage < 0:
        return prefix + "starting"
    name = row.stage_names[row.stage]
    if row.stage_settled_at is not None:
        if row.stage + 1 < len(row.stage_names):
            left = Strategy.model_validate(row.strategy).soak_s - (now - row.stage_settled_at)
            return prefix + (f"{name} passed; soaking {max(0.0, left):.0f} s more before "
                             f"{row.stage_names[row.stage + 1]}")
        return prefix + f"waiting for {offline} offline device(s) to catch up"
    members = [d for d in devices if d.stage == row.stage]
    busy = sum(1 for d in members if not is_finished(d))
    return prefix + f"{name}: waiting for {busy} of {len(members)} device(s)" + (
        f" ({offline} offline)" if offline else "")


def rollout_view(row: RolloutRow, device_rows: Sequence[RolloutDeviceRow],
                 live: Mapping[str, DeviceLive], now: float, *, with_devices: bool = False,
                 log_lines: int = 50) -> RolloutView:
    devices = [device_of(r) for r in device_rows]
    offline = sum(1 for d in devices if d.state in IN_FLIGHT
                  and not live.get(d.device_id, DeviceLive(False)).online)
    stages = []
    for i, name in enumerate(row.stage_names):
        members = [d for d in devices if d.stage == i]
        counts = {k: v for k, v in state_counts(members).items() if v}
        stages.append(StageView(index=i, name=name, devices=len(members),
                                status=_stage_status(row, i), counts=counts))
    view = RolloutView(
        id=row.id, model=row.model, version=row.version, slot=row.slot,
        status=row.status,  # type: ignore[arg-type]
        selector=Selector.model_validate(row.selector),
        strategy=Strategy.model_validate(row.strategy), stage=row.stage,
        stage_name=row.stage_names[row.stage] if 0 <= row.stage < len(row.stage_names)
        else None, stages=stages, total=len(devices), counts=state_counts(devices),
        finished=sum(1 for d in devices if is_finished(d)), waiting_offline=offline,
        halt_reason=row.halt_reason, halt_detail=row.halt_detail,
        note=_note(row, devices, offline, now), created_at=row.created_at,
        created_by=row.created_by, updated_at=row.updated_at, finished_at=row.finished_at,
        log=[LogLine(at=a, text=t) for a, t in row.log[-log_lines:]] if log_lines else [])
    if with_devices:
        view.devices = [RolloutDeviceView(
            device_id=r.device_id, stage=r.stage, stage_name=row.stage_names[r.stage],
            state=r.state,  # type: ignore[arg-type]
            reason=r.reason, detail=r.detail, attempts=r.attempts, notified_at=r.notified_at,
            changed_at=r.changed_at, retry_at=r.retry_at, from_version=r.from_version,
            online=live.get(r.device_id, DeviceLive(False)).online,
            rollback_sent=r.rollback_sent) for r in device_rows]
    return view


def failed_devices(devices: Sequence[DeviceProgress]) -> list[str]:
    return [d.device_id for d in devices if is_final_failure(d)]


__all__ = ["DEVICE_STATES", "RolloutActionResult", "RolloutCreate", "RolloutDeviceView",
           "RolloutList", "RolloutView", "StageView", "rollout_view"]
