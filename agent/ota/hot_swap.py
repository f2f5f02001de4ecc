"""The OTA engine's hot swap: the model side of :class:`~agent.ota.engine.OtaEngine`.

The candidate is loaded and smoke-tested next to the live model, then swapped into the
:class:`~agent.model_slot.ModelSlot` wrapped in an :class:`~agent.ota.trial.ObservedModel`.
A batch takes the model once, so batches in flight finish on the old model; the old
model stays loaded through the trial and comes back in one swap if health says so.

This is I/O-shell code like the rest of the engine (it loads models, swaps the slot,
removes files): the decisions stay in :mod:`agent.ota.state`. It is a base class of the
engine rather than an object of its own so that the engine's actions call these methods
unchanged; the attributes below are the engine's, set in its ``__init__``.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from agent.model import LoadedModel
from agent.model_slot import ModelSlot
from agent.ota.boot import factory_examples
from agent.ota.candidate import load_candidate
from agent.ota.config import OtaConfig
from agent.ota.fetch import Fetcher, LiveBundle
from agent.ota.inbox import DesiredInbox
from agent.ota.record import OtaRecord, UpdateTarget
from agent.ota.state import Event, Failed, SmokePassed, TrialStopped, TrialVerdict
from agent.ota.store import OtaStore
from agent.ota.trial import (
    MemoryBudget,
    ObservedModel,
    ServingModel,
    release_model,
    watch_trial,
)
from agent.runtime.registry import runtime_format
from contract.reasons import OtaReason, is_transient

log = logging.getLogger("nanofleet.agent.ota")


class HotSwap:
    """Which model serves, and the candidate's way in (smoke test, trial) and out
    (commit, rollback, discard)."""

    cfg: OtaConfig
    runtime: str
    threads: int
    initial_bundle: Path
    batch_size: int
    store: OtaStore
    fetcher: Fetcher
    inbox: DesiredInbox
    record: OtaRecord
    _boot_id: str | None
    _stop: threading.Event
    _slot: ModelSlot | None
    _live_model: ServingModel | None
    _live_path: Path
    _candidate: LoadedModel | None
    _observed: ObservedModel | None
    _trial_started: float
    _memory: MemoryBudget | None
    _examples: list[tuple[str, str]] | None

    if TYPE_CHECKING:  # the engine's: persist the record, then run its actions
        def _apply(self, event: Event) -> Event | None: ...

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

    def _factory_examples(self) -> list[tuple[str, str]]:
        """The configured bundle's example lines, read once, when a trial first needs them."""
        if self._examples is None:
            self._examples = factory_examples(self.initial_bundle)
        return self._examples

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

    def _rollback_unsaved(self) -> None:
        """The trial's end could not be saved (a full disk): the candidate must not go on
        serving until a restart, whatever its verdict was (review, December 2026: a NaN
        model served on). The record on disk still says trial, which a restart rolls back
        as well, so disk and memory end up the same."""
        try:
            self._rollback_now()
        except Exception:
            log.exception("rolling the candidate back after an unsaved verdict failed")

    # --- queries -----------------------------------------------------------------------
    def is_on_trial(self, model: object) -> bool:
        """Whether ``model`` (what the slot serves) is the candidate on trial, i.e. live
        but not committed. Identity, not the record's state: the record says ``trial``
        a moment before the swap and ``committed`` a moment after it."""
        observed = self._observed
        return observed is not None and model is observed
