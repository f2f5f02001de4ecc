"""The rollout policy as pure functions: stages, soak, halt rules, retries with backoff,
timeouts, offline devices, operator actions; and the strategy's short forms."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import ValidationError

from contract.messages import OtaEvent, OtaState
from contract.reasons import TRANSIENT_REASONS
from fleet_server.rollouts.actions import InvalidOperation, pause, plan_abort, resume
from fleet_server.rollouts.policy import assign_stages, backoff_s, tick
from fleet_server.rollouts.records import DeviceLive, DeviceProgress, Plan, Progress, state_counts
from fleet_server.rollouts.spec import (
    FailureThreshold,
    Strategy,
    parse_duration,
    parse_selector,
    parse_threshold,
    parse_waves,
)
from fleet_server.rollouts.tracking import EventKey, apply_event

pytestmark = pytest.mark.unit

TARGET = 2


class World:
    """Rollout records plus inventory facts; applies plans like the driver does."""

    def __init__(self, n: int, strategy: Strategy, offline: set[str] | None = None) -> None:
        self.strategy = strategy
        ids = [f"d{i:02d}" for i in range(n)]
        self.offline = offline or set()
        self.names, stages = assign_stages(ids, [i for i in ids if i not in self.offline],
                                           strategy, seed="r-test")
        self.devices = {d: DeviceProgress(d, stages[d]) for d in ids}
        self.progress = Progress()
        self.live_version: dict[str, int] = {}
        self.live_trial: dict[str, bool] = {}  # absent: the status has no flag (older agent)
        self.online_since: dict[str, float] = {}
        self.reads: dict[str, frozenset[str] | None] = {}  # absent: reads what it needs
        self.needs: frozenset[str] = frozenset()  # the target bundle's manifest features
        self.notified: list[str] = []
        self.renotified: list[str] = []
        self.log: list[str] = []
        self.last_event: dict[str, EventKey] = {}

    def live(self) -> dict[str, DeviceLive]:
        return {d: DeviceLive(online=d not in self.offline,
                              online_since=self.online_since.get(d, 0.0),
                              live_version=self.live_version.get(d, 1),
                              live_trial=self.live_trial.get(d),
                              reads=self.reads.get(d, self.needs)) for d in self.devices}

    def tick(self, now: float) -> Plan:
        plan = tick(self.strategy, self.names, TARGET, self.progress,
                    list(self.devices.values()), self.live(), now, self.needs)
        self.devices.update(plan.devices)
        self.progress = plan.progress
        self.notified += plan.notify
        self.renotified += plan.renotify
        self.log += plan.log
        return plan

    def report(self, device: str, state: str, now: float, reason: str | None = None) -> None:
        """What tracking does with an OtaEvent."""
        self.devices[device] = replace(self.devices[device], state=state,  # type: ignore[arg-type]
                                       reason=reason, changed_at=now)

    def send(self, device: str, state: OtaState, now: float,
             reason: str | None = None) -> bool:
        """An OtaEvent through tracking (:func:`apply_event`), stamped ``now`` by the device
        and received at once; False when tracking did not apply it."""
        key = self.last_event.get(device)
        seq = 1 if key is None else key.seq + 1
        event = OtaEvent(seq=seq, ts=now, device_id=device, slot="logs", state=state,
                         from_version=1, to_version=TARGET, reason=reason)
        new = apply_event(self.devices[device], key, event, TARGET, received_at=now)
        if new is None:
            return False
        self.devices[device], self.last_event[device] = new, EventKey(event.ts, event.seq)
        return True

    def stage_of(self, stage: int) -> list[str]:
        return sorted(d for d, p in self.devices.items() if p.stage == stage)

    def commit(self, ids: list[str], now: float) -> None:
        for d in ids:
            self.report(d, "committed", now)

    def states(self) -> dict[str, int]:
        return {k: v for k, v in state_counts(self.devices.values()).items() if v}


def strat(**kw: object) -> Strategy:
    base: dict[str, object] = {"canary": 2, "waves": [50, 100], "soak_s": 10,
                               "success_percent": 90, "max_failures": {"kind": "count",
                                                                       "value": 1}}
    return Strategy.model_validate(base | kw)


# --- stage assignment ----------------------------------------------------------------------

def test_stages_canary_prefers_online_devices_and_waves_are_cumulative() -> None:
    ids = [f"d{i:02d}" for i in range(20)]
    online = ids[15:]
    names, stages = assign_stages(ids, online, strat(canary=3, waves=[10, 50, 100]), "seed")
    # canary 3, wave 10% (2 devices) is already covered by the canary: dropped
    assert names == ["canary", "wave 50%", "wave 100%"]
    canary = [d for d, s in stages.items() if s == 0]
    assert len(canary) == 3 and set(canary) <= set(online)
    assert sum(1 for s in stages.values() if s == 1) == 7  # up to 10 devices
    assert sum(1 for s in stages.values() if s == 2) == 10
    assert assign_stages(ids, online, strat(canary=3, waves=[10, 50, 100]), "seed")[1] == stages
    other = assign_stages(ids, online, strat(canary=3, waves=[10, 50, 100]), "other")[1]
    assert other != stages  # the spread depends on the rollout


def test_stages_small_and_empty_selections() -> None:
    assert assign_stages([], [], strat(), "s") == ([], {})
    names, stages = assign_stages(["a"], ["a"], strat(canary=5), "s")
    assert names == ["canary"] and stages == {"a": 0}
    names, stages = assign_stages(["a", "b", "c"], [], strat(canary=0, waves=[1, 100]), "s")
    assert names == ["wave 1%", "wave 100%"] and sorted(stages.values()) == [0, 1, 1]


# --- the happy path ---------------------------------------------------------------------------

def test_canary_then_waves_with_soak_until_completed() -> None:
    w = World(10, strat())
    plan = w.tick(0)
    canary = w.stage_of(0)
    assert sorted(plan.notify) == canary and len(canary) == 2
    assert w.progress.stage == 0 and w.states() == {"pending": 8, "notified": 2}
    w.report(canary[0], "downloading", 1)
    w.report(canary[0], "trial", 2)
    assert not w.tick(3).notify  # canary not done
    w.commit(canary, 4)
    w.tick(5)
    assert w.progress.stage_settled_at == 5 and "canary passed: 2 of 2 committed" in w.log[-1]
    assert not w.tick(14).notify  # soaking 10 s
    plan = w.tick(15)
    assert sorted(plan.notify) == w.stage_of(1) and len(plan.notify) == 3  # up to 50 %
    w.commit(w.stage_of(1), 16)
    w.tick(17)
    plan = w.tick(27)
    assert sorted(plan.notify) == w.stage_of(2) and len(plan.notify) == 5
    w.commit(w.stage_of(2), 28)
    w.tick(29)
    assert w.progress.status == "completed" and w.log[-1] == "completed"
    assert w.tick(100) == Plan(w.progress, {})  # finished: nothing more
    assert sorted(w.notified) == sorted(w.devices)


def test_zero_soak_runs_every_stage_in_one_tick_once_settled() -> None:
    w = World(4, strat(canary=1, soak_s=0))
    w.tick(0)
    w.commit(w.stage_of(0), 1)
    plan = w.tick(2)  # canary passes and wave 50 % starts in the same tick
    assert sorted(plan.notify) == w.stage_of(1)


def test_empty_selection_completes() -> None:
    w = World(0, strat())
    w.tick(0)
    assert w.progress.status == "completed"


# --- halts ---------------------------------------------------------------------------------------

def test_halts_by_itself_when_the_canary_fails_its_trial() -> None:
    w = World(10, strat(max_failures={"kind": "count", "value": 1}))
    w.tick(0)
    a, b = w.stage_of(0)
    w.report(a, "rolled_back", 5, "health-collapse")
    w.tick(6)
    assert w.progress.status == "running"  # 1 failure is tolerated
    w.report(b, "rolled_back", 7, "health-errors")
    plan = w.tick(8)
    assert w.progress.status == "halted" and w.progress.halt_reason == "failure-threshold"
    assert "2 device(s) failed, over the limit of 1 device(s)" in (w.progress.halt_detail or "")
    assert "health-collapse" in (w.progress.halt_detail or "") and not plan.notify
    assert not w.tick(1000).notify and w.states()["pending"] == 8  # stays halted


def test_canary_below_success_criteria_halts_even_under_the_failure_limit() -> None:
    w = World(10, strat(canary=4, success_percent=90, max_failures={"kind": "count",
                                                                    "value": 5}))
    w.tick(0)
    canary = w.stage_of(0)
    w.commit(canary[:3], 1)
    w.report(canary[3], "failed", 1, "smoke-test-failed")
    w.tick(2)
    assert w.progress.halt_reason == "success-criteria"
    assert "3 of 4 devices committed (75 %), below the required 90 %" in \
        (w.progress.halt_detail or "")
    # The operator looks, decides it is fine, resumes: the stage passes, waves continue.
    w.progress = resume(w.progress, list(w.devices.values()))
    assert w.progress.status == "running" and w.progress.failure_baseline == 1
    w.tick(3)
    plan = w.tick(13)
    assert sorted(plan.notify) == w.stage_of(1)


def test_percent_threshold_waits_for_its_minimum_sample() -> None:
    s = strat(canary=0, waves=[100], max_failures={"kind": "percent", "value": 20},
              min_sample=5, success_percent=50)
    w = World(10, s)
    w.tick(0)
    ids = sorted(w.devices)
    w.report(ids[0], "failed", 1, "bundle-invalid")
    w.report(ids[1], "failed", 1, "bundle-invalid")
    w.commit(ids[2:4], 1)
    w.tick(2)
    assert w.progress.status == "running"  # 2 of 4: 50 %, but only 4 outcomes < 5
    w.commit(ids[4:5], 3)
    w.tick(4)
    assert w.progress.status == "halted"
    assert "2 of 5 devices with an outcome failed (40 %), over the limit of 20 %" in \
        (w.progress.halt_detail or "")
    # Resumed: the old failures are accepted; the next one over 20 % of new outcomes halts.
    w.progress = resume(w.progress, list(w.devices.values()))
    w.commit(ids[5:9], 5)
    w.report(ids[9], "rolled_back", 5, "health-latency")
    w.tick(6)
    assert w.progress.status == "completed"  # 1 of 5 new outcomes = 20 %, not over
    assert w.progress.failure_baseline == 2 and w.progress.outcome_baseline == 5


def test_small_rollouts_use_every_notified_device_as_the_sample() -> None:
    s = strat(canary=2, waves=[100], max_failures={"kind": "percent", "value": 5},
              min_sample=10)
    w = World(20, s)
    w.tick(0)
    a, b = w.stage_of(0)
    w.report(a, "rolled_back", 1, "health-collapse")
    w.tick(2)
    assert w.progress.status == "running"  # 1 of 2 canaries answered
    w.report(b, "rolled_back", 3, "health-collapse")
    w.tick(4)
    assert w.progress.status == "halted" and w.progress.halt_reason == "failure-threshold"


# --- retries, timeouts, offline devices --------------------------------------------------------

def test_transient_failures_are_retried_with_exponential_backoff() -> None:
    s = strat(canary=1, waves=[100], max_retries=3, retry_base_s=10, retry_max_s=25,
              max_failures={"kind": "count", "value": 0})
    assert [backoff_s(s, n) for n in (1, 2, 3, 4)] == [10, 20, 25, 25]
    w = World(3, s)
    w.tick(0)
    [dev] = w.stage_of(0)
    now = 0.0
    for attempt, delay in ((1, 10), (2, 20), (3, 25)):
        w.report(dev, "failed", now + 1, "unavailable")
        w.tick(now + 2)
        rec = w.devices[dev]
        assert (rec.state, rec.attempts, rec.retry_at) == ("retrying", attempt, now + 2 + delay)
        assert w.progress.status == "running"  # a retry is not a failure
        assert not w.tick(now + 1 + delay).renotify
        assert w.tick(now + 2 + delay).renotify == (dev,)
        assert w.devices[dev].state == "notified"
        now += 2 + delay
    w.report(dev, "failed", now + 1, "unavailable")
    w.tick(now + 2)  # retries used up: a real failure, over the limit of 0
    assert w.devices[dev].state == "failed" and w.progress.status == "halted"
    assert w.renotified == [dev] * 3


@pytest.mark.parametrize(("reason", "state"), [
    *((str(reason), "retrying") for reason in sorted(TRANSIENT_REASONS)),
    ("bad-signature", "failed"),
    ("flux-capacitor", "failed"),  # a newer agent's code: counted, not retried blindly
])
def test_the_server_retries_exactly_the_agents_transient_reasons(reason: str,
                                                                  state: str) -> None:
    w = World(3, strat(canary=1, max_failures={"kind": "count", "value": 5}))
    w.tick(0)
    [dev] = w.stage_of(0)
    w.report(dev, "failed", 1, reason)  # as stored: a plain string
    w.tick(2)
    assert w.devices[dev].state == state
    assert not w.renotified


def test_online_device_without_progress_times_out_offline_one_waits() -> None:
    s = strat(canary=3, waves=[100], device_timeout_s=100, soak_s=0,
              max_failures={"kind": "count", "value": 3}, success_percent=50)
    w = World(3, s)
    a, b, c = w.stage_of(0)
    w.tick(0)
    w.report(a, "downloading", 10)
    w.commit([c], 10)
    w.offline.add(b)
    w.tick(105)
    assert w.devices[a].state == "downloading"  # last change at 10: 95 s
    w.tick(111)
    assert (w.devices[a].state, w.devices[a].reason) == ("failed", "timeout")
    assert w.devices[b].state == "notified"  # offline: waits, no timeout
    w.tick(5000)
    assert w.devices[b].state == "notified" and w.progress.status == "running"
    # b comes back: its clock starts when it is back online, not at notification.
    w.offline.discard(b)
    w.online_since[b] = 6000
    w.tick(6050)
    assert w.devices[b].state == "notified"
    w.report(b, "committed", 6060)
    w.tick(6061)
    assert w.progress.status == "completed"


# A device that reports without progress (review, December 2026: one device re-sending
# "downloading" with a rising ts every 50 min held its stage in flight for ever; reports go
# through tracking here, as from a device).

def test_a_device_repeating_its_state_times_out_and_the_stage_goes_on() -> None:
    s = strat(canary=2, waves=[100], device_timeout_s=100, soak_s=0, success_percent=50,
              max_failures={"kind": "count", "value": 3})
    w = World(4, s)
    w.tick(0)
    liar, good = w.stage_of(0)
    assert w.send(good, "committed", 5)
    assert w.send(liar, "downloading", 10)
    now = 10.0
    while w.devices[liar].state == "downloading" and now < 10_000:
        now += 50
        assert w.send(liar, "downloading", now)  # applied (newer), but no progress
        w.tick(now + 1)
    dev = w.devices[liar]
    assert (dev.state, dev.reason, now) == ("failed", "timeout", 110)  # 101 s after 10
    assert dev.detail == "online but no progress for 101 s (was downloading)"
    assert w.progress.stage == 1 and sorted(w.notified) == sorted(w.devices)  # goes on
    assert not w.send(liar, "downloading", now + 10)  # its attempt is over
    assert w.send(liar, "committed", now + 20)  # an outcome still replaces the timeout
    assert w.devices[liar].state == "committed"


def test_a_device_changing_state_without_an_outcome_fails_after_three_timeouts() -> None:
    s = strat(canary=2, waves=[100], device_timeout_s=100, soak_s=0, success_percent=50,
              max_failures={"kind": "count", "value": 3})
    w = World(4, s)
    w.tick(0)
    liar, good = w.stage_of(0)
    assert w.send(good, "committed", 5)
    steps: list[OtaState] = ["verifying", "downloading"]
    now = 0.0
    while w.devices[liar].state != "failed" and now < 10_000:
        now += 90
        assert w.send(liar, steps[int(now / 90) % 2], now)  # a change every 90 s
        w.online_since[liar] = now  # and a fresh status each time: no extension either
        w.tick(now + 1)
    dev = w.devices[liar]
    # Notified at 0: at most 3 x device_timeout_s, the first tick after 300 s.
    assert (dev.state, dev.reason, now) == ("failed", "timeout", 360)
    assert dev.detail == ("online and no outcome 361 s after it was notified (at most 3 x "
                          "device_timeout_s) (was verifying)")
    assert f"{liar}: timed out in verifying" in w.log
    assert w.progress.stage == 1 and sorted(w.notified) == sorted(w.devices)


def test_a_finished_or_unnotified_record_is_not_moved_back_in_flight() -> None:
    s = strat(canary=3, waves=[100], soak_s=0, success_percent=1,
              max_failures={"kind": "count", "value": 5})
    w = World(4, s)
    w.tick(0)
    done, refused, rolled = w.stage_of(0)
    [waiting] = w.stage_of(1)
    assert w.send(done, "committed", 5)
    assert w.send(refused, "failed", 5, "bad-signature")
    assert w.send(rolled, "rolled_back", 5, "health-errors")
    late: list[tuple[str, OtaState]] = [(done, "downloading"), (refused, "trial"),
                                        (rolled, "staged"), (waiting, "downloading")]
    for dev, state in late:  # newer events, but no open attempt
        assert not w.send(dev, state, 6)
    assert {d: p.state for d, p in w.devices.items()} == {
        done: "committed", refused: "failed", rolled: "rolled_back", waiting: "pending"}
    assert w.devices[done].changed_at == 5
    w.tick(7)  # the canary settled; its wave starts as usual
    assert w.progress.stage == 1 and w.devices[waiting].state == "notified"


def test_re_sent_transient_failures_do_not_postpone_a_retry_for_ever() -> None:
    s = strat(canary=2, waves=[100], retry_base_s=30, max_retries=2, soak_s=0,
              success_percent=50, max_failures={"kind": "count", "value": 3})
    w = World(4, s)
    w.tick(0)
    liar, good = w.stage_of(0)
    assert w.send(good, "committed", 5)
    now = 0.0
    while not (w.devices[liar].state == "failed" and w.devices[liar].attempts > 2) \
            and now < 10_000:
        now += 20  # under every backoff: "failed" again (and "downloading", an own retry)
        w.send(liar, "downloading", now)
        w.send(liar, "failed", now + 0.5, "unavailable")
        w.tick(now + 1)
    # Each retry came when the server had scheduled it (30 s after the tick at 21 saw the
    # failure, then 60 s after 81), and the retries ran out: a final failure at 161.
    assert w.renotified == [liar, liar] and w.devices[liar].notified_at == 141
    assert (now, w.devices[liar].reason) == (160, "unavailable")
    assert w.progress.stage == 1 and sorted(w.notified) == sorted(w.devices)


def test_a_genuine_retry_is_a_new_attempt_with_its_own_time() -> None:
    s = strat(canary=1, waves=[100], device_timeout_s=100, retry_base_s=10, soak_s=0,
              max_failures={"kind": "count", "value": 0})
    w = World(2, s)
    w.tick(0)
    [dev] = w.stage_of(0)
    first: list[tuple[float, OtaState]] = [(1, "downloading"), (90, "verifying"),
                                           (180, "staged")]
    for now, state in first:
        assert w.send(dev, state, now)
        w.tick(now + 1)
    assert w.send(dev, "failed", 260, "unavailable")
    w.tick(261)
    assert (w.devices[dev].state, w.devices[dev].retry_at) == ("retrying", 271)
    assert not w.send(dev, "downloading", 265)  # the agent's own retry: counts once notified
    assert w.tick(271).renotify == (dev,)  # a new attempt: notified again at 271
    assert (w.devices[dev].state, w.devices[dev].attempts) == ("notified", 2)
    # Past 3 x device_timeout_s from the first notification, not from this one.
    second: list[tuple[float, OtaState]] = [(300, "downloading"), (380, "verifying"),
                                            (460, "staged"), (540, "smoke_testing"),
                                            (560, "trial")]
    for now, state in second:
        assert w.send(dev, state, now)
        w.tick(now + 1)
        assert w.devices[dev].state == state
    assert w.send(dev, "committed", 570)
    w.tick(571)
    assert w.devices[dev].state == "committed" and w.devices[dev].attempts == 2
    assert w.renotified == [dev] and w.progress.status == "running"
    w.commit(w.stage_of(1), 580)
    w.tick(581)
    assert w.progress.status == "completed"


# A lost final OtaEvent (broker killed -9 with it in flight, a replica killed before it
# acknowledged it): the record stays where it was; the device's status tells the outcome.

@pytest.mark.parametrize("last_report", ["downloading", "verifying", "staged",
                                         "smoke_testing", "trial"])
def test_a_lost_committed_report_is_inferred_from_the_status(last_report: str) -> None:
    s = strat(canary=2, waves=[100], device_timeout_s=100, soak_s=0)
    w = World(2, s)
    a, b = w.stage_of(0)
    w.tick(0)
    w.report(a, last_report, 10)
    w.commit([b], 10)
    # Its status (after a reconnect at 20) shows v2 live, without the trial flag (an
    # older agent).
    w.live_version[a] = TARGET
    w.online_since[a] = 20
    w.tick(119)
    # Not yet: such an agent lists the candidate as live during its trial, so v2 in its
    # status is no proof of a commit while a trial may still run.
    assert w.devices[a].state == last_report and w.progress.status == "running"
    w.tick(121)
    dev = w.devices[a]
    assert (dev.state, dev.reason) == ("committed", "inferred-from-status")
    assert dev.detail is not None and dev.detail.startswith("inferred from status: v2 live")
    assert f"{a}: committed (inferred from status, was {last_report})" in w.log
    assert w.progress.status == "completed"


@pytest.mark.parametrize("last_report", ["downloading", "smoke_testing", "trial"])
def test_a_status_with_the_target_committed_not_on_trial_is_a_commit_at_once(
        last_report: str) -> None:
    s = strat(canary=2, waves=[100], device_timeout_s=100, soak_s=0)
    w = World(2, s)
    a, b = w.stage_of(0)
    w.tick(0)
    w.report(a, last_report, 10)
    w.commit([b], 10)
    w.live_version[a], w.live_trial[a] = TARGET, False  # the status after its verdict
    w.online_since[a] = 11
    w.tick(12)  # no device_timeout_s wait: the agent says it is not on trial
    dev = w.devices[a]
    assert (dev.state, dev.reason) == ("committed", "inferred-from-status")
    assert dev.detail is not None and dev.detail.startswith("inferred from status: v2 live")
    assert f"{a}: committed (inferred from status, was {last_report})" in w.log
    assert w.progress.status == "completed"


def test_a_status_with_the_target_on_trial_proves_nothing() -> None:
    s = strat(canary=2, waves=[100], device_timeout_s=100, soak_s=0)
    w = World(2, s)
    a, b = w.stage_of(0)
    w.tick(0)
    w.report(a, "trial", 10)
    w.commit([b], 10)
    w.live_version[a], w.live_trial[a] = TARGET, True  # a status (reconnect) mid-trial
    w.online_since[a] = 20
    w.tick(21)
    assert w.devices[a].state == "trial" and w.progress.status == "running"
    # Still on trial by its last status after the wait: its verdict (report and status)
    # was lost; neither outcome is proven, so it times out.
    w.tick(121)
    assert (w.devices[a].state, w.devices[a].reason) == ("failed", "timeout")


def test_a_lost_rolled_back_report_is_inferred_only_after_a_trial() -> None:
    s = strat(canary=3, waves=[100], device_timeout_s=100, soak_s=0, success_percent=1,
              max_failures={"kind": "count", "value": 3})
    w = World(3, s)
    a, b, c = w.stage_of(0)
    w.tick(0)
    w.report(a, "trial", 10)  # then v1 again: the candidate was swapped out
    w.report(b, "downloading", 10)  # v1 live: no outcome to see, a plain timeout
    w.report(c, "trial", 10)
    w.offline.add(c)  # offline: waits, whatever its last status said
    w.tick(111)
    assert (w.devices[a].state, w.devices[a].reason) == ("rolled_back",
                                                         "inferred-from-status")
    assert "v1 live again after the trial of v2" in (w.devices[a].detail or "")
    assert (w.devices[b].state, w.devices[b].reason) == ("failed", "timeout")
    assert w.devices[c].state == "trial"
    assert w.states() == {"rolled_back": 1, "failed": 1, "trial": 1}


def test_a_late_report_overrides_an_inferred_state() -> None:
    inferred = DeviceProgress("d00", 0, state="committed", reason="inferred-from-status",
                              changed_at=121)
    late = OtaEvent(seq=7, ts=50.0, device_id="d00", slot="logs", state="rolled_back",
                    from_version=2, to_version=TARGET, reason="health-errors")
    new = apply_event(inferred, EventKey(ts=40.0, seq=5), late, TARGET, received_at=130)
    assert new is not None and (new.state, new.reason) == ("rolled_back", "health-errors")


def test_an_offline_device_does_not_hold_a_stage_and_catches_up_later() -> None:
    w = World(6, strat(canary=2, waves=[50, 100], soak_s=0), offline={"d00"})
    assert "d00" not in w.stage_of(0)  # canaries are picked among online devices
    # Fixed stages for the test: d00 (offline) in the first wave.
    layout = {"d01": 0, "d02": 0, "d00": 1, "d03": 1, "d04": 2, "d05": 2}
    w.devices = {d: DeviceProgress(d, s) for d, s in layout.items()}
    w.tick(0)
    w.commit(["d01", "d02"], 1)
    assert sorted(w.tick(2).notify) == ["d00", "d03"]
    w.commit(["d03"], 3)
    plan = w.tick(4)
    assert w.progress.stage == 2 and sorted(plan.notify) == ["d04", "d05"]
    w.commit(["d04", "d05"], 5)
    w.tick(6)
    assert w.progress.status == "running"  # last stage passed, d00 still to catch up
    assert w.devices["d00"].state == "notified"
    w.offline.clear()
    w.report("d00", "downloading", 50)
    w.tick(51)
    w.report("d00", "committed", 60)
    w.tick(61)
    assert w.progress.status == "completed"


def test_a_stage_of_offline_devices_waits_for_one_to_answer() -> None:
    w = World(3, strat(canary=0, waves=[100]), offline={"d00", "d01", "d02"})
    w.tick(0)
    w.tick(10_000)
    assert w.progress.stage_settled_at is None and w.progress.status == "running"


def test_device_already_running_the_target_counts_as_committed() -> None:
    w = World(2, strat(canary=1, waves=[100], soak_s=0))
    w.live_version = dict.fromkeys(w.devices, TARGET)
    w.tick(0)
    w.tick(1)
    assert w.devices[w.stage_of(0)[0]].reason == "already-installed"
    w.tick(2)
    assert w.progress.status == "completed"


def test_device_running_a_newer_version_is_skipped_not_downgraded() -> None:
    w = World(3, strat(canary=0, waves=[100], soak_s=0))
    newer = sorted(w.devices)[0]
    w.live_version[newer] = TARGET + 1
    plan = w.tick(0)
    assert newer not in plan.notify and len(plan.notify) == 2
    assert (w.devices[newer].state, w.devices[newer].reason) == ("skipped", "newer-installed")
    w.commit([d for d in w.devices if d != newer], 1)
    w.tick(2)
    assert w.progress.status == "completed"


def test_a_device_that_cannot_read_the_bundle_is_skipped_and_the_rollout_goes_on() -> None:
    """Its agent said what it reads, and the bundle needs more: notified, it would download
    the bundle, refuse it and count as a failure (two such devices would halt this rollout).
    Skipped instead, named, and the stage passes on the others. A device whose reads are
    not known (no status since the server asked) is notified: it decides itself."""
    w = World(4, strat(canary=0, waves=[100], soak_s=0,
                       max_failures=FailureThreshold(kind="count", value=0)))
    w.needs = frozenset({"level_offsets", "tokenizer.head:time-host-v1"})
    old, older, unknown, _ = sorted(w.devices)
    w.reads[old] = frozenset({"tokenizer.head:time-host-v1"})
    w.reads[older] = frozenset()
    w.reads[unknown] = None
    plan = w.tick(0)
    assert set(plan.notify) == set(w.devices) - {old, older}
    for d in (old, older):
        assert (w.devices[d].state, w.devices[d].reason) == ("skipped", "cannot-read")
    assert "level_offsets of the v2 manifest" in str(w.devices[old].detail)
    assert "level_offsets, tokenizer.head:time-host-v1" in str(w.devices[older].detail)
    w.commit(list(plan.notify), 1)
    w.tick(2)
    assert w.progress.status == "completed"


def test_a_skipped_device_is_notified_once_its_agent_is_upgraded() -> None:
    """The skip said "upgrade the agent first": when its status says it reads the bundle
    while the rollout runs, it is notified (a first notification: the driver records its
    version before); not while paused, and not one of a stage that has not started."""
    w = World(4, strat(canary=1, waves=[50, 100], soak_s=100))
    w.needs = frozenset({"level_offsets"})
    [canary] = w.stage_of(0)
    first_wave, later = w.stage_of(1), w.stage_of(2)
    w.reads[canary] = w.reads[later[0]] = frozenset()
    w.tick(0)
    assert w.devices[canary].reason == "cannot-read" and w.notified == []
    assert "canary passed: nothing to update (1 skipped)" in w.log  # soaking
    w.reads[later[0]] = frozenset({"level_offsets"})  # upgraded before its stage started
    w.reads[canary] = frozenset({"level_offsets"})  # upgraded during the soak
    w.progress = pause(w.progress)
    assert canary not in w.tick(1).notify  # paused: nothing new goes out
    w.progress = resume(w.progress, list(w.devices.values()))
    plan = w.tick(2)
    assert plan.notify == (canary,) and w.devices[canary].state == "notified"
    assert w.devices[canary].reason is None and w.devices[canary].attempts == 1
    assert f"{canary}: its agent reads the v2 bundle now: notified" in w.log
    assert w.devices[later[0]].state == "pending"  # its own stage will notify it
    w.commit([canary], 3)
    assert set(w.tick(101).notify) == set(first_wave)
    w.commit(first_wave, 102)
    w.tick(103)
    assert set(w.tick(204).notify) == set(later)
    w.commit(later, 205)
    w.tick(206)
    assert w.progress.status == "completed"
    assert all(d.state == "committed" for d in w.devices.values())


def test_a_stage_whose_every_device_is_skipped_passes_instead_of_waiting_for_ever() -> None:
    """A canary stage of one older agent (or one already on a newer version): nothing of
    it can have an outcome. Before (December 2026) the stage waited for one for ever."""
    w = World(3, strat(canary=1, waves=[100], soak_s=0))
    w.needs = frozenset({"level_offsets"})
    [canary] = w.stage_of(0)
    w.reads[canary] = frozenset()
    plan = w.tick(0)
    assert w.devices[canary].state == "skipped"
    assert "canary passed: nothing to update (1 skipped)" in w.log
    assert set(plan.notify) == set(w.devices) - {canary}  # the wave goes on (no soak)
    w.commit([d for d in w.devices if d != canary], 2)
    w.tick(3)
    assert w.progress.status == "completed"
    every = World(2, strat(canary=0, waves=[100], soak_s=0))
    every.live_version = {d: TARGET + 1 for d in every.devices}
    every.tick(0)
    assert every.progress.status == "completed"


def test_a_bundle_that_needs_nothing_new_reaches_every_agent() -> None:
    w = World(3, strat(canary=0, waves=[100], soak_s=0))
    for d in w.devices:
        w.reads[d] = frozenset()  # reads format 1 only
    assert len(w.tick(0).notify) == 3


# --- operator actions --------------------------------------------------------------------------

def test_pause_stops_new_stages_and_retries_until_resumed() -> None:
    w = World(4, strat(canary=1, soak_s=0, retry_base_s=5))
    w.tick(0)
    [c] = w.stage_of(0)
    w.progress = pause(w.progress)
    w.report(c, "failed", 1, "unavailable")
    w.tick(2)
    assert w.devices[c].state == "retrying"
    assert not w.tick(100).renotify  # paused: no retry
    w.progress = resume(w.progress, list(w.devices.values()))
    assert w.tick(101).renotify == (c,)
    w.commit([c], 102)
    w.progress = pause(w.progress)
    assert not w.tick(103).notify  # canary passed, but paused: no next wave
    w.progress = resume(w.progress, list(w.devices.values()))
    assert w.tick(104).notify
    with pytest.raises(InvalidOperation, match="only a paused or halted"):
        resume(w.progress, [])


def test_abort_rolls_back_devices_in_flight_and_skips_the_rest() -> None:
    w = World(6, strat(canary=4, waves=[100]))
    w.tick(0)
    a, b, c, d = w.stage_of(0)
    w.report(a, "trial", 1)
    w.report(b, "downloading", 1)
    w.report(c, "committed", 1)
    progress, changed, rollback = plan_abort(w.progress, list(w.devices.values()), 2)
    assert progress.status == "aborted"
    assert sorted(rollback) == sorted([a, b, d])  # c committed: it stays
    assert changed[d].state == "cancelled"
    assert {changed[x].state for x in w.stage_of(1)} == {"skipped"}
    with pytest.raises(InvalidOperation, match="already aborted"):
        plan_abort(progress, [], 3)
    with pytest.raises(InvalidOperation, match="only a running rollout"):
        pause(progress)


# --- short forms -------------------------------------------------------------------------------

def test_cli_short_forms() -> None:
    assert parse_duration("10m") == 600 and parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90 and parse_duration("0") == 0
    assert parse_duration("2.5s") == 2.5
    for bad in ("", "10x", "m10", "1h 30m"):
        with pytest.raises(ValueError, match="invalid duration"):
            parse_duration(bad)
    assert parse_threshold("5%") == FailureThreshold(kind="percent", value=5)
    assert parse_threshold("3") == FailureThreshold(kind="count", value=3)
    with pytest.raises(ValueError, match="invalid failure threshold"):
        parse_threshold("many")
    with pytest.raises(ValueError, match="at most 100"):
        parse_threshold("150%")
    assert parse_waves("10,50,100") == [10, 50, 100]
    sel = parse_selector(["group=eu", "tag=pumps,solar"])
    assert sel.group == "eu" and sel.tags == ["pumps", "solar"] and sel.ids is None
    assert parse_selector(["ids=a,b", "ids=c"]).ids == ["a", "b", "c"]
    assert parse_selector(["all"]).all
    cases: list[tuple[list[str], str]] = [(["color=red"], "invalid --select"),
                                          (["group=a b"], "invalid group"),
                                          ([], "select devices")]
    for terms, msg in cases:
        with pytest.raises(ValueError, match=msg):
            parse_selector(terms)


@pytest.mark.parametrize(("waves", "message"), [
    ([10, 50], "the last wave must be 100"),
    ([50, 10, 100], "must increase"),
    ([0, 100], r"waves.0\n  Input should be greater than 0"),  # the schema states (0, 100]
])
def test_strategy_refuses_bad_waves(waves: list[float], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Strategy(waves=waves)
