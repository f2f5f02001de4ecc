"""The model worker: batches lines, runs the live model, decides alerts, and commits
results, alerts and source checkpoints to the spool in one transaction."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from agent.alerts import AlertGate
from agent.config import AgentConfig
from agent.explain import explain_live
from agent.journal_catalog import CatalogEntry
from agent.journal_evidence import catalog_verdict, weigh_journal_evidence
from agent.keyword_evidence import KeywordEvidenceConfig, weigh_keywords
from agent.level_evidence import SYSLOG_LEVELS
from agent.line_queue import LineQueue
from agent.memory import HeapTrimmer
from agent.metrics import Counters, LatencyWindow
from agent.model_slot import Model, ModelSlot
from agent.mutes import MuteSet
from agent.sources.base import Batching, Line, is_system_uid
from agent.spool import Spool
from agent.text_levels import read_text_levels, text_levels_read
from contract import topics
from contract.bundle import BundleManifest
from contract.limits import MAX_ALERT_TEXT_CHARS
from contract.messages import Alert, ResultBatch, ResultItem
from contract.mutes import ordinary_user_note

log = logging.getLogger("nanofleet.agent.pipeline")

OFFLINE_BATCH_WAIT_S = 1.0
# With no line queued the worker sleeps this long between heartbeats (the health check
# calls the loop stuck after 30 s); a line wakes it at once.
IDLE_WAIT_S = 2.0


# Words named in an alert's reason (the strongest that pushed towards an alert).
WHY_WORDS = 3


class Pipeline:
    def __init__(self, cfg: AgentConfig, queue: LineQueue, slot: ModelSlot, spool: Spool,
                 counters: Counters, on_committed: Callable[[], None],
                 is_online: Callable[[], bool] = lambda: True,
                 mutes: MuteSet | None = None) -> None:
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
        # The fleet server's mutes (agent.mute_inbox fills it): one set for the agent's
        # life, while each config (re)load builds a new alert gate around it.
        self.mutes = mutes if mutes is not None else MuteSet(cfg.alerts.mute_storm_per_minute)
        self.heartbeat = time.monotonic()
        self.busy = False  # in a batch (agent.health: a long batch is not a stuck loop)
        self.batch_started = 0.0  # monotonic; when the batch in hand began (agent.health)
        # Lines of the batches finished, failed ones too (drain counts against it).
        self.processed = 0
        self.holding: str | None = None  # why a batch waits for the spool (a full disk)
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
        self.level_evidence = cfg.model.level_evidence
        self.catalog_evidence = cfg.model.catalog_evidence
        self.keyword_evidence = cfg.model.keyword_evidence
        # Sources that ask for the keywords; sources whose lines may name their program in
        # a syslog tag (log files; agent.keyword_evidence).
        names = [(cfg.source_name(i), s) for i, s in enumerate(cfg.sources)]
        self.keyword_sources = frozenset(n for n, s in names if s.keyword_evidence)
        self.tagged_sources = frozenset(n for n, s in names if s.kind == "file")
        # Sources whose lines state their level in their text (agent.text_levels).
        self.text_level_sources = frozenset(n for n, s in names if text_levels_read(s))
        self.heap_trimmer = HeapTrimmer(cfg.pipeline.heap_trim_interval_s)
        # File sources read once per batch's worth of lines (see sources.base.read_window).
        self.queue.batching = Batching(self.batch_min, self.max_wait)
        self.alert_gate = AlertGate(cfg.alerts, self.counters, self.mutes)
        if self.recent_alerts.maxlen != cfg.alerts.recent:
            self.recent_alerts = deque(self.recent_alerts, maxlen=cfg.alerts.recent)

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

    def longest_wait_s(self) -> float:
        """How long the loop may wait for a batch without beating (the health check
        allows it on top of its stall limit): a line's wait for its batch to fill, and
        the idle wait before it."""
        return max(self.max_wait, OFFLINE_BATCH_WAIT_S) + IDLE_WAIT_S

    def drain(self, timeout: float) -> bool:
        """Wait until every line queued before the call is processed; True once it is.
        Lines queued since (sources a reload kept running) are not waited for: the queue
        is a FIFO taken by this one worker, so the lines done are always the first ones
        queued, and counting them is enough."""
        mark = self.queue.accepted
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processed >= mark:
                return True
            time.sleep(0.01)
        return self.processed >= mark

    def _run(self) -> None:
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            # While the broker is away nobody waits for results: fuller batches make fewer,
            # larger spool messages, so the bounded spool covers a longer outage.
            online = self.is_online()
            wait = self.max_wait if online else max(self.max_wait, OFFLINE_BATCH_WAIT_S)
            batch = self.queue.get_batch(self.batch_size, wait, timeout=IDLE_WAIT_S,
                                         min_items=self.batch_min if online else None,
                                         take_windows=online)
            if not batch:
                continue
            self.batch_started = time.monotonic()
            self.busy = True
            lines = [line for line, _ in batch]
            try:
                self.process(lines, [t for _, t in batch])
            except Exception:
                log.exception("processing a batch of %d lines failed", len(batch))
                self.counters.inc("batch_errors")
                if not self._stop.is_set():  # stopping: uncommitted, read again at start
                    self._commit_unclassified(lines)
            finally:
                self.processed += len(batch)
                self.busy = False
                self.counters.set_gauge("queue_depth", float(len(self.queue)))
            # The batch's freed buffers back to the system, every few seconds of work.
            if self.heap_trimmer.after_work():
                self.counters.inc("heap_trims")

    # --- one batch ---------------------------------------------------------------------
    def process(self, lines: list[Line], enqueued: list[float]) -> None:
        """Classify a batch, decide its alerts, and commit results, alerts and the
        lines' checkpoints to the spool in one transaction."""
        model = self.slot.current()
        manifest = model.manifest
        read_text_levels(lines, self.text_level_sources)
        probs, anomaly, failed = self._classify(model, lines)
        if not failed:
            probs, anomaly = self.weigh_journal(
                manifest, probs, anomaly, [line.level for line in lines],
                [line.message_id for line in lines], count=True, texts=[ln.text for ln in lines],
                keywords=[ln.source in self.keyword_sources for ln in lines],
                tagged=[ln.source in self.tagged_sources for ln in lines],
                programs=[ln.program for ln in lines])
        items = self._result_items(lines, manifest, probs, anomaly, failed)
        messages = [] if failed else self._alerts(model, lines, items, manifest,
                                                  probs.max(axis=1), anomaly)
        results = ResultBatch(seq=self.spool.next_seq(f"results/{self.slot.name}"),
                              device_id=self.device_id, slot=self.slot.name,
                              model_version=manifest.version, items=items)
        messages.insert(0, (topics.results(self.device_id, self.slot.name),
                            results.model_dump_json().encode()))
        checkpoints = {line.source: line.checkpoint for line in lines
                       if line.checkpoint is not None}
        self._commit(messages, checkpoints, durable=_acknowledged(lines))
        self._acknowledge(lines)
        now = time.monotonic()
        self.latency.add_many([now - t for t in enqueued])
        self.on_committed()

    def _commit_unclassified(self, lines: list[Line]) -> None:
        """A batch that failed outside inference (which has its own fallback): its lines
        published ``unclassified`` with their checkpoints. Left uncommitted (before, review
        December 2026), they were lost for good once the next batch of their source
        committed a later checkpoint. If even this fails they are read again only after a
        restart."""
        try:
            manifest = self.slot.current().manifest
            zeros = np.zeros((len(lines), len(manifest.labels)), dtype=np.float32)
            items = self._result_items(lines, manifest, zeros, zeros[:, 0], True)
            results = ResultBatch(seq=self.spool.next_seq(f"results/{self.slot.name}"),
                                  device_id=self.device_id, slot=self.slot.name,
                                  model_version=manifest.version, items=items)
            self._commit([(topics.results(self.device_id, self.slot.name),
                           results.model_dump_json().encode())],
                         {line.source: line.checkpoint for line in lines
                          if line.checkpoint is not None}, durable=_acknowledged(lines))
            self._acknowledge(lines)
        except Exception:
            log.exception("the failed batch's %d lines could not be kept as unclassified "
                          "either", len(lines))

    @staticmethod
    def _acknowledge(lines: list[Line]) -> None:
        """The committed lines' acknowledgements (a source's messages: Line.ack)."""
        for line in lines:
            if line.ack is not None:
                try:
                    line.ack()
                except Exception:  # the batch is committed whatever one source says
                    log.exception("acknowledging a line of %s failed", line.source)

    def _commit(self, messages: list[tuple[str, bytes]], checkpoints: dict[str, str],
                durable: bool = False) -> None:
        """Commit, waiting out a spool that cannot be written (a full disk): the batch is
        held, not dropped. Why: a dropped batch's lines were lost for good once the next
        batch committed a later checkpoint of their source (review, December 2026: fill
        the disk, do the deed, free it, and its log lines were never read). Meanwhile the
        queue fills and the sources wait (backpressure); on stop the batch is given up
        uncommitted, so a restart reads its lines again."""
        delay = 0.5
        try:
            while True:
                try:
                    self.spool.commit(messages, checkpoints, durable)
                    return
                except (sqlite3.Error, OSError) as exc:
                    if self._stop.is_set():
                        raise
                    self.counters.inc("spool_commit_retries")
                    if self.holding is None:
                        log.warning("the spool cannot be written (%s): holding the batch and "
                                    "retrying; sources wait meanwhile", exc)
                    # Degraded, not stuck: a restart cannot free the disk (agent.health).
                    self.holding = f"the spool cannot be written ({exc}): a batch waits"
                    self._stop.wait(delay)
                    delay = min(delay * 2, 5.0)
                    self.heartbeat = time.monotonic()  # waiting, not hung
        finally:
            self.holding = None

    def keywords_for(self, manifest: BundleManifest) -> KeywordEvidenceConfig:
        """``[model.keyword_evidence]`` as it applies to ``manifest``'s model: with the
        programs that model was trained on, unless the config names its own."""
        return self.keyword_evidence.for_bundle(manifest.known_programs)

    def weigh_journal(self, manifest: BundleManifest, probs: np.ndarray, anomaly: np.ndarray,
                      levels: list[int | None], message_ids: list[str | None],
                      count: bool = False, texts: list[str] | None = None,
                      keywords: list[bool] | None = None,
                      tagged: list[bool] | None = None,
                      programs: list[str | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The scores with each line's level and catalog id weighed in as configured
        (agent.journal_evidence), then the keywords on lines without a weighed level whose
        source asks (``keywords``) or that name a program the model has not read
        (``programs``, or their tag where ``tagged``; agent.keyword_evidence). The classify
        query uses it too, so a
        technician's answer is the pipeline's; ``count``: the lines are the device's
        (``lines_level_weighed``, ``lines_catalog_weighed``, ``lines_keyword_weighed``)."""
        normal = manifest.labels.index(manifest.normal_label)
        weighed = weigh_journal_evidence(probs, anomaly, levels, message_ids,
                                         self.level_evidence.for_bundle(
                                             manifest.level_offsets), self.catalog_evidence,
                                         normal)
        # The keywords leave a line to its level only where the level is weighed in.
        probs, anomaly, by_words = weigh_keywords(
            weighed.probs, weighed.anomaly, texts, keywords,
            levels if self.level_evidence.enabled else [None] * len(levels),
            self.keywords_for(manifest), normal, tagged, programs)
        if count:
            for name, n in (("lines_level_weighed", weighed.levels_weighed),
                            ("lines_catalog_weighed", weighed.catalog_weighed),
                            ("lines_keyword_weighed", by_words)):
                if n:
                    self.counters.inc(name, n)
        return probs, anomaly

    def catalog_verdict(self, message_id: str | None,
                        level: int | None) -> CatalogEntry | None:
        """A line's journal catalog verdict (agent.journal_catalog); None when it is off."""
        return catalog_verdict(message_id, level, self.catalog_evidence)

    def _classify(self, model: Model, lines: list[Line]) -> tuple[np.ndarray, np.ndarray, bool]:
        """(probabilities, anomaly, failed). A failed inference yields zeros: the lines
        are still published (as ``unclassified``) and their checkpoints move on."""
        manifest = model.manifest
        t0 = time.perf_counter()
        failed = False
        try:
            probs, anomaly = model.classify([line.text for line in lines])
        except Exception as exc:
            self.counters.inc("inference_errors")
            log.error("inference failed on %s v%d: %s", manifest.name, manifest.version, exc)
            probs = np.zeros((len(lines), len(manifest.labels)), dtype=np.float32)
            anomaly = np.zeros(len(lines), dtype=np.float32)
            failed = True
        infer_s = time.perf_counter() - t0
        self.inference_latency.add(infer_s)
        self.counters.inc("inferences", len(lines))
        self.counters.inc("batches")
        self.counters.set_gauge("inference_ms", infer_s * 1000)
        return probs, anomaly, failed

    def _result_items(self, lines: list[Line], manifest: BundleManifest, probs: np.ndarray,
                      anomaly: np.ndarray, failed: bool) -> list[ResultItem]:
        best = probs.argmax(axis=1)
        return [ResultItem(source=line.source, ts=line.ts,
                           text=line.text if self.publish_text else "",
                           label="unclassified" if failed else manifest.labels[int(best[i])],
                           score=round(float(probs[i, best[i]]), 4),
                           anomaly=round(float(anomaly[i]), 4), truncated=line.truncated)
                for i, line in enumerate(lines)]

    def _why(self, model: Model, text: str) -> str:
        """``"; why: temperature +5.1, critical +3.2"``: the words that pushed the line
        towards an alert, strongest first (in the reason string, which every server
        accepts; an Alert field of its own would be refused by servers built before it).
        Empty when the model cannot explain or no word pushed that way. ``agent.tables``
        reads this form back for ``query recent_alerts``."""
        try:
            words = explain_live(model, [text], top=3 * WHY_WORDS)[0]
        except ValueError:  # not the nano network (a site's own architecture)
            return ""
        except Exception:  # an explanation must never cost the batch its results
            log.exception("explaining an alert failed; sent without its words")
            self.counters.inc("explain_errors")
            return ""
        # Numbers and single letters carry weight too (a time, a unit) but tell a
        # technician nothing: name words with at least two letters.
        towards = [w for w in words if float(w["weight"]) > 0
                   and sum(c.isalpha() for c in str(w["word"])) >= 2][:WHY_WORDS]
        if not towards:
            return ""
        # A word is cut at 32 characters: the fleet server keeps 255 of a reason.
        return "; why: " + ", ".join(f"{str(w['word'])[:32]} {float(w['weight']):+.1f}"
                                     for w in towards)

    def _alerts(self, model: Model, lines: list[Line], items: list[ResultItem],
                manifest: BundleManifest, scores: np.ndarray,
                anomaly: np.ndarray) -> list[tuple[str, bytes]]:
        """The alert messages of a batch (the gate groups repeats and caps the rate);
        decided on the unrounded scores, as published items round them."""
        policy = self.alert_gate.policy(manifest)
        keywords = self.keywords_for(manifest)
        now, wall = time.monotonic(), time.time()
        messages: list[tuple[str, bytes]] = []
        for i, (line, item) in enumerate(zip(lines, items, strict=True)):
            decision = self.alert_gate.admit(policy, line.source, item.label,
                                             float(scores[i]), float(anomaly[i]), now,
                                             text=line.text, wall=wall, uid=line.uid)
            if decision is None:
                continue
            reason = decision.reason
            if line.uid is not None and not is_system_uid(line.uid):
                # The text's program name is the logger's claim; the uid is the kernel's.
                reason += ordinary_user_note(line.uid)
            if line.level is not None and self.level_evidence.enabled:
                reason += f" (logged at {SYSLOG_LEVELS[line.level]})"
            else:  # no level weighed: the keywords may have been
                reason += keywords.note(line.text, line.source in self.keyword_sources,
                                        line.source in self.tagged_sources, line.program)
            verdict = self.catalog_verdict(line.message_id, line.level)
            if verdict is not None:
                reason += f" (journal catalog: {verdict.subject})"
            if self.cfg.alerts.explain:
                reason += self._why(model, line.text)
            alert = Alert(seq=self.spool.next_seq("alerts"), device_id=self.device_id,
                          slot=self.slot.name, model_version=manifest.version,
                          item=item.model_copy(update={
                              "text": line.text[:MAX_ALERT_TEXT_CHARS],
                              "truncated": item.truncated
                              or len(line.text) > MAX_ALERT_TEXT_CHARS}),
                          reason=reason, repeats=decision.repeats)
            messages.append((topics.alerts(self.device_id), alert.model_dump_json().encode()))
            self.recent_alerts.append(alert.model_dump(mode="json"))
            self.counters.inc("alerts")
        return messages


def _acknowledged(lines: list[Line]) -> bool:
    """Whether a source acknowledges any of these lines once committed: their commit must
    then reach the disk first (Spool.commit's ``durable``), or a power cut after the
    acknowledgement loses lines the broker will not send again."""
    return any(line.ack is not None for line in lines)
