"""Operator actions on a rollout (pause, resume, abort), as pure functions of its records.

The API and the console call them through :class:`fleet_server.rollouts.manage.Rollouts`,
which loads the records, applies the result and publishes what it asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from fleet_server.rollouts.records import (
    ACTIVE_STATUSES,
    IN_FLIGHT,
    DeviceProgress,
    Progress,
    failures_and_outcomes,
)


class InvalidOperation(ValueError):
    """An operator action that does not apply to the rollout's status (message says why)."""


def pause(progress: Progress) -> Progress:
    if progress.status != "running":
        raise InvalidOperation(f"the rollout is {progress.status}; only a running rollout "
                               "can be paused" + _next_step(progress.status))
    return replace(progress, status="paused")


def resume(progress: Progress, devices: Sequence[DeviceProgress]) -> Progress:
    """Paused -> running. Halted -> running as an operator override: failures so far are
    accepted (the threshold counts new ones) and a stage that missed its success criteria
    passes."""
    if progress.status == "paused":
        return replace(progress, status="running")
    if progress.status != "halted":
        raise InvalidOperation(f"the rollout is {progress.status}; only a paused or halted "
                               "rollout can be resumed" + _next_step(progress.status))
    failures, outcomes = failures_and_outcomes(devices)
    accepted = progress.stage if progress.halt_reason == "success-criteria" else \
        progress.accepted_stage
    return replace(progress, status="running", halt_reason=None, halt_detail=None,
                   failure_baseline=failures, outcome_baseline=outcomes,
                   accepted_stage=accepted)


def plan_abort(progress: Progress, devices: Sequence[DeviceProgress],
               now: float) -> tuple[Progress, dict[str, DeviceProgress], list[str]]:
    """Abort: no further stages; devices that may still be updating get a rollback
    desired state (the agent leaves a running trial, or one about to start, for the
    previous model). Returns (progress, changed records, devices to send rollback)."""
    if progress.status not in ACTIVE_STATUSES:
        raise InvalidOperation(f"the rollout is already {progress.status}")
    changed: dict[str, DeviceProgress] = {}
    rollback: list[str] = []
    for dev in devices:
        if dev.state == "pending":
            changed[dev.device_id] = replace(dev, state="skipped", changed_at=now,
                                             reason="aborted")
        elif dev.state in ("notified", "retrying"):
            # Not started (or waiting to retry): the rollback document stops it from starting.
            changed[dev.device_id] = replace(dev, state="cancelled", changed_at=now,
                                             reason="aborted", retry_at=None)
            rollback.append(dev.device_id)
        elif dev.state in IN_FLIGHT:
            rollback.append(dev.device_id)  # its rolled_back report moves the record on
    return replace(progress, status="aborted"), changed, rollback


def _next_step(status: str) -> str:
    return {"halted": "; resume it to continue anyway, or abort it",
            "paused": "; resume or abort it",
            "completed": "", "aborted": ""}.get(status, "")
