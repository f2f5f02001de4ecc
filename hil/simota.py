"""The update side of a simulated device: the agent's own OTA state machine and, when
asked, the agent's own fetch-and-verify code.

Each simulated device keeps an :class:`~agent.ota.state.OtaRecord` and moves it only
with :func:`agent.ota.state.transition`; its reports are
:func:`agent.ota.state.report_fields` of that record, exactly what a real agent
publishes. What differs is how the actions are carried out:

- **plain** (no :class:`VerifyKit`): fetch, verify, smoke test and trial are timers
  (:class:`Behaviour`), for rollout-logic tests where bytes do not matter;
- **verifying** (a :class:`VerifyKit`): ``fetch`` and ``verify`` run the agent's
  :class:`~agent.ota.fetch.Fetcher` — TUF refresh from the provisioned root (every
  role re-verified), release checks, delta first, download bounded by the signed
  length, ``apply_delta``, and the rebuilt bundle's sha256 against the signed full
  target. The smoke test reads the candidate with ``load_bundle`` (its hash first, then
  the manifest and every file's hash) and checks name, version and slot as the engine
  does; no runtime is loaded and the trial is a timer.

The devices of one process share one :class:`SharedOtaStore`: one TUF metadata
directory, one download cache and one models directory. Every device still refreshes
and verifies on its own; a cached artifact is only reused after the device's own
``download_target`` has checked it against the signed length and hashes. All of it
runs on one worker thread per process (the shared files are then never raced), and
its results come back to the fleet's loop thread through :class:`OtaHost.post`.
"""

from __future__ import annotations

import queue
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agent.ota.config import OtaConfig
from agent.ota.fetch import Fetcher, LiveBundle
from agent.ota.record import InstalledRef, OtaRecord, UpdateTarget
from agent.ota.state import (
    IN_PROGRESS,
    Action,
    DeltaUnusable,
    Desired,
    Downloaded,
    Event,
    Failed,
    Proceed,
    SmokePassed,
    TrialVerdict,
    Verified,
    report_fields,
    transition,
)
from agent.ota.store import OtaStore, bundle_file_name
from agent.ota.transport import ArtifactTransport, HttpTransport
from contract.bundle import BundleError, load_bundle
from contract.messages import DesiredState, OtaState
from contract.reasons import OtaReason

# The state each action is run on entering (where Behaviour.fail_at / hang_in act).
ACTION_STATE: dict[Action, OtaState] = {
    "fetch": "downloading", "verify": "verifying", "proceed": "staged",
    "smoke_test": "smoke_testing", "trial": "trial"}
NO_SHA = "0" * 64


@dataclass
class Behaviour:
    """How a simulated device reacts to an update."""

    step_s: float = 0.02  # before a simulated step's outcome (real steps take their own time)
    trial_s: float = 0.1  # time in trial before the verdict
    fail_at: OtaState | None = None  # trial: rolled_back; earlier states: failed
    fail_reason: OtaReason = OtaReason.HEALTH_COLLAPSE
    transient_failures: int = 0  # fail downloading with "unavailable" this many times first
    hang_in: OtaState | None = None  # stop reporting progress in this state


@dataclass
class DeviceOta:
    """One device's update state: the persisted record of a real agent, plus what its
    engine keeps in memory (the newest desired state, the pending fetch)."""

    device_id: str
    slot: str
    base: InstalledRef  # what the device was provisioned with (live before any commit)
    behaviour: Behaviour = field(default_factory=Behaviour)
    record: OtaRecord = field(init=False)
    latest: tuple[UpdateTarget, str] | None = None  # (target, action) of the newest desired
    pending: bool = False  # a desired state came during an update: look again at its end
    epoch: int = 0  # bumped on every transition: a completion for an older one is dropped
    fetcher: Fetcher | None = None
    verified: int = 0  # bundles this device proved equal to the signed full target
    history: list[tuple[str, int | None, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.record = OtaRecord(slot=self.slot)

    @property
    def live(self) -> InstalledRef:
        return self.record.committed or self.base


class OtaHost(Protocol):
    """What the driver needs from the fleet's loop (all called on the loop thread,
    except :meth:`post`)."""

    def publish_ota(self, ota: DeviceOta, fields: dict[str, Any]) -> None: ...
    def after(self, delay: float, fn: Callable[[], None]) -> None: ...
    def post(self, fn: Callable[[], None]) -> None: ...


class SharedOtaStore(OtaStore):
    """The OTA store of one simulator process, shared by its devices.

    Installed bundles have content-addressed names (model, version, sha256), so one
    models directory serves every device; the download area is the process's
    artifact cache and is never cleared."""

    def clear_downloads(self, keep_partial: bool = False) -> None:
        """Keep the cache: each device checks a cached file against the signed length
        and hashes (``TufClient.download_target``) before it uses it."""

    def install(self, source: Path, model: str, version: int, sha256: str) -> InstalledRef:
        if source.parent == self.downloads and not source.name.startswith("."):
            # A cached full download: install a copy, the cache keeps the original.
            copy = source.with_name(f".install-{uuid.uuid4().hex}")
            shutil.copyfile(source, copy)
            source = copy
        return super().install(source, model, version, sha256)


class CountingTransport(ArtifactTransport):
    """HTTP, counting requests and bytes (how much the shared cache saved)."""

    def __init__(self, inner: ArtifactTransport) -> None:
        self.inner = inner
        self.requests = 0
        self.bytes = 0

    def fetch(self, url: str, start: int = 0, max_length: int | None = None) -> Iterator[bytes]:
        self.requests += 1
        for chunk in self.inner.fetch(url, start, max_length):
            self.bytes += len(chunk)
            yield chunk


@dataclass(frozen=True)
class VerifyKit:
    """What a process needs to run the real verification path for its devices."""

    cfg: OtaConfig
    store: SharedOtaStore
    base: InstalledRef
    slot: str  # the base bundle manifest's slot

    @classmethod
    def create(cls, state_dir: Path, repo_url: str, root_file: Path,
               base_bundle: Path) -> VerifyKit:
        """``repo_url``: the repository base (``…/repo``, holding metadata/ and targets/);
        ``root_file``: the provisioned root; ``base_bundle``: the bundle devices run."""
        bundle = load_bundle(base_bundle)
        m = bundle.manifest
        store = SharedOtaStore(state_dir, m.slot)
        name = bundle_file_name(m.name, m.version, bundle.sha256)
        shutil.copyfile(base_bundle, store.models / name)
        base = repo_url.rstrip("/")
        cfg = OtaConfig(metadata_url=f"{base}/metadata/", target_base_url=f"{base}/targets/",
                        root_file=root_file, min_free_bytes=0)
        return cls(cfg, store, InstalledRef(model=m.name, version=m.version,
                                            sha256=bundle.sha256, file=name), m.slot)


@dataclass
class SimCounters:
    """What the verification path did in one process (read by benchmarks and tests)."""

    refreshes: int = 0  # TUF refreshes (one per fetch)
    downloads: dict[str, int] = field(default_factory=lambda: {"delta": 0, "full": 0})
    verified: dict[str, int] = field(default_factory=lambda: {"delta": 0, "full": 0})
    smoke_checked: int = 0
    refusals: dict[str, int] = field(default_factory=dict)  # reason -> count
    work_s: float = 0.0  # worker busy time
    work_max_s: float = 0.0

    def refused(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1


class OtaDriver:
    """Runs every device's OTA record through the agent's state machine."""

    def __init__(self, host: OtaHost, kit: VerifyKit | None = None,
                 retry_after_s: float = 300.0) -> None:
        self.host = host
        self.kit = kit
        self.retry_after_s = retry_after_s
        self.counters = SimCounters()
        self.transport = CountingTransport(HttpTransport(timeout=30.0))
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        if kit is not None:
            self._worker = threading.Thread(target=self._work, name="sim-verify", daemon=True)
            self._worker.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(timeout=30)

    # --- desired state (loop thread) -----------------------------------------------------
    def on_desired(self, ota: DeviceOta, doc: DesiredState) -> None:
        entry = doc.slots.get(ota.slot)
        if entry is None:
            return
        if ota.latest is not None and doc.revision < ota.latest[0].revision:
            return  # as the engine: an older revision than one seen is ignored
        target = UpdateTarget(model=entry.model, version=entry.version, revision=doc.revision,
                              rollout_id=doc.rollout_id, metadata_url=doc.metadata_url,
                              target_base_url=doc.target_base_url)
        ota.latest = (target, doc.action)
        if doc.action == "rollback":
            if ota.record.state == "trial":
                self._apply(ota, TrialVerdict(False, OtaReason.OPERATOR_ROLLBACK,
                                              f"rollback asked for (rollout {doc.rollout_id})"))
            return  # before the trial: the trial action sees it and rolls back at once
        if ota.record.state in IN_PROGRESS:
            ota.pending = True  # one update at a time
            return
        self.consider(ota)

    def consider(self, ota: DeviceOta) -> None:
        if ota.latest is None or ota.latest[1] == "rollback" or ota.record.state in IN_PROGRESS:
            return
        live = ota.live
        self._apply(ota, Desired(ota.latest[0], live.model, live.version))

    # --- the state machine (loop thread) ----------------------------------------------------
    def _apply(self, ota: DeviceOta, event: Event) -> None:
        step = transition(ota.record, event, time.time(), self.retry_after_s)
        if step.record == ota.record:
            return
        ota.record = step.record
        ota.epoch += 1
        for action in step.actions:
            self._run(ota, action)

    def _complete(self, ota: DeviceOta, epoch: int, event: Event) -> None:
        if ota.epoch == epoch:  # else something else (an operator rollback) moved it on
            self._apply(ota, event)

    def _later(self, ota: DeviceOta, delay: float, event: Event) -> None:
        epoch = ota.epoch
        self.host.after(delay, lambda: self._complete(ota, epoch, event))

    def _run(self, ota: DeviceOta, action: Action) -> None:
        b = ota.behaviour
        if action == "report":
            self._report(ota)
            return
        if action in ("commit", "rollback", "discard"):
            ota.fetcher = None  # the files stay: they are shared (see SharedOtaStore)
            return
        state = ACTION_STATE[action]
        if b.hang_in == state:
            return
        if action == "trial":
            if ota.latest is not None and ota.latest[1] == "rollback":
                rollout = ota.latest[0].rollout_id
                self._later(ota, 0.0, TrialVerdict(False, OtaReason.OPERATOR_ROLLBACK,
                                                   f"rollback asked for (rollout {rollout})"))
            elif b.fail_at == "trial":
                self._later(ota, b.trial_s, TrialVerdict(False, b.fail_reason,
                                                         f"simulated {b.fail_reason}"))
            else:
                self._later(ota, b.trial_s, TrialVerdict(True, None, "simulated trial passed"))
            return
        if action == "fetch" and b.transient_failures > 0:
            b.transient_failures -= 1
            self._later(ota, b.step_s, Failed(OtaReason.UNAVAILABLE, "simulated download error"))
        elif b.fail_at == state:
            self._later(ota, b.step_s, Failed(b.fail_reason, f"simulated {b.fail_reason}"))
        elif self.kit is None or action == "proceed":
            self._later(ota, b.step_s, self._simulated(ota, action))
        else:
            self._submit(ota, action)

    def _simulated(self, ota: DeviceOta, action: Action) -> Event:
        target = ota.record.target
        assert target is not None
        if action == "fetch":
            return Downloaded("delta", 3000)
        if action == "verify":
            return Verified(InstalledRef(model=target.model, version=target.version,
                                         sha256=NO_SHA, file="simulated"))
        return Proceed() if action == "proceed" else SmokePassed()

    def _report(self, ota: DeviceOta) -> None:
        rec = ota.record
        ota.history.append((rec.state, rec.target.version if rec.target else None, rec.reason))
        self.host.publish_ota(ota, report_fields(rec, ota.slot))
        if rec.state not in IN_PROGRESS and ota.pending:
            ota.pending = False
            self.host.after(0.0, lambda: self.consider(ota))

    # --- the real fetch and verify (worker thread) ------------------------------------------
    def _submit(self, ota: DeviceOta, action: Action) -> None:
        epoch, rec = ota.epoch, ota.record
        self._jobs.put(lambda: self._job(ota, epoch, rec, action))

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def _job(self, ota: DeviceOta, epoch: int, rec: OtaRecord, action: Action) -> None:
        t0 = time.perf_counter()
        try:
            event = self._verify_step(ota, rec, action)
        except Exception as exc:  # a bug in a step: the agent's engine reports it the same way
            event = Failed(OtaReason.INTERNAL_ERROR, f"{action}: {type(exc).__name__}: {exc}")
        spent = time.perf_counter() - t0
        c = self.counters
        c.work_s += spent
        c.work_max_s = max(c.work_max_s, spent)
        if isinstance(event, Failed | DeltaUnusable):
            c.refused(event.reason)
        self.host.post(lambda: self._complete(ota, epoch, event))

    def _live_bundle(self, ota: DeviceOta) -> LiveBundle:
        assert self.kit is not None
        live = ota.live
        return LiveBundle(live.model, live.version, live.sha256, self.kit.slot,
                          self.kit.store.path_of(live))

    def _verify_step(self, ota: DeviceOta, rec: OtaRecord, action: Action) -> Event:
        kit, c = self.kit, self.counters
        assert kit is not None and rec.target is not None
        if action == "fetch":
            ota.fetcher = Fetcher(kit.cfg, kit.store, transport=self.transport)
            c.refreshes += 1
            result = ota.fetcher.fetch(rec.target, self._live_bundle(ota), rec.delta_failed)
            if isinstance(result, Downloaded):
                c.downloads[result.artifact] += 1
            return result
        if action == "verify":
            if ota.fetcher is None:
                return Failed(OtaReason.INTERNAL_ERROR, "verify without a fetch")
            fetched = ota.fetcher.fetched
            outcome = ota.fetcher.verify(rec.target, self._live_bundle(ota))
            if isinstance(outcome, Verified) and fetched is not None:
                c.verified[fetched.kind] += 1
                ota.verified += 1
            return outcome
        return self._smoke_check(ota, rec)

    def _smoke_check(self, ota: DeviceOta, rec: OtaRecord) -> Event:
        """The engine's checks before a smoke test, without a runtime: the candidate's
        hash (again), its manifest and files, and that it is the model that was signed."""
        assert self.kit is not None and rec.target is not None and rec.candidate is not None
        try:
            bundle = load_bundle(self.kit.store.path_of(rec.candidate),
                                 expected_sha256=rec.candidate.sha256)
        except FileNotFoundError:
            return Failed(OtaReason.CANDIDATE_MISSING, f"{rec.candidate.file} disappeared")
        except BundleError as exc:
            return Failed(OtaReason.BUNDLE_INVALID, f"{rec.candidate.file}: {exc}")
        m, t = bundle.manifest, rec.target
        if (m.name, m.version, m.slot) != (t.model, t.version, self.kit.slot):
            return Failed(OtaReason.WRONG_MODEL,
                          f"{rec.candidate.file} contains {m.name} v{m.version} "
                          f"for slot {m.slot!r}, signed as {t.model} v{t.version}")
        self.counters.smoke_checked += 1
        return SmokePassed()

    def stats(self) -> dict[str, Any]:
        c = self.counters
        return {"refreshes": c.refreshes, "downloads": dict(c.downloads),
                "verified": dict(c.verified), "smoke_checked": c.smoke_checked,
                "refusals": dict(c.refusals), "http_requests": self.transport.requests,
                "http_bytes": self.transport.bytes, "work_s": round(c.work_s, 3),
                "work_max_s": round(c.work_max_s, 4)}
