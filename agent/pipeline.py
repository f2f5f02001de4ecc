"""The model worker: batches lines, runs the live model, decides alerts, and commits
results, alerts and source checkpoints to the spool in one transaction."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from agent.alerts import AlertPolicy, RateLimiter, RepeatFilter
from agent.config import AgentConfig
from agent.line_queue import LineQueue
from agent.metrics import Counters, LatencyWindow
from agent.sources.base import Line
from agent.spool import Spool
from contract import topics
from contract.bundle import BundleManifest
from contract.messages import Alert, ResultBatch, ResultItem

log = logging.getLogger("nanofleet.agent.pipeline")

OFFLINE_BATCH_WAIT_S = 1.0
# With no line queued the worker sleeps this long between heartbeats (the health check
# calls the loop stuck after 30 s); a line wakes it at once.
IDLE_WAIT_S = 2.0


class Model(Protocol):
    """What the pipeline needs of a loaded model (see agent.model.LoadedModel)."""

    manifest: BundleManifest
    runtime_name: str
    bundle_sha256: str

    def classify(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]: ...


class ModelSlot:
    """The live model of a slot. A batch takes the model once and keeps it to the end,
    so a swap never changes the model under a running batch."""

    def __init__(self, name: str, model: Model) -> None:
        self.name = name
        self._model = model
        self._lock = threading.Lock()

    def current(self) -> Model:
        with self._lock:
            return self._model

    def swap(self, model: Model) -> Model:
        with self._lock:
            old, self._model = self._model, model
            return old


class Pipeline:
    def __init__(self, cfg: AgentConfig, queue: LineQueue, slot: ModelSlot, spool: Spool,
                 counters: Counters, on_committed: Callable[[], None],
                 is_online: Callable[[], bool] = lambda: True) -> None:
        self.queue = queue
        self.slot = slot
        self.spool = spool
        self.counters = counters
        self.on_committed = on_committed
        self.is_online = is_online
        self.latency = LatencyWindow()
        self.inference_latency = LatencyWindow()
        counters.derive_gauge("latency_p50_ms", lambda: self.latency.percentile(50) * 1000)
        counters.derive_gauge("latency_p99_ms", lambda: self.latency.percentile(99) * 1000)
        self.recent_alerts: deque[dict[str, Any]] = deque(maxlen=cfg.alerts.recent)
        self.heartbeat = time.monotonic()
        self.busy = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.apply_config(cfg)

    def apply_config(self, cfg: AgentConfig) -> None:
        """Settings that may change on reload (SIGHUP)."""
        self.cfg = cfg
        self.device_id = cfg.device_id
        self.batch_size = cfg.pipeline.batch_size
        self.batch_min = min(cfg.pipeline.batch_min_lines, cfg.pipeline.batch_size)
        self.max_wait = cfg.pipeline.batch_max_wait_ms / 1000.0
        self.publish_text = cfg.pipeline.publish_text
        self.limiter = RateLimiter(cfg.alerts.max_per_minute)
        self.repeats = RepeatFilter(cfg.alerts.repeat_window_s)
        if self.recent_alerts.maxlen != cfg.alerts.recent:
            self.recent_alerts = deque(self.recent_alerts, maxlen=cfg.alerts.recent)
        self._policies: dict[str, AlertPolicy] = {}

    def policy(self, manifest: BundleManifest) -> AlertPolicy:
        key = f"{manifest.name}:{manifest.version}"
        if key not in self._policies:
            self._policies[key] = AlertPolicy.build(self.cfg.alerts, manifest.labels,
                                                    manifest.normal_label)
        return self._policies[key]

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def drain(self, timeout: float) -> bool:
        """Wait until every queued line is processed. True when the queue is empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.queue) == 0 and not self.busy:
                return True
            time.sleep(0.01)
        return len(self.queue) == 0 and not self.busy

    def _run(self) -> None:
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            # While the broker is away nobody waits for results: fuller batches make fewer,
            # larger spool messages, so the bounded spool covers a longer outage.
            online = self.is_online()
            wait = self.max_wait if online else max(self.max_wait, OFFLINE_BATCH_WAIT_S)
            batch = self.queue.get_batch(self.batch_size, wait, timeout=IDLE_WAIT_S,
                                         min_items=self.batch_min if online else None)
            if not batch:
                continue
            self.busy = True
            try:
                self.process([line for line, _ in batch], [t for _, t in batch])
            except Exception:
                # Counted and logged; the batch's checkpoints were not committed, so file
                # and journal lines are read again after a restart.
                log.exception("processing a batch of %d lines failed", len(batch))
                self.counters.inc("batch_errors")
            finally:
                self.busy = False
                self.counters.set_gauge("queue_depth", float(len(self.queue)))

    # --- one batch ---------------------------------------------------------------------
    def process(self, lines: list[Line], enqueued: list[float]) -> None:
        model = self.slot.current()
        manifest = model.manifest
        t0 = time.perf_counter()
        try:
            probs, anomaly = model.classify([line.text for line in lines])
        except Exception as exc:
            self.counters.inc("inference_errors")
            log.error("inference failed on %s v%d: %s", manifest.name, manifest.version, exc)
            probs = np.zeros((len(lines), len(manifest.labels)), dtype=np.float32)
            anomaly = np.zeros(len(lines), dtype=np.float32)
            labels_override = "unclassified"
        else:
            labels_override = ""
        infer_s = time.perf_counter() - t0
        self.inference_latency.add(infer_s)
        self.counters.inc("inferences", len(lines))
        self.counters.inc("batches")

        policy = self.policy(manifest)
        best = probs.argmax(axis=1)
        items: list[ResultItem] = []
        messages: list[tuple[str, bytes]] = []
        for i, line in enumerate(lines):
            label = labels_override or manifest.labels[int(best[i])]
            score = float(probs[i, best[i]])
            item = ResultItem(source=line.source, ts=line.ts,
                              text=line.text if self.publish_text else "", label=label,
                              score=round(score, 4), anomaly=round(float(anomaly[i]), 4),
                              truncated=line.truncated)
            items.append(item)
            reason = None if labels_override else policy.decide(label, score, float(anomaly[i]))
            if reason is not None:
                send, repeats = self.repeats.admit(line.source, label, time.monotonic())
                if not send:
                    self.counters.inc("alerts_grouped")
                    continue
                if not self.limiter.allow():
                    self.counters.inc("alerts_suppressed")
                    continue
                alert = Alert(seq=self.spool.next_seq("alerts"), device_id=self.device_id,
                              slot=self.slot.name, model_version=manifest.version,
                              item=item.model_copy(update={"text": line.text}), reason=reason,
                              repeats=repeats)
                messages.append((topics.alerts(self.device_id), alert.model_dump_json().encode()))
                self.recent_alerts.append(alert.model_dump(mode="json"))
                self.counters.inc("alerts")
        results = ResultBatch(seq=self.spool.next_seq(f"results/{self.slot.name}"),
                              device_id=self.device_id, slot=self.slot.name,
                              model_version=manifest.version, items=items)
        messages.insert(0, (topics.results(self.device_id, self.slot.name),
                            results.model_dump_json().encode()))
        checkpoints = {line.source: line.checkpoint for line in lines
                       if line.checkpoint is not None}
        self.spool.commit(messages, checkpoints)
        now = time.monotonic()
        for t in enqueued:
            self.latency.add(now - t)
        self.counters.set_gauge("inference_ms", infer_s * 1000)
        self.on_committed()
