"""The OTA state machine and trial health as pure functions; the record store on a real
file system; recovery when the committed bundle is damaged."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from agent.ota.config import OtaConfig, TrialConfig
from agent.ota.health import (
    PairedSample,
    ReferenceLine,
    TrialStats,
    early_failure,
    evaluate,
    swapped_labels,
    trial_phase,
)
from agent.ota.record import InstalledRef, OtaRecord, UpdateTarget, VersionFloor
from agent.ota.state import (
    IN_PROGRESS,
    DeltaUnusable,
    Desired,
    Downloaded,
    Event,
    Failed,
    IllegalTransition,
    Proceed,
    Resume,
    SmokePassed,
    TrialStopped,
    TrialVerdict,
    Verified,
    transition,
)
from agent.ota.store import OtaStore, bundle_file_name

pytestmark = pytest.mark.unit

SHA_A, SHA_B = "a" * 64, "b" * 64
V1 = InstalledRef(model="m", version=1, sha256=SHA_A, file="m-1.nfb")
V2 = InstalledRef(model="m", version=2, sha256=SHA_B, file="m-2.nfb")


def target(version: int = 2, revision: int = 1) -> UpdateTarget:
    return UpdateTarget(model="m", version=version, revision=revision)


def desired(version: int = 2, revision: int = 1, live: int = 1) -> Desired:
    return Desired(target(version, revision), "m", live)


def run(rec: OtaRecord, *events: Event, now: float = 1000.0) -> tuple[OtaRecord, list[tuple]]:
    trace = []
    for ev in events:
        step = transition(rec, ev, now)
        rec = step.record
        trace.append((rec.state, step.actions))
    return rec, trace


def happy_events() -> list[Event]:
    return [desired(), Downloaded("delta", 300), Verified(V2), Proceed(), SmokePassed(),
            TrialVerdict(True, None, "fine")]


def test_update_walks_every_state_and_commits() -> None:
    rec, trace = run(OtaRecord(slot="s", committed=V1), *happy_events())
    assert trace == [
        ("downloading", ("report", "fetch")), ("verifying", ("report", "verify")),
        ("staged", ("report", "proceed")), ("smoke_testing", ("report", "smoke_test")),
        ("trial", ("report", "trial")), ("committed", ("commit", "report"))]
    assert rec.committed == V2 and rec.previous == V1 and rec.candidate is None
    assert (rec.artifact, rec.bytes_downloaded, rec.from_version) == ("delta", 300, 1)


def test_refused_delta_falls_back_to_full_once() -> None:
    rec, trace = run(OtaRecord(slot="s"), desired(), DeltaUnusable("hash-mismatch", "bad"))
    assert trace[-1] == ("downloading", ("report", "fetch"))
    assert rec.delta_failed and rec.reason == "hash-mismatch"
    assert "full bundle" in (rec.detail or "")
    rec, _ = run(rec, Downloaded("full", 5000))
    assert rec.reason is None and rec.artifact == "full"
    with pytest.raises(IllegalTransition):
        run(rec.model_copy(update={"state": "verifying"}), DeltaUnusable("x", "again"))


def test_failure_before_trial_fails_and_in_trial_rolls_back() -> None:
    rec, trace = run(OtaRecord(slot="s"), desired(), Failed("bad-signature", "targets"))
    assert trace[-1] == ("failed", ("discard", "report"))
    assert rec.retry_at is None and rec.committed is None
    rec, trace = run(OtaRecord(slot="s", committed=V1), *happy_events()[:-1],
                     TrialVerdict(False, "health-collapse", "all 'power'"))
    assert trace[-1] == ("rolled_back", ("rollback", "report"))
    assert rec.committed == V1 and rec.reason == "health-collapse"


def test_refused_target_is_not_retried_until_a_new_revision() -> None:
    failed, _ = run(OtaRecord(slot="s"), desired(), Failed("hash-mismatch", "x"))
    assert transition(failed, desired(), 10_000.0).record == failed  # same revision: quiet
    again = transition(failed, desired(revision=2), 10_000.0)
    assert again.record.state == "downloading" and again.actions == ("report", "fetch")


def test_transient_failure_is_retried_after_its_time() -> None:
    failed = transition(transition(OtaRecord(slot="s"), desired(), 0.0).record,
                        Failed("unavailable", "no route"), 100.0, retry_after_s=60).record
    assert failed.retry_at == 160.0
    assert transition(failed, desired(), 120.0).record == failed
    assert transition(failed, desired(), 161.0).record.state == "downloading"
    # The clock stepped back past the failure (no RTC, an NTP correction): due at once,
    # not when the clock has caught up again.
    assert transition(failed, desired(), 99.0).record.state == "downloading"
    # A failure that is not retried by time stays quiet whatever the clock does.
    final = transition(transition(OtaRecord(slot="s"), desired(), 0.0).record,
                       Failed("hash-mismatch", "altered"), 100.0, retry_after_s=60).record
    assert final.retry_at is None and transition(final, desired(), 50.0).record == final


def test_desired_already_live_in_progress_or_downgrade() -> None:
    idle = OtaRecord(slot="s", committed=V2)
    assert transition(idle, desired(version=2, live=2)).record == idle
    busy, _ = run(OtaRecord(slot="s"), desired())
    assert transition(busy, desired(version=3, revision=2)).record == busy
    refused = transition(idle, desired(version=1, live=2), 5.0)
    assert refused.record.state == "failed" and refused.record.reason == "downgrade"
    assert refused.actions == ("report",)
    assert transition(refused.record, desired(version=1, live=2), 6.0).record == refused.record


def test_after_a_fall_back_at_boot_nothing_below_the_fallen_version_installs() -> None:
    """Review, December 2026: downgrade protection followed the live version only, so once
    a committed v5 failed to load and v2 ran again, a server could install v3 or v4 (signed,
    superseded). The record's floor keeps v5's place until the next commit."""
    fell_back = OtaRecord(slot="s", committed=V2, floor=VersionFloor(model="m", version=5))
    for version in (3, 4):
        refused = transition(fell_back, desired(version=version, live=2), 5.0)
        assert (refused.record.state, refused.record.reason) == ("failed", "downgrade")
        assert refused.record.detail is not None and "version 5" in refused.record.detail
        assert refused.actions == ("report",)
    # The fallen version itself may come back (a fresh download of a damaged file) ...
    rec, trace = run(fell_back, desired(version=5, live=2), Downloaded("full", 900),
                     Verified(V2.model_copy(update={"version": 5, "file": "m-5.nfb"})),
                     Proceed(), SmokePassed(), TrialVerdict(True, None, "fine"))
    assert trace[0] == ("downloading", ("report", "fetch"))
    # ... and its commit lifts the floor: the live version guards again.
    assert rec.state == "committed" and rec.floor is None
    # Another model in the slot is not held to this model's floor.
    other = Desired(UpdateTarget(model="n", version=1, revision=1), "m", 2)
    assert transition(fell_back, other, 5.0).record.state == "downloading"


def test_a_trial_cut_by_a_new_boot_is_tried_again_the_agents_own_death_is_not() -> None:
    rec, _ = run(OtaRecord(slot="s", committed=V1), desired(), Downloaded("delta", 300),
                 Verified(V2), Proceed(), SmokePassed("boot-a"))
    assert (rec.state, rec.trial_boot_id) == ("trial", "boot-a")
    # Power lost (or a reset): another boot id at the next start.
    step = transition(rec, Resume(3, "boot-b"), 20.0)
    assert (step.record.state, step.record.resumes) == ("staged", 1)
    assert step.actions == ("report", "proceed") and "new boot" in (step.record.detail or "")
    assert step.record.committed == V1 and step.record.candidate == V2
    # The same boot: the agent alone died during the trial, maybe by the candidate.
    for boot in ("boot-a", None):
        step = transition(rec, Resume(3, boot), 20.0)
        assert (step.record.state, step.record.reason) == ("rolled_back", "interrupted-trial")
    # An agent that cannot read the boot id, and a record from before the field, roll back.
    legacy = rec.model_copy(update={"trial_boot_id": None})
    assert transition(legacy, Resume(3, "boot-b"), 20.0).record.state == "rolled_back"
    # Bounded by max_resumes, as other restarts are (rolled back, not held) ...
    worn = rec.model_copy(update={"resumes": 3})
    step = transition(worn, Resume(3, "boot-b"), 20.0)
    assert step.record.state == "rolled_back" and step.record.rejected == []
    # ... and tried again once only: a candidate can reset a device too (a starved
    # hardware watchdog, a panic on OOM). A second new boot rolls back and holds it.
    retried = transition(rec, Resume(3, "boot-b"), 20.0).record
    assert retried.trial_reboots == 1 and retried.trial_boot_id is None  # left the trial
    again, _ = run(retried, Proceed(), SmokePassed("boot-b"))
    assert (again.state, again.trial_boot_id, again.trial_reboots) == ("trial", "boot-b", 1)
    step = transition(again, Resume(3, "boot-c"), 30.0)
    assert (step.record.state, step.record.reason) == ("rolled_back", "interrupted-trial")
    assert [(r.model, r.version) for r in step.record.rejected] == [("m", 2)]
    assert "held" in (step.record.detail or "") and step.record.trial_boot_id is None
    held = transition(step.record, desired(version=2, revision=9), 40.0, rejected_hold_s=3600)
    assert (held.record.state, held.record.reason) == ("failed", "previously-rejected")
    # A new update starts with a fresh count.
    fresh, _ = run(step.record, desired(version=3, revision=10))
    assert fresh.trial_reboots == 0


def test_the_record_carries_a_floor_only_when_there_is_one(tmp_path: Path) -> None:
    store = OtaStore(tmp_path, "s")
    store.save(OtaRecord(slot="s", committed=V2))
    text = store.record_path.read_text()
    for key in ('"floor"', '"trial_boot_id"', '"trial_reboots"'):
        assert key not in text  # an agent from before these fields still reads the record
    rec = OtaRecord(slot="s", committed=V1, floor=VersionFloor(model="m", version=2),
                    trial_boot_id="boot-a")
    store.save(rec)
    assert OtaStore(tmp_path, "s").load() == rec


@pytest.mark.parametrize(("state", "after", "actions"), [
    ("downloading", "downloading", ("report", "fetch")),
    ("verifying", "downloading", ("report", "fetch")),
    ("staged", "staged", ("report", "proceed")),
    ("smoke_testing", "staged", ("report", "proceed")),
    ("trial", "rolled_back", ("discard", "report")),
])
def test_resume_finishes_before_trial_and_undoes_trial(state: str, after: str,
                                                       actions: tuple[str, ...]) -> None:
    rec = OtaRecord(slot="s", state=state, committed=V1, target=target(), candidate=V2)  # type: ignore[arg-type]
    step = transition(rec, Resume(max_resumes=3))
    assert (step.record.state, step.actions) == (after, actions)
    assert step.record.committed == V1  # a restart never changes what runs


def test_a_trial_stopped_cleanly_is_tried_again_a_killed_one_is_not() -> None:
    """A clean stop (SIGTERM: an upgrade, a reboot) during the trial is no verdict on the
    model: the next start smoke-tests and tries it again. Before (review, December 2026)
    it was a final interrupted-trial failure that rollouts counted against the release."""
    rec = OtaRecord(slot="s", state="trial", committed=V1, target=target(), candidate=V2)
    stopped = transition(rec, TrialStopped(), 10.0)
    assert stopped.actions == () and stopped.record.trial_stopped
    assert stopped.record.state == "trial" and stopped.record.committed == V1
    again = transition(stopped.record, Resume(max_resumes=3), 20.0)
    assert (again.record.state, again.actions) == ("staged", ("report", "proceed"))
    assert not again.record.trial_stopped and again.record.resumes == 1
    assert again.record.candidate == V2 and again.record.committed == V1
    # Stopped in every trial, max_resumes times: given up like a killed one.
    worn = stopped.record.model_copy(update={"resumes": 3})
    step = transition(worn, Resume(max_resumes=3), 30.0)
    assert (step.record.state, step.record.reason) == ("rolled_back", "interrupted-trial")
    # A TrialStopped outside a trial is a bug.
    with pytest.raises(IllegalTransition):
        transition(OtaRecord(slot="s", state="staged"), TrialStopped())


def test_repeated_crashes_in_one_update_give_up() -> None:
    rec = OtaRecord(slot="s", state="smoke_testing", committed=V1, target=target(), candidate=V2,
                    resumes=2)
    step = transition(rec, Resume(max_resumes=2))
    assert step.record.state == "failed" and step.record.reason == "crash-loop"
    for state in ("idle", "committed", "failed", "rolled_back"):
        done = OtaRecord(slot="s", state=state)
        assert transition(done, Resume(3)).record == done


def test_events_out_of_place_are_refused() -> None:
    with pytest.raises(IllegalTransition):
        transition(OtaRecord(slot="s"), SmokePassed())
    with pytest.raises(IllegalTransition):
        transition(OtaRecord(slot="s", state="committed"), Failed("x", "y"))


def test_committed_bundle_changes_only_on_commit_whatever_happens() -> None:
    """Random event storms with restarts anywhere: the bundle a restart would load changes
    only in trial -> committed, and only to the candidate that was in trial."""
    rng = random.Random(1)
    pool: list[Event] = [desired(2, 1), desired(3, 2), Downloaded("full", 10),
                         DeltaUnusable("hash-mismatch", "x"), Verified(V2), Proceed(),
                         SmokePassed(), TrialVerdict(True, None, "ok"),
                         TrialVerdict(False, "health-errors", "e"), Failed("unavailable", "u"),
                         Failed("smoke-test-failed", "s"), Resume(2), TrialStopped(),
                         SmokePassed("boot-a"), Resume(2, "boot-b"), Resume(2, "boot-a")]
    for _ in range(300):
        rec = OtaRecord(slot="s", committed=V1)
        for _ in range(30):
            try:
                step = transition(rec, rng.choice(pool), rng.uniform(0, 10_000))
            except IllegalTransition:
                continue
            if step.record.committed != rec.committed:
                assert (rec.state, step.record.state) == ("trial", "committed")
                assert step.record.committed == rec.candidate
            if step.record.state in IN_PROGRESS and step.record.state != "downloading":
                assert step.record.target is not None
            # Only a trial carries its boot id: a record out of one stays readable by an
            # agent from before the field (review, December 2026).
            assert step.record.trial_boot_id is None or step.record.state == "trial"
            assert step.record.trial_reboots == 0 or step.record.state in IN_PROGRESS
            rec = step.record


# --- health ----------------------------------------------------------------------------------
CFG = TrialConfig(duration_s=10, min_inferences=100, timeout_s=60)


def stats(**kw: object) -> TrialStats:
    base: dict[str, object] = {"lines": 200, "calls": 20, "labels": {"normal": 120, "power": 80}}
    return TrialStats(**(base | kw))  # type: ignore[arg-type]


def sample(old: dict[str, int], new: dict[str, int], old_ms: float = 1.0,
           new_ms: float = 1.0) -> PairedSample:
    return PairedSample(sum(new.values()), old, new, old_ms, new_ms)


def test_early_failures() -> None:
    assert early_failure(stats(), CFG) is None
    v = early_failure(stats(error_lines=1, last_error="ValueError: boom"), CFG)
    assert v is not None and v.reason == "health-errors" and "boom" in v.detail
    lenient = CFG.model_copy(update={"max_error_rate": 0.01})
    assert early_failure(stats(error_lines=1), lenient) is None
    v = early_failure(stats(nonfinite_rows=3), CFG)
    assert v is not None and v.reason == "health-non-finite"
    v = early_failure(stats(bad_sum_rows=2), CFG)
    assert v is not None and v.reason == "health-probabilities"


def test_trial_phase() -> None:
    assert trial_phase(5, 500, CFG) == "running"
    assert trial_phase(11, 50, CFG) == "running"
    assert trial_phase(11, 100, CFG) == "ready"
    assert trial_phase(61, 3, CFG) == "timed_out"


def paired(pairs: dict[tuple[str, str], int]) -> PairedSample:
    old: dict[str, int] = {}
    new: dict[str, int] = {}
    for (a, b), n in pairs.items():
        old[a] = old.get(a, 0) + n
        new[b] = new.get(b, 0) + n
    return PairedSample(sum(pairs.values()), old, new, 1.0, 1.0, pairs=pairs)


def test_labels_exchanged_in_a_ring_are_rolled_back_a_moved_category_is_not() -> None:
    """The output order mixed up (hardware and security exchanged): counts, flags and rates
    all look right, so only the old and new label of each sampled line show it."""
    swap = {("normal", "normal"): 60, ("hardware", "security"): 18, ("hardware", "hardware"): 2,
            ("security", "hardware"): 15, ("power", "power"): 10}
    v = evaluate(stats(), paired(swap), CFG, timed_out=False)
    assert (v.healthy, v.reason) == (False, "health-labels-swapped")
    assert "18 of the 20 lines the previous model called 'hardware' are 'security'" in v.detail
    assert "15 of the 15 lines the previous model called 'security' are 'hardware'" in v.detail
    assert health_swapped(paired({("network", "storage"): 9, ("storage", "sensor"): 9,
                                  ("sensor", "network"): 9, ("normal", "normal"): 30}))
    # A site's fine-tune that files one category under another, or quiets it: no ring.
    moved = {("normal", "normal"): 60, ("hardware", "storage"): 20, ("storage", "storage"): 20,
             ("power", "normal"): 10}
    assert evaluate(stats(), paired(moved), CFG, timed_out=False).healthy
    # Too few lines of a label to say, or not most of them moved: no verdict.
    assert not health_swapped(paired({("hardware", "security"): 5, ("security", "hardware"): 5,
                                      ("normal", "normal"): 60}))
    assert not health_swapped(paired({("hardware", "security"): 10, ("hardware", "hardware"): 10,
                                      ("security", "hardware"): 15, ("normal", "normal"): 60}))


def test_a_ring_against_an_old_model_the_factory_lines_disown_is_no_failure() -> None:
    swap = {("normal", "normal"): 60, ("hardware", "security"): 18, ("security", "hardware"): 15}
    cure = [ReferenceLine("hardware", "security", "hardware"),
            ReferenceLine("security", "hardware", "security"),
            ReferenceLine("normal", "normal", "normal")]
    v = evaluate(stats(), paired(swap), CFG, timed_out=False, reference=cure)
    assert v.healthy and "show to be the swapped one" in v.detail
    # The factory lines side with the old model, say nothing of the ring's labels, or do
    # not side with the new one on all of them: the ring stands.
    for reference in ([ReferenceLine("hardware", "hardware", "security")],
                      [ReferenceLine("normal", "normal", "normal")],
                      [ReferenceLine("hardware", "security", "hardware"),
                       ReferenceLine("security", "hardware", "storage")], []):
        v = evaluate(stats(), paired(swap), CFG, timed_out=False, reference=reference)
        assert v.reason == "health-labels-swapped"


def test_each_ring_is_judged_on_its_own() -> None:
    """Review, December 2026: only the first ring was judged, so a candidate that cured
    one swap (overruled) carried a swap of two other labels in."""
    two = {("normal", "normal"): 60, ("hardware", "security"): 18, ("security", "hardware"): 15,
           ("network", "storage"): 12, ("storage", "network"): 11}
    cures_one = [ReferenceLine("hardware", "security", "hardware"),
                 ReferenceLine("security", "hardware", "security")]
    v = evaluate(stats(), paired(two), CFG, timed_out=False, reference=cures_one)
    assert v.reason == "health-labels-swapped" and "'network'" in v.detail
    assert "'hardware'" not in v.detail  # the cured ring is not the complaint
    cures_both = [*cures_one, ReferenceLine("network", "storage", "network"),
                  ReferenceLine("storage", "network", "storage")]
    assert evaluate(stats(), paired(two), CFG, timed_out=False, reference=cures_both).healthy


def health_swapped(sample: PairedSample) -> bool:
    return bool(swapped_labels(sample, CFG))


def test_collapse_is_judged_against_the_old_model_on_the_same_lines() -> None:
    mixed = {"normal": 60, "power": 10, "storage": 30}
    v = evaluate(stats(), sample(mixed, {"power": 100}), CFG, timed_out=False)
    assert not v.healthy and v.reason == "health-collapse" and "'power'" in v.detail
    # A quiet device: both models call everything normal. Not a collapse.
    quiet = {"normal": 100}
    assert evaluate(stats(), sample(quiet, quiet), CFG, timed_out=False).healthy
    # Too few sampled lines: no comparison at all.
    assert evaluate(stats(), sample(mixed, {"power": 10}), CFG, timed_out=False).healthy


def test_latency_ratio_with_a_floor() -> None:
    same = {"normal": 100}
    v = evaluate(stats(), sample(same, same, old_ms=2.0, new_ms=9.0), CFG, timed_out=False)
    assert not v.healthy and v.reason == "health-latency"
    # Sub-floor timings are noise, whatever the ratio.
    assert evaluate(stats(), sample(same, same, old_ms=0.1, new_ms=4.0), CFG,
                    timed_out=False).healthy


def test_low_traffic_follows_policy() -> None:
    few = stats(lines=5, labels={"normal": 5})
    assert evaluate(few, None, CFG, timed_out=True).healthy
    strict = CFG.model_copy(update={"on_low_traffic": "rollback"})
    v = evaluate(few, None, strict, timed_out=True)
    assert not v.healthy and v.reason == "health-low-traffic"


def test_trial_config_validation() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        TrialConfig(duration_s=100, timeout_s=10)
    with pytest.raises(ValueError, match="http"):
        OtaConfig(metadata_url="ftp://x", target_base_url="http://x", root_file=Path("/r"))
    with pytest.raises(ValueError, match="extra"):
        OtaConfig.model_validate({"metadata_url": "http://x", "target_base_url": "http://x",
                                  "root_file": "/r", "surprise": 1})


# --- store -----------------------------------------------------------------------------------
def test_store_round_trip_and_atomic_files(tmp_path: Path) -> None:
    store = OtaStore(tmp_path, "s")
    assert store.load() == OtaRecord(slot="s")
    rec = OtaRecord(slot="s", state="staged", committed=V1, candidate=V2, target=target())
    store.save(rec)
    assert OtaStore(tmp_path, "s").load() == rec
    assert [p.name for p in store.ota_dir.iterdir() if p.name.startswith(".")] == []
    store.record_path.write_text("{torn")
    assert store.load() == OtaRecord(slot="s")
    assert store.record_path.with_suffix(".json.unreadable").exists()


def test_store_installs_verifies_and_tidies(tmp_path: Path) -> None:
    import hashlib

    store = OtaStore(tmp_path, "s")
    data = b"bundle bytes"
    sha = hashlib.sha256(data).hexdigest()
    (store.downloads / "x.nfb").write_bytes(data)
    (store.downloads / ".abc.part").write_bytes(b"half")
    ref = store.install(store.downloads / "x.nfb", "m", 3, sha)
    assert ref.file == bundle_file_name("m", 3, sha) and store.verified_path(ref) is not None
    store.path_of(ref).write_bytes(b"bit rot")
    assert store.verified_path(ref) is None
    (store.models / "stale.nfb").write_bytes(b"old")
    assert store.keep_only([ref, None]) == ["stale.nfb"]
    store.clear_downloads(keep_partial=True)
    assert [p.name for p in store.downloads.iterdir()] == [".abc.part"]
    store.clear_downloads()
    assert list(store.downloads.iterdir()) == []


def test_every_state_reports_as_a_valid_ota_event() -> None:
    from agent.ota.state import report_fields
    from contract.messages import OtaEvent

    rec, _ = run(OtaRecord(slot="s", committed=V1), *happy_events())
    event = OtaEvent(seq=1, device_id="d", **report_fields(rec, "s", "after restart"))
    assert (event.state, event.to_version, event.from_version) == ("committed", 2, 1)
    assert event.detail == "fine (after restart)"
    idle = OtaEvent(seq=2, device_id="d", **report_fields(OtaRecord(slot="s"), "s"))
    assert idle.to_version is None and idle.detail is None


def test_flag_rate_catches_a_storm_not_a_few_more_flags() -> None:
    same = {"normal": 200}

    def flags(old: int, new: int, cfg: TrialConfig = CFG) -> str | None:
        paired = PairedSample(200, same, same, 1.0, 1.0, baseline_flagged=old,
                              candidate_flagged=new)
        verdict = evaluate(stats(), paired, cfg, timed_out=False)
        return None if verdict.healthy else f"{verdict.reason}: {verdict.detail}"

    # A quiet device: 5 % flagged before, every line now (the review's storm).
    storm = flags(10, 200)
    assert storm is not None and storm.startswith("health-flag-rate") and "10 (5%)" in storm
    # Busy with alerts already (60 %): all lines flagged leaves none quiet: a storm too.
    assert flags(120, 200) is not None
    # A few more flags, or a more sensitive model (a site's fine-tune finding what the
    # base model missed), are no storm.
    assert flags(10, 25) is None          # 5 % -> 12.5 %: under the 10-point margin
    assert flags(10, 60) is None          # 5 % -> 30 %: 6x the flags, 1.4x fewer quiet
    assert flags(120, 150) is None        # 60 % -> 75 %
    assert flags(40, 130) is None         # 20 % -> 65 %: 2.3x fewer quiet
    assert flags(10, 140) is not None     # 5 % -> 70 %: 3.2x fewer quiet lines
    # Fewer flags are fine by default (a site's fine-tune ending its false alarms)...
    assert flags(40, 0) is None
    # ...and a silence check when a site asks for one.
    silent = CFG.model_copy(update={"silence_min_flags": 20})
    v = flags(40, 0, silent)
    assert v is not None and v.startswith("health-flag-rate") and "none" in v
    assert flags(10, 0, silent) is None   # too few flags before to call it silence


def test_a_trial_counts_anomaly_scores_that_are_no_probability() -> None:
    """The anomaly is a model output of its own: NaN there silenced anomaly alerts and
    made results unpublishable, yet only the probabilities were checked (review, December
    2026). The real model, its anomaly output replaced."""
    import numpy as np

    from agent.model import LoadedModel
    from agent.ota.trial import ObservedModel
    from nanomodel import default_bundle_path

    real = LoadedModel.load(default_bundle_path(), "onnxruntime")

    class Scored:
        def __init__(self, value: float) -> None:
            self.value = value
            self.manifest, self.runtime_name = real.manifest, real.runtime_name
            self.bundle_sha256 = real.bundle_sha256

        def classify(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
            probs, anomaly = real.classify(texts)
            return probs, np.full_like(anomaly, self.value)

        def close(self) -> None:
            pass

    lines = ["pump started", "disk /dev/sda1 failed: I/O error", "link up"]
    for value, bad in ((float("nan"), 3), (1.5, 3), (-0.2, 3), (1.0 + 1e-7, 0), (0.3, 0)):
        observed = ObservedModel(Scored(value), real, 16, prob_sum_tolerance=1e-3)
        observed.classify(lines)
        assert observed.stats().nonfinite_rows == bad, value
    verdict = early_failure(ObservedModel(Scored(float("nan")), real, 16, 1e-3).stats(), CFG)
    assert verdict is None  # nothing classified yet
    observed = ObservedModel(Scored(float("nan")), real, 16, 1e-3)
    observed.classify(lines)
    verdict = early_failure(observed.stats(), CFG)
    assert verdict is not None and verdict.reason == "health-non-finite"
    assert "anomaly outside [0, 1]" in verdict.detail
    real.close()


def test_a_version_refused_for_its_own_fault_is_held_against_new_revisions() -> None:
    """Before (review, December 2026) only (target, revision) was remembered: a server
    sending the same bad version under new revisions had it downloaded and live on trial
    every time."""
    hold = 86_400.0

    def step(rec: OtaRecord, ev: Event, now: float) -> OtaRecord:
        return transition(rec, ev, now, rejected_hold_s=hold).record

    rec = step(OtaRecord(slot="s", committed=V1), desired(revision=1), 100.0)
    rec = OtaRecord(**(rec.model_dump() | {"state": "trial", "candidate": V2.model_dump()}))
    rec = step(rec, TrialVerdict(False, "health-collapse", "all one label"), 200.0)
    assert rec.state == "rolled_back" and [(r.version, r.at) for r in rec.rejected] == [(2, 200.0)]

    again = transition(rec, desired(revision=2), 300.0, rejected_hold_s=hold)
    assert (again.record.state, again.record.reason) == ("failed", "previously-rejected")
    assert again.actions == ("report",) and again.record.retry_at == 200.0 + hold
    # The retained desired state looked at again before the hold is over: quiet.
    assert transition(again.record, desired(revision=2), 5_000.0,
                      rejected_hold_s=hold).record == again.record
    # After the hold, the same revision is tried (the operators may have fixed the cause).
    later = transition(again.record, desired(revision=2), 200.0 + hold + 1,
                       rejected_hold_s=hold)
    assert later.record.state == "downloading"
    # Another version is not held; nor is a version the operators rolled back.
    assert transition(rec, desired(version=3, revision=3), 300.0,
                      rejected_hold_s=hold).record.state == "downloading"
    pulled = OtaRecord(slot="s", state="trial", committed=V1, target=target(4), candidate=V2)
    pulled = step(pulled, TrialVerdict(False, "operator-rollback", "r9"), 400.0)
    assert pulled.rejected == []
    # Transient failures are not the model's fault either.
    busy = step(OtaRecord(slot="s", state="downloading", target=target(5)),
                Failed("unavailable", "no route"), 500.0)
    assert busy.rejected == []
