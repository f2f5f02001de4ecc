"""The OTA engine: the thin I/O shell around :mod:`agent.ota.state`.

One worker thread per slot. A desired-state message (or the periodic check)
becomes a :class:`~agent.ota.state.Desired` event; every event goes through the
pure :func:`~agent.ota.state.transition`, the new record is persisted (write,
fsync, rename) *before* its actions run, and each action's outcome is the next
event. Every state change is reported (the daemon puts it in its durable outbox).

Hot-swap: the candidate is loaded and smoke-tested next to the live model, then
swapped into the :class:`~agent.pipeline.ModelSlot` wrapped in an
:class:`~agent.ota.trial.ObservedModel`. A batch takes the model once, so batches
in flight finish on the old model; the old model stays loaded through the trial
and comes back in one swap if health says so.

Crash tests (kill -9 right after each state is persisted) start the agent through
``hil/ota_crash.py``, which wraps the record store from outside: nothing here can be
made to crash on purpose.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paho.mqtt.client import MQTTMessage

from agent.metrics import Counters
from agent.model import LoadedModel
from agent.ota.boot import bundle_loads, choose_boot_bundle, factory_examples, read_boot_id
from agent.ota.candidate import load_candidate
from agent.ota.config import OtaConfig
from agent.ota.errors import UpdateRefused
from agent.ota.fetch import Fetcher, LiveBundle
from agent.ota.inbox import DesiredInbox
from agent.ota.record import InstalledRef, OtaRecord, UpdateTarget
from agent.ota.state import (
    IN_PROGRESS,
    Action,
    Desired,
    Event,
    Failed,
    Proceed,
    Resume,
    SmokePassed,
    TrialStopped,
    TrialVerdict,
    report_fields,
    transition,
)
from agent.ota.store import OtaStore
from agent.ota.transport import ArtifactTransport
from agent.ota.trial import (
    MemoryBudget,
    ObservedModel,
    ServingModel,
    release_model,
    watch_trial,
)
from agent.pipeline import ModelSlot
from agent.runtime.registry import runtime_format
from contract.reasons import OtaReason, is_transient

log = logging.getLogger("nanofleet.agent.ota")
Report = Callable[[dict[str, Any]], None]
RESUME_RETRY_MAX_S = 30.0  # a full disk at start: how often the interrupted update retries


class OtaEngine:
    def __init__(self, cfg: OtaConfig, state_dir: Path, slot: str, *, runtime: str,
                 threads: int, initial_bundle: Path, report: Report,
                 batch_size: int = 32, counters: Counters | None = None) -> None:
        self.cfg = cfg
        self.slot_name = slot
        self.runtime = runtime
        self.threads = threads
        self.initial_bundle = Path(initial_bundle)
        self.batch_size = batch_size
        self.counters = counters or Counters()
        self.store = OtaStore(state_dir, slot)
        self.fetcher = Fetcher(cfg, self.store, self.counters)
        self.record = self.store.load()
        self._boot_id = read_boot_id(cfg.boot_id_file)
        self._report = report
        self._started = False
        self._pending_reports: list[dict[str, Any]] = []
        self._pending_action: Action | None = None  # resumed at start(), on the worker
        self._resume_waits = False  # recover() could not save its Resume (a full disk)
        self._slot: ModelSlot | None = None
        self._live_model: ServingModel | None = None
        self._live_path = self.initial_bundle
        self._candidate: LoadedModel | None = None
        self._observed: ObservedModel | None = None
        self._trial_started = 0.0
        self._memory: MemoryBudget | None = None  # what the candidate may take
        self._examples: list[tuple[str, str]] | None = None
        self.inbox = DesiredInbox(slot, self.counters)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ota", daemon=True)

    # --- start-up ----------------------------------------------------------------------
    def recover(self) -> Path:
        """Finish or undo what a crash interrupted; return the bundle to load.

        Always the committed bundle (or the configured one before any commit): a trial
        interrupted by the agent's death is rolled back, one cut by a clean stop or once by
        a restart of the whole device (a new boot id) is tried again; earlier steps resume
        once started."""
        try:
            self._apply(Resume(self.cfg.max_resumes, self._boot_id))
        except OSError as exc:
            # A full disk must not stop the agent from starting: the committed model runs
            # and the interrupted update waits on the worker until its record can be saved
            # (run without saving, a resumed update that kills the agent would never count
            # towards max_resumes).
            self._resume_waits = True
            self.counters.inc("ota_errors")
            log.error("OTA record of slot %s cannot be saved at start (%s): the update in "
                      "state %s waits; the committed model runs", self.slot_name, exc,
                      self.record.state)
        choice = choose_boot_bundle(self.record, self.store.verified_path, self._loads)
        if choice.record is not None:
            try:
                self._save(choice.record)
            except OSError as exc:  # the next start makes the same choice
                self.counters.inc("ota_errors")
                log.error("cannot save the fallback from a damaged bundle (%s)", exc)
                self.record = choice.record
        self._live_path = choice.path or self.initial_bundle
        return self._live_path

    def _resume_when_saved(self) -> None:
        """Resume the update ``recover`` could not: when the disk has room again."""
        delay = 1.0
        while not self._stop.is_set():
            try:
                event = self._apply(Resume(self.cfg.max_resumes, self._boot_id))
            except OSError as exc:
                log.warning("OTA record still cannot be saved (%s); next try in %.1f s",
                            exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RESUME_RETRY_MAX_S)
                continue
            self._resume_waits = False
            self._drive(event)
            return

    def _factory_examples(self) -> list[tuple[str, str]]:
        """The configured bundle's example lines, read once, when a trial first needs them."""
        if self._examples is None:
            self._examples = factory_examples(self.initial_bundle)
        return self._examples

    def _loads(self, path: Path, ref: InstalledRef) -> bool:
        return bundle_loads(path, ref, self.runtime, self.threads)

    def use_transport(self, transport: ArtifactTransport) -> None:
        """Fetch metadata and artifacts with ``transport`` (transport = "mqtt": the
        daemon's broker link, which exists only after :meth:`recover`)."""
        self.fetcher.use_transport(transport)

    def attach(self, slot: ModelSlot) -> None:
        """The slot the daemon built from :meth:`recover`'s bundle."""
        self._slot = slot
        self._live_model = slot.current()  # type: ignore[assignment]

    def start(self) -> None:
        if self._slot is None:
            raise RuntimeError("attach() the model slot before start()")
        self._started = True
        if self._pending_reports:
            for fields in self._pending_reports:
                self._report(fields)
            self._pending_reports.clear()
        elif self.record.state != "idle":
            self._emit(self.record, "after restart")  # in case the last report was lost
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.inbox.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.fetcher.close()  # e.g. the MQTT artifact transport's broker connection

    # --- desired state (paho's network thread) ---------------------------------------------
    def on_desired(self, msg: MQTTMessage) -> None:
        self.submit_desired(bytes(msg.payload))

    def submit_desired(self, payload: bytes) -> None:
        live = self._live_model
        self.inbox.submit(payload, live.manifest.slot if live is not None else None)

    # --- worker ----------------------------------------------------------------------------
    def _run(self) -> None:
        if self._resume_waits:
            self._resume_when_saved()
        if self._pending_action is not None:  # an update interrupted by a restart resumes
            action, self._pending_action = self._pending_action, None
            self._drive(self._execute_safely(action))
        handled = 0
        while not self._stop.is_set():
            news = self.inbox.take(handled, self.cfg.check_interval_s, self._stop)
            if news is None:
                continue
            handled, latest = news
            if latest is None or latest[1] == "rollback":
                continue  # a rollback only means something during a trial
            live = self._live_bundle()
            self._drive(Desired(latest[0], live.model, live.version))

    def _drive(self, event: Event | None) -> None:
        try:
            while event is not None and not self._stop.is_set():
                event = self._apply(event)
        except Exception as exc:  # e.g. the disk is full: the record was not advanced
            self.counters.inc("ota_errors")
            log.exception("OTA step failed in state %s", self.record.state)
            if self.record.state in IN_PROGRESS:  # leave the update rather than hang in it
                try:
                    self._apply(Failed(OtaReason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"))
                except Exception:
                    log.exception("cannot leave state %s; a restart resumes it",
                                  self.record.state)
                    if self.record.state == "trial":
                        self._rollback_unsaved()

    def _rollback_unsaved(self) -> None:
        """The trial's end could not be saved (a full disk): the candidate must not go on
        serving until a restart, whatever its verdict was (review, December 2026: a NaN
        model served on). The record on disk still says trial, which a restart rolls back
        as well, so disk and memory end up the same."""
        try:
            self._rollback_now()
        except Exception:
            log.exception("rolling the candidate back after an unsaved verdict failed")

    def _apply(self, event: Event) -> Event | None:
        step = transition(self.record, event, time.time(), self.cfg.retry_after_s,
                          self.cfg.rejected_hold_s)
        if step.record != self.record:
            self._save(step.record)
        next_event: Event | None = None
        for action in step.actions:
            if not self._started and action in ("fetch", "proceed"):
                self._pending_action = action  # network and models wait for start()
                continue
            result = self._execute_safely(action)
            if result is not None:
                next_event = result
        return next_event

    def _execute_safely(self, action: Action) -> Event | None:
        try:
            return self._execute(action)
        except Exception as exc:
            log.exception("OTA action %s failed", action)
            if self.record.state not in IN_PROGRESS:
                return None
            return Failed(OtaReason.INTERNAL_ERROR, f"{action}: {type(exc).__name__}: {exc}")

    def _save(self, record: OtaRecord) -> None:
        noteworthy = (record.state, record.reason, record.detail) != (
            self.record.state, self.record.reason, self.record.detail)
        self.store.save(record)
        self.record = record
        if noteworthy:
            log.info("OTA %s: %s%s", self.slot_name, record.state,
                     f" ({record.reason or 'ok'}: {record.detail})" if record.detail else "")

    def _execute(self, action: Action) -> Event | None:
        rec = self.record
        if action == "report":
            if rec.state in ("committed", "failed", "rolled_back"):
                self.counters.inc(f"ota_{rec.state}")
            self._emit(rec)
            return None
        if action == "proceed":
            return Proceed()
        if action == "discard":
            self._discard()
            return None
        target = rec.target
        assert target is not None
        if action == "fetch":
            return self.fetcher.fetch(target, self._live_bundle(), rec.delta_failed)
        if action == "verify":
            return self.fetcher.verify(target, self._live_bundle())
        if action == "smoke_test":
            return self._smoke_test(target)
        if action == "trial":
            return self._trial()
        if action == "commit":
            self._commit()
        elif action == "rollback":
            self._rollback_now()
        return None

    # --- reporting ------------------------------------------------------------------------
    def _emit(self, rec: OtaRecord, note: str | None = None) -> None:
        fields = report_fields(rec, self.slot_name, note)
        if not self._started:
            self._pending_reports.append(fields)
            return
        try:
            self._report(fields)
        except Exception:
            log.exception("could not report OTA state %s", rec.state)

    # --- the live model ----------------------------------------------------------------
    def _live_bundle(self) -> LiveBundle:
        model = self._live_model
        if model is None:
            raise RuntimeError("no live model attached")
        m = model.manifest
        # The format the live model actually runs (after any runtime fallback): the update
        # downloads only that runtime's variant when the release has one.
        return LiveBundle(m.name, m.version, model.bundle_sha256, m.slot, self._live_path,
                          runtime_format(model.runtime_name), self.record.floor)

    # --- smoke test, trial, commit, rollback ----------------------------------------------
    def _smoke_test(self, target: UpdateTarget) -> Event:
        ref, live = self.record.candidate, self._live_model
        if ref is None or live is None:
            return Failed(OtaReason.INTERNAL_ERROR, "smoke test without a candidate or live model")
        loaded = load_candidate(self.store.path_of(ref), ref, target, live, self.runtime,
                                self.threads, self.cfg.trial, self.batch_size)
        if isinstance(loaded, Failed):
            return loaded
        self._candidate, self._memory = loaded.model, loaded.memory
        return SmokePassed(self._boot_id)

    def _trial(self) -> Event | None:
        candidate, old, slot = self._candidate, self._live_model, self._slot
        if candidate is None or old is None or slot is None:
            return Failed(OtaReason.INTERNAL_ERROR, "trial without a smoke-tested candidate")
        tcfg = self.cfg.trial
        observed = ObservedModel(candidate, old, tcfg.sample_lines, tcfg.prob_sum_tolerance)
        self.inbox.arm_rollback()
        self._observed = observed
        self._trial_started = time.monotonic()
        slot.swap(observed)  # batches in flight finish on the old model
        # One runtime thread computes on the caller's thread: its CPU time is the model's
        # cost, whatever else the device is doing; with a thread pool, wall-clock time.
        clock = time.thread_time if self.threads == 1 else time.perf_counter
        verdict = watch_trial(observed, old, tcfg, self._trial_started, self._stop,
                              self.inbox.rollback, self.batch_size, clock,
                              examples=self._factory_examples,
                              memory=self._memory)
        if verdict is None:
            # Stopping cleanly: no verdict. Marked so that the next start tries again; a
            # process killed during the trial leaves no mark and is rolled back then.
            self._apply(TrialStopped())
            return None
        if verdict.reason == OtaReason.OPERATOR_ROLLBACK:
            return TrialVerdict(False, verdict.reason,
                                f"{verdict.detail} (rollout {self.inbox.rollback_rollout})")
        return TrialVerdict(verdict.healthy, verdict.reason, verdict.detail)

    def _commit(self) -> None:
        candidate, old, slot = self._candidate, self._live_model, self._slot
        assert candidate is not None and slot is not None
        slot.swap(candidate)  # the same model without the observer
        self._live_model, self._candidate, self._observed = candidate, None, None
        ref = self.record.committed
        assert ref is not None
        self._live_path = self.store.path_of(ref)
        if old is not None and old is not candidate:
            release_model(old)
        self.store.keep_only([self.record.committed, self.record.previous])
        self.store.clear_downloads()

    def _rollback_now(self) -> None:
        observed, candidate = self._observed, self._candidate
        if observed is not None and self._slot is not None and self._live_model is not None:
            self._slot.swap(self._live_model)
            observed.retire()  # stragglers holding the wrapper are served by the old model
        if candidate is not None:
            release_model(candidate)
        self._candidate = self._observed = None
        self._discard()

    def _discard(self) -> None:
        rec = self.record
        if self._candidate is not None:
            release_model(self._candidate)
            self._candidate = None
        if rec.candidate is not None and rec.candidate not in (rec.committed, rec.previous):
            self.store.remove_bundle(rec.candidate)
        self.fetcher.forget()
        self.store.clear_downloads(keep_partial=is_transient(rec.reason))

    # --- queries -----------------------------------------------------------------------
    def is_on_trial(self, model: object) -> bool:
        """Whether ``model`` (what the slot serves) is the candidate on trial, i.e. live
        but not committed. Identity, not the record's state: the record says ``trial``
        a moment before the swap and ``committed`` a moment after it."""
        observed = self._observed
        return observed is not None and model is observed

    def describe(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.record.model_dump(mode="json")
        try:
            live = self._live_bundle()
            doc["live"] = {"model": live.model, "version": live.version, "sha256": live.sha256,
                           "path": str(live.path)}
        except RuntimeError:
            doc["live"] = None
        observed = self._observed
        if self.record.state == "trial" and observed is not None:
            stats = observed.stats()
            doc["trial"] = {"elapsed_s": round(time.monotonic() - self._trial_started, 3),
                            "lines": stats.lines, "error_lines": stats.error_lines,
                            "nonfinite_rows": stats.nonfinite_rows, "labels": stats.labels,
                            "latency_p99_ms": round(stats.latency_p99_ms, 3)}
        doc["metadata_url"] = self.cfg.metadata_url
        return doc


__all__ = ["OtaEngine", "UpdateRefused"]
