"""Rollout decisions as pure functions: no database, no MQTT, no clock.

Input: the strategy, the rollout's progress, every device's rollout record, what
the inventory says about each device (online? which version runs?) and ``now``.
Output: a :class:`Plan` — changed device records, devices to notify (first desired
state) or re-notify (a retry: the same desired state under a new revision), the
rollout's new progress and log lines. The driver (:mod:`fleet_server.rollouts.driver`)
persists the plan and publishes the desired states. The records are in
:mod:`fleet_server.rollouts.records`; operator actions (pause, resume, abort) in
:mod:`fleet_server.rollouts.actions`.

Rules, in the order :func:`tick` applies them:

1. a notified device whose live model already is the target version is committed
   (``already-installed``: the agent reports nothing for a model it already runs); a
   device running a *newer* version when its stage starts is skipped
   (``newer-installed``) and its desired state left alone, and so is one whose agent
   said it cannot read a feature the bundle's manifest uses (``cannot-read``; notified
   while the rollout runs once its agent says it can: the operator upgraded it);
2. a transient failure (download error, no space, ...) is retried with exponential
   backoff (``retry_base_s`` doubling, at most ``retry_max_s``) until ``max_retries``;
   then, and for any other failure, the failure is final;
3. an in-flight device whose status shows the target live and *not* on trial is
   committed at once (:func:`_proven_commit`: its committed report was lost or is still
   on its way); a device that is online but made no progress for ``device_timeout_s`` is
   judged by its status (:func:`_inferred_outcome`: a lost final report, for agents that
   do not send the trial flag, and a rollback) or else fails with ``timeout``, as does
   one online without an outcome :data:`ATTEMPT_TIMEOUTS` x ``device_timeout_s`` after
   its latest notification (:func:`_attempt_overdue`), whatever it reported meanwhile; an
   offline device just waits (its retained desired state reaches it when it returns, and
   its reports move its record on);
4. while running: halt when final failures pass ``max_failures`` (counting from the
   last resume of a halted rollout);
5. while running: stages (canary, then the waves) are notified one at a time; a stage
   has *settled* when each of its devices is finished or offline with at least one
   outcome; it passes when ``success_percent`` of its outcomes are commits (else halt),
   or at once when every device of it was skipped (nothing to judge), then soaks
   ``soak_s`` before the next stage starts. The rollout is completed when the
   last stage passed and every device finished.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from contract.bundle_features import missing_features
from contract.reasons import is_transient
from fleet_server.rollouts.records import (
    ACTIVE_STATUSES,
    IN_FLIGHT,
    DeviceLive,
    DeviceProgress,
    Plan,
    Progress,
    failure_list,
    failure_threshold_passed,
    failures_and_outcomes,
    is_finished,
)
from fleet_server.rollouts.spec import Strategy

# --- stage assignment (at creation) ----------------------------------------------------------

def _spread_key(seed: str, device_id: str) -> str:
    # A stable pseudo-random order: a wave is a spread over the fleet, not the ids "a*".
    return hashlib.sha256(f"{seed}:{device_id}".encode()).hexdigest()


def assign_stages(device_ids: Sequence[str], online: Iterable[str], strategy: Strategy,
                  seed: str) -> tuple[list[str], dict[str, int]]:
    """Stage names and each device's stage. Canary devices are picked among online ones
    first (a canary must be able to answer); the waves follow the spread order."""
    if not device_ids:
        return [], {}
    up = set(online)
    ordered = sorted(dict.fromkeys(device_ids), key=lambda d: _spread_key(seed, d))
    canary_n = min(strategy.canary, len(ordered))
    canaries = sorted(ordered, key=lambda d: d not in up)[:canary_n]
    chosen = set(canaries)
    rest = [d for d in ordered if d not in chosen]
    names: list[str] = []
    stages: dict[str, int] = {}
    if canaries:
        names.append("canary")
        stages.update(dict.fromkeys(canaries, 0))
    total, assigned = len(ordered), len(canaries)
    for pct in strategy.waves:
        upto = min(total, math.ceil(total * pct / 100 - 1e-9))
        take = rest[: max(0, upto - assigned)]
        if not take:
            continue
        rest = rest[len(take):]
        assigned += len(take)
        stages.update(dict.fromkeys(take, len(names)))
        names.append(f"wave {pct:g}%")
    return names, stages


# --- per-device judgements --------------------------------------------------------------------

# One attempt (notification to outcome) of an online device ends within this many
# device_timeout_s: a device that reports a new state just before each timeout (review,
# December 2026: one device held its stage in flight for ever) fails with "timeout".
ATTEMPT_TIMEOUTS = 3


def backoff_s(strategy: Strategy, attempts: int) -> float:
    """Delay before re-notification number ``attempts`` + 1 (attempts >= 1)."""
    return float(min(strategy.retry_max_s, strategy.retry_base_s * 2 ** max(0, attempts - 1)))


def _judge_device(dev: DeviceProgress, live: DeviceLive, strategy: Strategy, target: int,
                  now: float) -> tuple[DeviceProgress, str | None]:
    """Rules 1-3 for one device: the (possibly) updated record and a log line."""
    if dev.state == "notified" and live.live_version == target:
        return replace(dev, state="committed", reason="already-installed", changed_at=now,
                       detail=f"v{target} was already live"), None
    if (dev.state == "failed" and is_transient(dev.reason)
            and dev.attempts <= strategy.max_retries):
        delay = backoff_s(strategy, dev.attempts)
        return replace(dev, state="retrying", retry_at=now + delay, changed_at=now), (
            f"{dev.device_id}: {dev.reason}, retry {dev.attempts} of "
            f"{strategy.max_retries} in {delay:g} s")
    if dev.state in IN_FLIGHT and dev.state != "notified":
        proven = _proven_commit(dev, live, target, now)
        if proven is not None:
            return proven, (f"{dev.device_id}: committed (inferred from status, was "
                            f"{dev.state})")
    if dev.state in IN_FLIGHT and live.online:
        since = max(dev.changed_at or 0.0, live.online_since or 0.0)
        why = _attempt_overdue(dev, strategy, now)
        if now - since > strategy.device_timeout_s:
            inferred = _inferred_outcome(dev, live, target, now - since, now)
            if inferred is not None:
                return inferred, (f"{inferred.device_id}: {inferred.state} (inferred from "
                                  f"status, was {dev.state})")
            why = f"online but no progress for {now - since:.0f} s"
        if why is not None:
            return replace(dev, state="failed", reason="timeout", changed_at=now,
                           detail=f"{why} (was {dev.state})"), (
                f"{dev.device_id}: timed out in {dev.state}")
    return dev, None


def _attempt_overdue(dev: DeviceProgress, strategy: Strategy, now: float) -> str | None:
    """Why a device that reported has run out of time for this attempt, or None. From
    ``notified_at``, not ``online_since`` (the device's own statuses move that on); not
    in ``notified`` (one back from days offline has device_timeout_s from its return)."""
    started = dev.notified_at if dev.notified_at is not None else dev.changed_at
    if dev.state == "notified" or started is None:
        return None
    took = now - started
    if took <= ATTEMPT_TIMEOUTS * strategy.device_timeout_s:
        return None
    return (f"online and no outcome {took:.0f} s after it was notified (at most "
            f"{ATTEMPT_TIMEOUTS} x device_timeout_s)")


def _proven_commit(dev: DeviceProgress, live: DeviceLive, target: int,
                   now: float) -> DeviceProgress | None:
    """Committed, without waiting, when the status shows the target live and says it is
    not on trial (``live_trial`` False: only agents that send the flag). The committed
    report was lost or has not arrived yet (the status is republished right after the
    verdict, beside the report); when it comes it just confirms the record. ``notified``
    is left to rule 1 (``already-installed``)."""
    if live.live_version != target or live.live_trial is not False:
        return None
    return replace(dev, state="committed", reason="inferred-from-status", changed_at=now,
                   detail=f"inferred from status: v{target} live and committed (not on "
                   f"trial), no committed report yet (was {dev.state})")


def _inferred_outcome(dev: DeviceProgress, live: DeviceLive, target: int, quiet_s: float,
                      now: float) -> DeviceProgress | None:
    """The outcome an in-flight device's status proves once it has been quiet (online, no
    report) for ``device_timeout_s``: its final OTA report was lost (broker killed with it
    in flight, a replica killed before acknowledging it), or None.

    The committed case is for statuses without the trial flag (older agents; one with
    ``trial: false`` is read at once by :func:`_proven_commit`, one with ``trial: true``
    proves nothing: the verdict's status was lost too). Only after the wait: such an agent
    lists the *candidate* as live during its trial, so the target version in its status
    is no proof of a commit while a trial may still run. Every trial ends within the
    agent's ``trial.timeout_s`` (15 min by default; it must stay below
    ``device_timeout_s``) and each verdict republishes the status, so
    a status still showing the target after the wait says committed, and one showing an
    older version after a trial says rolled back (the candidate was swapped out: health
    verdict, operator rollback or an interrupted trial). Not proof when the verdict's
    status was lost together with its report and the device never reconnected since; a
    late report still overrides the inferred state (tracking applies it)."""
    running = live.live_version
    if running == target and live.live_trial is None:
        return replace(dev, state="committed", reason="inferred-from-status", changed_at=now,
                       detail=f"inferred from status: v{target} live, no report for "
                       f"{quiet_s:.0f} s (was {dev.state}; its committed report was lost)")
    if dev.state == "trial" and running is not None and running < target:
        return replace(dev, state="rolled_back", reason="inferred-from-status",
                       changed_at=now, detail=f"inferred from status: v{running} live again "
                       f"after the trial of v{target}, no report for {quiet_s:.0f} s (its "
                       "rolled_back report, and why, were lost)")
    return None


def _settled(dev: DeviceProgress, live: DeviceLive) -> bool:
    """Finished, or waiting offline (it catches up later; it does not hold the stage)."""
    if is_finished(dev):
        return True
    return dev.state in IN_FLIGHT and not live.online


# --- the tick ---------------------------------------------------------------------------------

def _halt(progress: Progress, reason: str, detail: str) -> Progress:
    return replace(progress, status="halted", halt_reason=reason, halt_detail=detail)


def tick(strategy: Strategy, stage_names: Sequence[str], target_version: int,
         progress: Progress, devices: Sequence[DeviceProgress],
         live: Mapping[str, DeviceLive], now: float,
         needs: frozenset[str] = frozenset()) -> Plan:
    """One decision step (rules in the module docstring); ``needs``: the manifest features
    of the target bundle (contract.bundle_features.features_needed)."""
    if progress.status not in ACTIVE_STATUSES:
        return Plan(progress, {})
    step = _Tick(strategy, stage_names, target_version, live, now, needs)
    current = step.judge_devices(devices)
    if progress.status != "running":
        return step.plan(progress)
    reason = failure_threshold_passed(strategy, progress, current)
    if reason is not None:
        step.log.append(f"halted: {reason}")
        return step.plan(_halt(progress, "failure-threshold", reason))
    step.renotify_due_retries(current, progress.stage)
    return step.plan(step.advance(progress, current))


class _Tick:
    """The work of one :func:`tick`: the records it changed, the devices to (re)notify and
    its log lines, gathered while the rules run in order."""

    _OFFLINE = DeviceLive(online=False)

    def __init__(self, strategy: Strategy, stage_names: Sequence[str], target: int,
                 live: Mapping[str, DeviceLive], now: float, needs: frozenset[str]) -> None:
        self.strategy = strategy
        self.needs = needs
        self.stage_names = stage_names
        self.target = target
        self.live = live
        self.now = now
        self.changed: dict[str, DeviceProgress] = {}
        self.notify: list[str] = []
        self.renotify: list[str] = []
        self.log: list[str] = []
        self.by_stage: dict[int, list[DeviceProgress]] = {}

    def plan(self, progress: Progress) -> Plan:
        return Plan(progress, self.changed, tuple(self.notify), tuple(self.renotify),
                    tuple(self.log))

    def live_of(self, dev: DeviceProgress) -> DeviceLive:
        return self.live.get(dev.device_id, self._OFFLINE)

    def unreadable(self, dev: DeviceProgress) -> list[str] | None:
        """The target bundle's features the device's agent said it cannot read ([]: it
        reads them all); None: not known (no status from it), so it decides itself."""
        reads = self.live_of(dev).reads
        return None if reads is None else missing_features(self.needs, reads)

    def latest(self, dev: DeviceProgress) -> DeviceProgress:
        return self.changed.get(dev.device_id, dev)

    def _change(self, dev: DeviceProgress, **changes: Any) -> DeviceProgress:
        new = replace(dev, **changes)
        self.changed[dev.device_id] = new
        return new

    # rules 1-3, every device on its own
    def judge_devices(self, devices: Sequence[DeviceProgress]) -> list[DeviceProgress]:
        current = []
        for dev in devices:
            new, line = _judge_device(dev, self.live_of(dev), self.strategy, self.target,
                                      self.now)
            if new != dev:
                self.changed[dev.device_id] = new
            if line:
                self.log.append(line)
            current.append(new)
        return current

    # rule 2, continued: a retry whose backoff is over is notified again; rule 1,
    # continued: a device skipped because its agent could not read the bundle is notified
    # once its agent says it can (the operator upgraded it, as the skip asked)
    def renotify_due_retries(self, current: Sequence[DeviceProgress], stage: int) -> None:
        for dev in current:
            if dev.state == "retrying" and dev.retry_at is not None and self.now >= dev.retry_at:
                self._change(dev, state="notified", attempts=dev.attempts + 1, retry_at=None,
                             notified_at=self.now, changed_at=self.now)
                self.renotify.append(dev.device_id)
            elif (dev.state == "skipped" and dev.reason == "cannot-read" and dev.stage <= stage
                  and self.unreadable(dev) == []):
                self._change(dev, state="notified", reason=None, detail=None, attempts=1,
                             notified_at=self.now, changed_at=self.now)
                self.notify.append(dev.device_id)
                self.log.append(f"{dev.device_id}: its agent reads the v{self.target} bundle "
                                "now: notified")
        for dev in current:
            self.by_stage.setdefault(dev.stage, []).append(self.latest(dev))

    # rule 5: stages start, settle, pass (then soak) or halt the rollout; completion
    def advance(self, progress: Progress, current: Sequence[DeviceProgress]) -> Progress:
        p = progress
        while True:
            if self._next_stage_due(p):
                if p.stage + 1 >= len(self.stage_names):
                    break  # nothing to roll out (empty selection)
                p = self.start_next_stage(p)
                continue
            if p.stage_settled_at is not None:
                break  # soaking
            judged = self.judge_stage(p)
            if judged is None:
                break  # not settled yet
            if judged.status == "halted":
                return judged
            p = judged
        return self.completion(p, current)

    def _next_stage_due(self, p: Progress) -> bool:
        return p.stage < 0 or (p.stage_settled_at is not None
                               and self.now - p.stage_settled_at >= self.strategy.soak_s
                               and p.stage + 1 < len(self.stage_names))

    def start_next_stage(self, p: Progress) -> Progress:
        """Notify the next stage's pending devices (skip those running a newer version, or
        whose agent cannot read the bundle)."""
        p = replace(p, stage=p.stage + 1, stage_started_at=self.now, stage_settled_at=None)
        members = self.by_stage.get(p.stage, [])
        for dev in members:
            if dev.state != "pending":
                continue
            running = self.live_of(dev).live_version
            if running is not None and running > self.target:
                # Its desired state is left alone: v(target) there would be a downgrade
                # the agent refuses, and would misstate what the device should run.
                self._change(dev, state="skipped", reason="newer-installed", changed_at=self.now,
                             detail=f"v{running} is live, newer than v{self.target}")
                continue
            missing = self.unreadable(dev)
            if missing:
                # It would download the bundle and refuse it: kept out instead, and named.
                self._change(dev, state="skipped", reason="cannot-read", changed_at=self.now,
                             detail=f"its agent does not read {', '.join(missing)} of the "
                             f"v{self.target} manifest: upgrade the agent first")
                continue
            self._change(dev, state="notified", attempts=1, notified_at=self.now,
                         changed_at=self.now)
            self.notify.append(dev.device_id)
        self.by_stage[p.stage] = [self.latest(d) for d in members]
        self.log.append(f"{self.stage_names[p.stage]} started: {len(members)} device(s)")
        return p

    def judge_stage(self, p: Progress) -> Progress | None:
        """The current stage once settled: passed (soak starts) or halted for its success
        criteria; None while it is not settled or every device of it is offline."""
        members = self.by_stage.get(p.stage, [])
        if not all(_settled(d, self.live_of(d)) for d in members):
            return None
        failures, outcomes = failures_and_outcomes(members)
        name = self.stage_names[p.stage]
        if outcomes == 0 and all(is_finished(d) for d in members):
            # Every device skipped (newer version live, agent cannot read the bundle): no
            # update to judge, and waiting would hold the rollout for ever.
            self.log.append(f"{name} passed: nothing to update ({len(members)} skipped)")
            return replace(p, stage_settled_at=self.now)
        if outcomes == 0:
            return None  # every device of the stage is offline: wait for one to answer
        committed = outcomes - failures
        share = 100.0 * committed / outcomes
        if share < self.strategy.success_percent and p.accepted_stage != p.stage:
            detail = (f"{name}: {committed} of {outcomes} devices committed ({share:.0f} %), "
                      f"below the required {self.strategy.success_percent:g} %: "
                      f"{failure_list(members)}")
            self.log.append(f"halted: {detail}")
            return _halt(p, "success-criteria", detail)
        last = p.stage + 1 >= len(self.stage_names)
        self.log.append(f"{name} passed: {committed} of {outcomes} committed"
                        + ("" if last else f"; soaking {self.strategy.soak_s:g} s"))
        return replace(p, stage_settled_at=self.now)

    def completion(self, p: Progress, current: Sequence[DeviceProgress]) -> Progress:
        if (p.stage_settled_at is not None and p.stage + 1 >= len(self.stage_names)
                and all(is_finished(self.latest(d)) for d in current)):
            self.log.append("completed")
            return replace(p, status="completed")
        if not self.stage_names and p.stage < 0:
            self.log.append("completed: no devices selected")
            return replace(p, status="completed")
        return p
