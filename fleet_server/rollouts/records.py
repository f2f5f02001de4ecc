"""A rollout's records: what the policy reads and decides, as plain frozen values.

:class:`DeviceProgress` is one device's record in one rollout, :class:`DeviceLive` what
the inventory says about that device now, :class:`Progress` the rollout's own state and
:class:`Plan` what one :func:`~fleet_server.rollouts.policy.tick` decided; with the
counts the policy judges them by (outcomes, failures, the halt threshold). The store
(:mod:`fleet_server.rollouts.store`) maps them to rows; nothing here does I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from fleet_server.rollouts.spec import Strategy

DeviceState = Literal["pending", "notified", "downloading", "verifying", "staged",
                      "smoke_testing", "trial", "committed", "rolled_back", "failed",
                      "retrying", "skipped", "cancelled"]
RolloutStatus = Literal["running", "paused", "halted", "aborted", "completed"]

DEVICE_STATES: tuple[DeviceState, ...] = (
    "pending", "notified", "downloading", "verifying", "staged", "smoke_testing", "trial",
    "committed", "rolled_back", "failed", "retrying", "skipped", "cancelled")
# Notified and not finished: the device owes us news.
IN_FLIGHT: frozenset[DeviceState] = frozenset(
    {"notified", "downloading", "verifying", "staged", "smoke_testing", "trial"})
ACTIVE_STATUSES: frozenset[RolloutStatus] = frozenset({"running", "paused", "halted"})


@dataclass(frozen=True)
class DeviceProgress:
    """One device's record in one rollout."""

    device_id: str
    stage: int
    state: DeviceState = "pending"
    reason: str | None = None
    detail: str | None = None
    attempts: int = 0  # notifications sent (1 = the first)
    notified_at: float | None = None
    changed_at: float | None = None  # server time of the last state change (for timeouts)
    retry_at: float | None = None


@dataclass(frozen=True)
class DeviceLive:
    """What the inventory says about a device right now."""

    online: bool
    online_since: float | None = None  # when it came online (not its latest status)
    live_version: int | None = None  # version of the rollout's model live in the slot
    # Whether that version is live on trial (not committed yet); None: the agent does
    # not say (older agents), so a live version may still be a candidate on trial.
    live_trial: bool | None = None
    # Bundle manifest features its agent reads (contract.bundle_features; for a status
    # that said nothing, what such agents read); None: unknown (no status from it at all),
    # so it is notified and decides itself.
    reads: frozenset[str] | None = None


@dataclass(frozen=True)
class Progress:
    status: RolloutStatus = "running"
    stage: int = -1  # -1: no stage started yet
    stage_started_at: float | None = None
    stage_settled_at: float | None = None  # settled and passed: the soak runs from here
    halt_reason: str | None = None  # failure-threshold | success-criteria
    halt_detail: str | None = None
    failure_baseline: int = 0  # final failures when a halted rollout was resumed
    outcome_baseline: int = 0
    accepted_stage: int | None = None  # stage whose success check an operator overrode


@dataclass(frozen=True)
class Plan:
    progress: Progress
    devices: dict[str, DeviceProgress]  # changed records only
    notify: tuple[str, ...] = ()
    renotify: tuple[str, ...] = ()
    log: tuple[str, ...] = ()


def is_final_failure(dev: DeviceProgress) -> bool:
    return dev.state in ("failed", "rolled_back")


def is_finished(dev: DeviceProgress) -> bool:
    return dev.state == "committed" or is_final_failure(dev) or dev.state in ("skipped",
                                                                              "cancelled")



# --- counting ---------------------------------------------------------------------------------

def state_counts(devices: Iterable[DeviceProgress]) -> dict[str, int]:
    counts = Counter(d.state for d in devices)
    return {s: counts.get(s, 0) for s in DEVICE_STATES}


def failures_and_outcomes(devices: Iterable[DeviceProgress]) -> tuple[int, int]:
    failures = outcomes = 0
    for d in devices:
        if is_final_failure(d):
            failures += 1
            outcomes += 1
        elif d.state == "committed":
            outcomes += 1
    return failures, outcomes


def failure_list(devices: Iterable[DeviceProgress], limit: int = 5) -> str:
    failed = [d for d in devices if is_final_failure(d)]
    shown = ", ".join(f"{d.device_id} {d.state} ({d.reason or '?'})" for d in failed[:limit])
    return shown + (f", and {len(failed) - limit} more" if len(failed) > limit else "")


def failure_threshold_passed(strategy: Strategy, progress: Progress,
                             devices: Sequence[DeviceProgress]) -> str | None:
    """Why the rollout must halt for failures, or None."""
    failures, outcomes = failures_and_outcomes(devices)
    failures -= progress.failure_baseline
    outcomes -= progress.outcome_baseline
    limit = strategy.max_failures
    if failures <= 0:
        return None
    if limit.kind == "count":
        if failures <= limit.value:
            return None
        return (f"{failures} device(s) failed, over the limit of {limit.describe()}: "
                f"{failure_list(devices)}")
    notified = sum(1 for d in devices if d.state not in ("pending", "skipped"))
    sample = min(strategy.min_sample, max(1, notified - progress.outcome_baseline))
    if outcomes < sample:
        return None
    rate = 100.0 * failures / outcomes
    if rate <= limit.value:
        return None
    return (f"{failures} of {outcomes} devices with an outcome failed ({rate:.0f} %), over "
            f"the limit of {limit.describe()}: {failure_list(devices)}")
