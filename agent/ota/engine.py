"""The OTA engine: the thin I/O shell around :mod:`agent.ota.state`.

One worker thread per slot. A desired-state message (or the periodic check)
becomes a :class:`~agent.ota.state.Desired` event; every event goes through the
pure :func:`~agent.ota.state.transition`, the new record is persisted (write,
fsync, rename) *before* its actions run, and each action's outcome is the next
event. Every state change is reported (the daemon puts it in its durable outbox).

Hot-swap (smoke test, trial, commit, rollback: the model slot's side of the actions)
is the engine's base class :class:`~agent.ota.hot_swap.HotSwap`.

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
from agent.model_slot import ModelSlot
from agent.ota.boot import bundle_loads, choose_boot_bundle, read_boot_id
from agent.ota.config import OtaConfig
from agent.ota.errors import UpdateRefused
from agent.ota.fetch import Fetcher
from agent.ota.hot_swap import HotSwap
from agent.ota.inbox import DesiredInbox
from agent.ota.record import InstalledRef, OtaRecord
from agent.ota.state import (
    IN_PROGRESS,
    Action,
    Desired,
    Event,
    Failed,
    Proceed,
    Resume,
    report_fields,
    transition,
)
from agent.ota.store import OtaStore
from agent.ota.transport import ArtifactTransport
from agent.ota.trial import MemoryBudget, ObservedModel, ServingModel
from contract.reasons import OtaReason

log = logging.getLogger("nanofleet.agent.ota")
Report = Callable[[dict[str, Any]], None]
RESUME_RETRY_MAX_S = 30.0  # a full disk at start: how often the interrupted update retries


class OtaEngine(HotSwap):
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

    # --- queries -----------------------------------------------------------------------
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
