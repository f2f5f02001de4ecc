"""The OTA state machine of one model slot, as pure functions.

::

    idle -> downloading -> verifying -> staged -> smoke_testing -> trial -> committed
                     \\________ any failure ________\\_______________\\----> failed / rolled_back

:func:`transition` maps ``(persisted record, event)`` to ``(new record, actions)``.
The engine (:mod:`agent.ota.engine`) persists the new record *before* it runs the
actions, and the actions' outcomes come back as the next events. No I/O here.

The crash-safety invariant lives in the record: ``committed`` is the bundle that
runs after any restart. It changes in exactly one transition (trial -> committed),
and a restart in ``trial`` rolls back, so after a crash at any point the device
runs either the old or the new model — never a mix — and an interrupted update is
finished (steps before trial are resumed) or undone (a trial cut by the agent's own
death is rolled back; one cut by a clean stop, or once by a restart of the whole device,
is tried again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from agent.ota.record import (
    MAX_REJECTED,
    InstalledRef,
    OtaRecord,
    RejectedVersion,
    UpdateTarget,
)
from contract.messages import OtaState
from contract.reasons import OtaReason, is_transient

MAX_TRIAL_REBOOTS = 1  # whole-device restarts during a trial that are tried again
IN_PROGRESS: frozenset[OtaState] = frozenset(
    {"downloading", "verifying", "staged", "smoke_testing", "trial"})
# Failures with transient reasons (contract.reasons) are retried after retry_after_s
# without a new desired state; the fleet server's rollout policy reads the same set.


# Refusals that are the model's own fault: held against new revisions of the same version.
MODEL_FAULTS = frozenset({
    OtaReason.SMOKE_TEST_FAILED, OtaReason.LABELS_CHANGED, OtaReason.BUNDLE_INVALID,
    OtaReason.HEALTH_ERRORS, OtaReason.HEALTH_NON_FINITE, OtaReason.HEALTH_PROBABILITIES,
    OtaReason.HEALTH_LATENCY, OtaReason.HEALTH_COLLAPSE, OtaReason.HEALTH_FLAG_RATE,
    OtaReason.HEALTH_LABELS_SWAPPED, OtaReason.HEALTH_MEMORY,
    OtaReason.UNHEALTHY})


# --- events: what happened ------------------------------------------------------------------
@dataclass(frozen=True)
class Desired:
    """The desired state names ``target`` for this slot; ``live`` is what runs committed."""

    target: UpdateTarget
    live_model: str
    live_version: int


@dataclass(frozen=True)
class Resume:
    """The agent (re)started with this record on disk; ``boot_id``: the kernel's boot id
    now (None where it cannot be read)."""

    max_resumes: int
    boot_id: str | None = None


@dataclass(frozen=True)
class Downloaded:
    artifact: Literal["delta", "full"]
    length: int
    detail: str | None = None


@dataclass(frozen=True)
class DeltaUnusable:
    """The delta was refused (download or rebuild): the full bundle comes next."""

    reason: OtaReason
    detail: str


@dataclass(frozen=True)
class Verified:
    candidate: InstalledRef


@dataclass(frozen=True)
class Proceed:
    """The state just persisted may move on (staged -> smoke_testing)."""


@dataclass(frozen=True)
class SmokePassed:
    """The candidate loaded and passed its golden vectors; the trial starts in the boot
    ``boot_id``."""

    boot_id: str | None = None


@dataclass(frozen=True)
class TrialVerdict:
    healthy: bool
    reason: OtaReason | None
    detail: str


@dataclass(frozen=True)
class TrialStopped:
    """The agent is stopping cleanly (SIGTERM: a package upgrade, a reboot) during the
    trial: no verdict; the next start tries the candidate again."""


@dataclass(frozen=True)
class Failed:
    """A step failed; whether it is retried is derived from the reason."""

    reason: OtaReason
    detail: str


Event = Desired | Resume | Downloaded | DeltaUnusable | Verified | Proceed | SmokePassed | \
    TrialVerdict | TrialStopped | Failed


# --- actions: what the engine must do next --------------------------------------------------
Action = Literal[
    "report",       # publish the new state as an OtaEvent
    "fetch",        # refresh metadata, pick delta or full, download (resumable)
    "verify",       # apply a delta / hash-check, install the candidate in the models dir
    "proceed",      # feed Proceed (the state was persisted first: it is a crash point)
    "smoke_test",   # load the candidate on the configured runtime, run its golden vectors
    "trial",        # swap the candidate in, keep the old model loaded, watch health
    "commit",       # drop the old model, keep the new one, tidy files
    "rollback",     # swap the old model back, drop the candidate
    "discard",      # drop the candidate and (unless a resume is possible) the downloads
]


@dataclass(frozen=True)
class Step:
    record: OtaRecord
    actions: tuple[Action, ...] = ()


class IllegalTransition(ValueError):
    """An event arrived in a state where it cannot happen (a bug, not bad input)."""


def _with(rec: OtaRecord, now: float, **changes: object) -> OtaRecord:
    new = rec.model_copy(update={**changes, "updated_at": now})
    # Read only in a trial (the boot id) or an update (the reboot count); kept past them
    # they would only keep an older agent, which does not know the keys, from reading the
    # record (review, December 2026). A held version stays held in ``rejected``.
    if new.state != "trial" and new.trial_boot_id is not None:
        new = new.model_copy(update={"trial_boot_id": None})
    if new.state not in IN_PROGRESS and new.trial_reboots:
        new = new.model_copy(update={"trial_reboots": 0})
    return new


def _remember_rejected(rec: OtaRecord, now: float) -> OtaRecord:
    """``rec`` with its target held as refused for its own fault (rejected_hold_s)."""
    if rec.target is None:
        return rec
    t = rec.target
    kept = [r for r in rec.rejected if (r.model, r.version) != (t.model, t.version)]
    return rec.model_copy(update={"rejected": [*kept, RejectedVersion(
        model=t.model, version=t.version, at=now)][-MAX_REJECTED:]})


def _fail(rec: OtaRecord, reason: OtaReason, detail: str, now: float, retry_after_s: float) -> Step:
    """Leave the update: before trial nothing went live (failed); in trial, roll back."""
    retry = now + retry_after_s if is_transient(reason) else None
    if reason in MODEL_FAULTS:
        rec = _remember_rejected(rec, now)
    if rec.state == "trial":
        return Step(_with(rec, now, state="rolled_back", reason=reason, detail=detail,
                          retry_at=None), ("rollback", "report"))
    return Step(_with(rec, now, state="failed", reason=reason, detail=detail, retry_at=retry),
                ("discard", "report"))


def _start(rec: OtaRecord, ev: Desired, now: float) -> Step:
    same_model = ev.target.model == ev.live_model
    new = _with(rec, now, state="downloading", target=ev.target,
                from_version=ev.live_version if same_model else None, candidate=None,
                artifact=None, bytes_downloaded=None, delta_failed=False, resumes=0,
                trial_reboots=0, reason=None, detail=None, retry_at=None)
    return Step(new, ("report", "fetch"))


def _same_target(a: UpdateTarget | None, b: UpdateTarget) -> bool:
    return a is not None and (a.model, a.version) == (b.model, b.version)


def _held(rec: OtaRecord, t: UpdateTarget, now: float, hold_s: float) -> float | None:
    """Until when ``t`` is held back because this device refused it lately, or None."""
    for r in rec.rejected:
        if (r.model, r.version) == (t.model, t.version) and r.at <= now < r.at + hold_s:
            return r.at + hold_s
    return None


def _below_floor(rec: OtaRecord, t: UpdateTarget, ev: Desired) -> str | None:
    """What ``t`` would go below (for the refusal's detail), or None. Downgrade protection
    follows the live version, and after a fall back at boot the version that fell over:
    otherwise every signed version between the two could be installed again (review,
    December 2026)."""
    if t.model == ev.live_model and t.version < ev.live_version:
        return f"the live version {ev.live_version}"
    floor = rec.floor
    if floor is not None and t.model == floor.model and t.version < floor.version:
        return f"version {floor.version}, committed here before its bundle failed to load"
    return None


def on_desired(rec: OtaRecord, ev: Desired, now: float, hold_s: float = 0.0) -> Step:
    t = ev.target
    if rec.state in IN_PROGRESS:
        return Step(rec)  # one update at a time; the engine looks again when this one ends
    if t.model == ev.live_model and t.version == ev.live_version:
        return Step(rec)  # already live
    if _same_target(rec.target, t) and rec.state in ("failed", "rolled_back"):
        assert rec.target is not None
        # Due at its time, or at once when the clock went back past the failure (a device
        # without an RTC, an NTP step): a wall-clock retry time would otherwise wait for
        # the clock to catch up (review, December 2026).
        retry_due = rec.retry_at is not None and (now >= rec.retry_at or now < rec.updated_at)
        if t.revision == rec.target.revision and not retry_due:
            return Step(rec)  # refused already; wait for a new revision (or the retry time)
    below = _below_floor(rec, t, ev)
    if below is not None:
        return Step(_with(rec, now, state="failed", target=t, from_version=ev.live_version,
                          candidate=None, artifact=None, bytes_downloaded=None,
                          reason=OtaReason.DOWNGRADE, detail=f"desired version {t.version} "
                          f"is below {below}; refused", retry_at=None), ("report",))
    until = _held(rec, t, now, hold_s)
    if until is not None:
        # A new revision of a version refused for its own fault: not live again before
        # the hold is over (review, December 2026: a server looped a bad model through
        # download and a live trial once per revision). Retried then, as a transient is.
        return Step(_with(rec, now, state="failed", target=t, candidate=None, artifact=None,
                          bytes_downloaded=None, reason=OtaReason.PREVIOUSLY_REJECTED,
                          detail=f"{t.model} v{t.version} was refused here lately; not "
                          "tried again before rejected_hold_s is over", retry_at=until),
                    ("report",))
    return _start(rec, ev, now)


def _interrupted(rec: OtaRecord, now: float) -> Step:
    """Killed (or stopped too often): the committed (old) model is what the restarted
    agent loaded: make it official. A model that kills the process cannot do it twice."""
    return Step(_with(rec, now, state="rolled_back", reason=OtaReason.INTERRUPTED_TRIAL,
                      detail="the agent restarted during the trial; the previous model is "
                      "live again", retry_at=None), ("discard", "report"))


def _new_boot(rec: OtaRecord, ev: Resume) -> bool:
    """Whether the trial began in another boot than this start (both known)."""
    return rec.trial_boot_id is not None and ev.boot_id is not None and \
        ev.boot_id != rec.trial_boot_id


def on_resume(rec: OtaRecord, ev: Resume, now: float) -> Step:
    if rec.state not in IN_PROGRESS:
        return Step(rec)
    if rec.state == "trial" and rec.trial_stopped and rec.resumes < ev.max_resumes:
        # Stopped cleanly (an upgrade, a reboot), not killed: nothing was wrong with the
        # candidate, so it is smoke-tested and tried again rather than counted as a failure
        # (review, December 2026: a reboot during a trial could halt a rollout).
        return Step(_with(rec, now, state="staged", trial_stopped=False,
                          resumes=rec.resumes + 1,
                          detail="the agent was stopped during the trial; trying again"),
                    ("report", "proceed"))
    if rec.state == "trial" and _new_boot(rec, ev):
        if rec.trial_reboots < MAX_TRIAL_REBOOTS:
            if rec.resumes >= ev.max_resumes:
                return _interrupted(rec, now)
            # The whole device restarted (power lost, a reset), not just the agent: most
            # likely the candidate killed nothing. On a fleet on flaky power a cut during
            # the trial must not count against the release (review, December 2026).
            return Step(_with(rec, now, state="staged", resumes=rec.resumes + 1,
                              trial_reboots=rec.trial_reboots + 1,
                              detail="the device restarted during the trial (a new boot: "
                              "power lost or a reset); trying again"), ("report", "proceed"))
        # Again: a candidate can reset a device too (a starved hardware watchdog, a panic
        # on OOM). One more try only, then held like a model at fault, as a boot counter
        # gives an A/B image a bounded number of tries.
        return Step(_with(_remember_rejected(rec, now), now, state="rolled_back",
                          reason=OtaReason.INTERRUPTED_TRIAL,
                          detail="the device restarted (a new boot) during the candidate's "
                          "trial again; the previous model is live again and this version "
                          "is held", retry_at=None), ("discard", "report"))
    if rec.state == "trial":
        return _interrupted(rec, now)
    resumes = rec.resumes + 1
    if resumes > ev.max_resumes:
        return Step(_with(rec, now, state="failed", resumes=resumes, reason=OtaReason.CRASH_LOOP,
                          detail=f"the agent restarted {resumes} times during this update "
                          f"(last in {rec.state}); given up", retry_at=None),
                    ("discard", "report"))
    if rec.state in ("downloading", "verifying"):
        # Downloads resume from their .part files; a finished one is reused as is.
        return Step(_with(rec, now, state="downloading", resumes=resumes), ("report", "fetch"))
    # staged / smoke_testing: the candidate file is installed; it is hash-checked on load.
    return Step(_with(rec, now, state="staged", resumes=resumes), ("report", "proceed"))


def transition(rec: OtaRecord, ev: Event, now: float | None = None,
               retry_after_s: float = 300.0, rejected_hold_s: float = 0.0) -> Step:
    """The next record and the actions to run, for ``ev`` arriving in ``rec.state``."""
    now = time.time() if now is None else now
    if isinstance(ev, Desired):
        return on_desired(rec, ev, now, rejected_hold_s)
    if isinstance(ev, Resume):
        return on_resume(rec, ev, now)
    if isinstance(ev, Failed):
        if rec.state not in IN_PROGRESS:
            raise IllegalTransition(f"failure {ev.reason!r} reported in state {rec.state}")
        return _fail(rec, ev.reason, ev.detail, now, retry_after_s)
    expected: dict[type, tuple[OtaState, ...]] = {
        Downloaded: ("downloading",), DeltaUnusable: ("downloading", "verifying"),
        Verified: ("verifying",), Proceed: ("staged",), SmokePassed: ("smoke_testing",),
        TrialVerdict: ("trial",), TrialStopped: ("trial",)}
    if rec.state not in expected[type(ev)]:
        raise IllegalTransition(f"{type(ev).__name__} cannot happen in state {rec.state}")
    if isinstance(ev, Downloaded):
        return Step(_with(rec, now, state="verifying", artifact=ev.artifact,
                          bytes_downloaded=ev.length, reason=None, detail=ev.detail),
                    ("report", "verify"))
    if isinstance(ev, DeltaUnusable):
        if rec.delta_failed:
            raise IllegalTransition("the delta was already refused once in this update")
        return Step(_with(rec, now, state="downloading", artifact="full", delta_failed=True,
                          reason=ev.reason,
                          detail=f"delta refused, using the full bundle: {ev.detail}"),
                    ("report", "fetch"))
    if isinstance(ev, Verified):
        return Step(_with(rec, now, state="staged", candidate=ev.candidate, reason=None,
                          detail=None), ("report", "proceed"))
    if isinstance(ev, Proceed):
        return Step(_with(rec, now, state="smoke_testing"), ("report", "smoke_test"))
    if isinstance(ev, SmokePassed):
        return Step(_with(rec, now, state="trial", trial_boot_id=ev.boot_id),
                    ("report", "trial"))
    if isinstance(ev, TrialStopped):
        return Step(_with(rec, now, trial_stopped=True))  # nothing to do until the restart
    assert isinstance(ev, TrialVerdict)
    if not ev.healthy:
        return _fail(rec, ev.reason or OtaReason.UNHEALTHY, ev.detail, now, retry_after_s)
    # The one place the committed bundle changes.
    return Step(_with(rec, now, state="committed", previous=rec.committed,
                      committed=rec.candidate, candidate=None, reason=None, detail=ev.detail,
                      retry_at=None, resumes=0, floor=None), ("commit", "report"))


def live_ref(rec: OtaRecord) -> InstalledRef | None:
    """The bundle a (re)starting agent must load: always the committed one."""
    return rec.committed


def report_fields(rec: OtaRecord, slot: str, note: str | None = None) -> dict[str, Any]:
    """The fields of the ``OtaEvent`` reporting ``rec`` (the daemon adds seq and device)."""
    detail = rec.detail if note is None else (f"{rec.detail} ({note})" if rec.detail else note)
    return {"slot": slot, "state": rec.state, "from_version": rec.from_version,
            "to_version": rec.target.version if rec.target else None,
            "rollout_id": rec.target.rollout_id if rec.target else None,
            "artifact": rec.artifact, "bytes_downloaded": rec.bytes_downloaded,
            "reason": rec.reason, "detail": detail}
