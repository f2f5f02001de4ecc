"""The agent daemon: wires sources -> queue -> pipeline -> spool -> sender -> MQTT,
publishes status and metrics, and speaks sd_notify. A thin I/O shell around the parts;
queries are answered by :class:`agent.query_service.QueryService`; the broker link, its
subscriptions and the agent's own messages are :class:`agent.broker_session.BrokerSession`."""

from __future__ import annotations

import logging
import signal
import sqlite3
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from agent import __version__
from agent.broker_session import BrokerSession
from agent.bundle_slot import initial_bundle, slot_name
from agent.config import AgentConfig, ConfigError, load_config
from agent.control import ControlServer
from agent.health import HealthCheck
from agent.line_queue import LineQueue
from agent.memory import release_freed_memory
from agent.metrics import Counters
from agent.model import LoadedModel
from agent.model_slot import ModelSlot
from agent.mute_inbox import MuteInbox
from agent.mutes import MuteSet
from agent.notify import Notifier
from agent.pipeline import Pipeline
from agent.query_service import QueryService
from agent.reload_plan import sources_kept_running, sources_to_keep
from agent.signal_wake import SignalWake
from agent.sources.base import Source
from agent.sources.registry import AgentBroker, build_source
from agent.spool import Spool

if TYPE_CHECKING:  # imported when [ota] is configured: a device without OTA never loads it
    from agent.ota.engine import OtaEngine
    from agent.ota.mqtt_transport import MqttTransport

log = logging.getLogger("nanofleet.agent")
RELOAD_DRAIN_S = 10.0
# How long stopping (then closing) all sources may take together.
SOURCE_STOP_S = 5.0

# Waits between tries to open the spool (s); the last one repeats.
SPOOL_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)


class StoppedDuringSetup(Exception):
    """SIGTERM/SIGINT came while set-up was waiting (for the disk): exit cleanly."""


class Agent(BrokerSession):
    def __init__(self, cfg: AgentConfig, config_path: Path | None = None,
                 notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.notifier = notifier or Notifier()
        self.counters = Counters()
        self.started_at = time.time()
        self.started_monotonic = time.monotonic()
        self._wake = SignalWake()  # set by the signal handler: takes no lock
        self._stopping = False
        self._reload_requested = False
        self.sources: list[Source] = []
        self.ota: OtaEngine | None = None  # when [ota] is configured
        self._ota_attached = False  # desired states go to the engine only once it has a slot
        self._artifacts: MqttTransport | None = None  # [ota] transport = "mqtt": on our link
        # Kept on disk too: a restart while the broker is away must not unmute.
        self.mutes = MuteSet(cfg.alerts.mute_storm_per_minute)
        self.mute_inbox = MuteInbox(self.mutes, self.counters, cfg.device_id,
                                    store=cfg.state_dir / "mutes.json")
        self.counters.derive_gauge(
            "mutes_active", lambda: float(len(self.mutes.active(time.time(), time.monotonic()))))
        self.queries = QueryService(self)

    # --- set-up ------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        self.notifier.status("loading model")
        bundle = initial_bundle(cfg)
        slot = slot_name(cfg, bundle)
        # --- OTA (agent/ota): finish or undo an interrupted update; it names the bundle ---
        if cfg.ota is not None:
            from agent.ota.engine import OtaEngine

            self.ota = OtaEngine(cfg.ota, cfg.state_dir, slot,
                                 runtime=cfg.model.runtime, threads=cfg.model.threads,
                                 initial_bundle=bundle, report=self._publish_ota,
                                 batch_size=cfg.pipeline.batch_size, counters=self.counters)
            bundle = self.ota.recover()
        # --- end OTA ---
        model = LoadedModel.load(bundle, cfg.model.runtime, cfg.model.threads)
        model.smoke_test()
        self.slot = ModelSlot(slot, model)
        self.spool = self._open_spool()
        self.queue = LineQueue(cfg.pipeline.queue_size)
        if cfg.alerts.mutes:
            self.mute_inbox.restore()
        self.notifier.status("connecting to MQTT")
        self._setup_link()
        self.pipeline = Pipeline(cfg, self.queue, self.slot, self.spool, self.counters,
                                 on_committed=lambda: self.sender.wake(),
                                 is_online=lambda: self.link.connected.is_set(),
                                 mutes=self.mutes)
        self.health = HealthCheck(self)
        self.control = ControlServer(cfg.control_socket, cfg.control.socket_mode,
                                     self.queries.answer,
                                     on_busy=lambda: self.counters.inc("control_busy"))
        self.pipeline.start()
        self._start_sources()
        # Queries only once the sources have started: a first answer is taken for
        # "started" (the HIL rig, scripts), and a file source at start_at=end fixes its
        # end when it starts, so a line written after an earlier answer could be skipped.
        self.control.start()
        # --- OTA (agent/ota) ---
        if self.ota is not None:
            self.ota.attach(self.slot)
            self._ota_attached = True
            self._follow_desired()
            self.ota.start()
        # --- end OTA ---
        # Start-up's transient buffers (bundle bytes, verification, model load, smoke
        # test) are freed by now, but glibc would keep their pages: hand them back.
        release_freed_memory()

    def _start_sources(self, running: dict[str, Source] | None = None) -> None:
        """Build and start the config's sources, in its order; ``running``: those a
        reload left running (agent.reload_plan), taken as they are."""
        cfg = self.cfg
        agent_broker = AgentBroker(cfg.mqtt, f"nanofleet-{cfg.device_id}", self.link,
                                   device_id=cfg.device_id)
        # Built aside, then swapped in: a query meanwhile sees the old list or the whole
        # new one, never a part of it (and on an error, those started, for the shutdown).
        built: list[Source] = []
        try:
            for i, scfg in enumerate(cfg.sources):
                name = cfg.source_name(i)
                src = (running or {}).get(name)
                if src is None:
                    src = build_source(scfg, self.queue, self.counters,
                                       cfg.pipeline.max_line_bytes, agent_broker)
                    src.name = name
                    src.start(self.spool.checkpoint(name))
                built.append(src)
        finally:
            self.sources = built

    def _open_spool(self) -> Spool:
        """The outbox, waited for while the disk refuses it. Exiting instead let a
        device whose logs filled its disk lose its agent for good: five failed starts in
        ten minutes and systemd gives up on the unit (StartLimitBurst), so freeing space
        later brought nothing back. Waiting, the agent starts once space is free."""
        path = self.cfg.state_dir / "spool.sqlite"
        attempt = 0
        while True:
            try:
                return Spool(path, self.cfg.spool.max_messages, self.cfg.spool.max_bytes,
                             self.counters)
            except (sqlite3.Error, OSError) as exc:
                wait = SPOOL_RETRY_S[min(attempt, len(SPOOL_RETRY_S) - 1)]
                if attempt == 0 or wait == SPOOL_RETRY_S[-1]:
                    log.error("cannot open the spool %s: %s (is the disk full?); retrying "
                              "every %.0f s at most", path, exc, SPOOL_RETRY_S[-1])
                self.counters.inc("spool_open_failures")
                self.notifier.status(f"waiting for the spool {path}: {exc} "
                                     f"(disk full?); next try in {wait:.0f} s")
                self.notifier.extend_timeout(wait + 30.0)  # TimeoutStartSec would kill us
                self._wake.wait(wait)
                if self._stopping:
                    raise StoppedDuringSetup from None
                attempt += 1

    @staticmethod
    def _stop_sources(sources: list[Source]) -> None:
        """Stop reading; MQTT sources keep their connection for the acknowledgements of
        the lines the drain commits (:meth:`_close_sources` after it). Every source is
        told first, then all are waited for against one deadline: one after another, a
        few slow ones added up past the stop's time budget (review, December 2026)."""
        for src in sources:
            src.stop(timeout=0.0, keep_open=True)
        deadline = time.monotonic() + SOURCE_STOP_S
        for src in sources:
            src.stop(timeout=max(0.0, deadline - time.monotonic()), keep_open=True)

    @staticmethod
    def _close_sources(sources: list[Source]) -> None:
        deadline = time.monotonic() + SOURCE_STOP_S
        for src in sources:
            src.close(timeout=max(0.0, deadline - time.monotonic()))

    # --- main loop -----------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)
        try:
            self.setup()
        except StoppedDuringSetup:
            log.info("stopped while waiting to start")
            return 0
        self.notifier.ready(self._status_line())
        log.info("agent %s running as %s", __version__, self.cfg.device_id,
                 extra={"device_id": self.cfg.device_id})
        wd = self.notifier.watchdog_interval()
        tick = min(1.0, wd / 2) if wd else 1.0
        next_metrics = time.monotonic() + self.cfg.metrics_interval_s
        while not self._stopping:
            self._wake.wait(tick)
            if self._reload_requested:
                self._reload_requested = False
                try:
                    self.reload()
                except Exception:  # a bug in a reload must not end the agent unflushed
                    log.exception("reload failed")
                    self.counters.inc("reload_errors")
                    self.notifier.ready("reload failed (see log)")
            if self._stopping:
                break
            try:
                healthy, problems = self.health.check()
            except Exception as exc:  # a bug in the check must not end the agent
                log.exception("health check failed to run")
                healthy, problems = False, [f"health check failed: {exc}"]
            if healthy:
                self.notifier.watchdog()
            else:
                log.error("health check failed: %s", "; ".join(problems))
            self.notifier.status(self._status_line())
            if time.monotonic() >= next_metrics:
                next_metrics = time.monotonic() + self.cfg.metrics_interval_s
                self.publish_metrics()
        self.shutdown()
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload_requested = True
        else:
            self._stopping = True
        self._wake.set()

    def _status_line(self) -> str:
        depth, _ = self.spool.depth()
        m = self.slot.current().manifest
        link = "connected" if self.link.connected.is_set() else "broker unreachable"
        return (f"{m.name} v{m.version}; {self.counters.get('inferences')} lines classified; "
                f"{link}; spool {depth}")

    # --- reload and shutdown --------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: re-read the config; queued lines are processed, never dropped."""
        self.notifier.reloading("reloading configuration")
        if self.config_path is None:
            self.notifier.ready("reload ignored: no config file")
            return
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            self.counters.inc("reload_errors")
            self.notifier.ready("reload failed: configuration invalid (see log)")
            return
        if new.device_id != self.cfg.device_id or new.state_dir != self.cfg.state_dir:
            log.error("reload refused: device_id and state_dir need a restart")
            self.counters.inc("reload_errors")
            self.notifier.ready("reload failed: device_id/state_dir changed, restart needed")
            return
        old = self.cfg
        model: LoadedModel | None = None
        if new.model != old.model and self.ota is None:
            # Loaded before anything stops: a bundle path with a typo ended the agent
            # mid-reload, without a shutdown (review, December 2026).
            try:
                model = LoadedModel.load(initial_bundle(new), new.model.runtime,
                                         new.model.threads)
                model.smoke_test()
            except Exception as exc:
                log.error("reload refused, keeping the running configuration: the new "
                          "[model] cannot be loaded: %s", exc)
                self.counters.inc("reload_errors")
                self.notifier.ready("reload failed: [model] cannot be loaded (see log)")
                return
        running = sources_kept_running(self.sources, sources_to_keep(old, new))
        stopped = [src for src in self.sources if src.name not in running]
        self._stop_sources(stopped)
        # Process what the stopped sources read, so they start again from up-to-date
        # checkpoints; the wait is bounded (the watchdog is fed by this thread).
        if not self.pipeline.drain(RELOAD_DRAIN_S):
            log.warning("reload: %d lines still queued after %.0f s; those the new sources "
                        "read again from their last committed checkpoint are classified "
                        "twice", len(self.queue), RELOAD_DRAIN_S)
            self.counters.inc("reload_drain_timeouts")
        self._close_sources(stopped)  # their drained lines are acknowledged by now
        self.cfg = new
        self.pipeline.apply_config(new)
        if new.model != old.model and self.ota is not None:  # OTA (agent/ota) owns the model
            log.warning("model settings changed: restart the agent to apply them "
                        "(the live model is managed by OTA)")
        elif model is not None:
            if (new.model.slot or model.manifest.slot) != self.slot.name:
                log.warning("slot name changed: results stay on results/%s until the agent "
                            "restarts", self.slot.name)
            self.slot.swap(model)
            release_freed_memory()  # the old model's buffers
        if new.ota != old.ota:  # OTA (agent/ota): the engine keeps the settings it began with
            log.warning("[ota] settings changed: restart the agent to apply them")
        if new.mqtt != old.mqtt:
            self.sender.stop()
            self.link.stop()
            self._setup_link(self.link.next_connection)
        elif new.alerts.mutes != old.alerts.mutes:
            self._follow_mutes()
        self._start_sources(running)
        self.counters.inc("reloads")
        log.info("configuration reloaded: %d of %d sources kept running", len(running),
                 len(self.sources))
        self.notifier.ready(self._status_line())

    def shutdown(self) -> None:
        self.notifier.stopping("flushing")
        log.info("stopping: flushing queued lines and the outbox")
        if self.ota is not None:  # OTA (agent/ota): an unfinished trial rolls back at start
            self.ota.stop()
        self._stop_sources(self.sources)
        self.queue.close()
        self.pipeline.drain(4.0)
        self._close_sources(self.sources)
        self.pipeline.stop(2.0)
        self.sender.drain(2.0)
        self.sender.stop(1.0)
        if self.link.connected.is_set():
            info = self.publish_status("stopped")
            if info is not None:
                info.wait_for_publish(1.0)
        self.link.stop()
        self.control.stop()
        self.spool.close()
        log.info("stopped")
