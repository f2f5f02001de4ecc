"""The running agent's side of technician queries.

:class:`QueryService` is the :class:`agent.queries.QueryTarget` over the agent's parts
(status, models, sources, metrics, recent alerts, mutes, classify, OTA) and answers queries
from both doors: MQTT request/response (off paho's network thread, at most
``MAX_CONCURRENT_QUERIES`` at once, the rest answered "busy") and the local control
socket. The status and metrics documents it builds are also what the agent publishes.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any

from paho.mqtt.client import MQTT_ERR_SUCCESS, MQTTMessage
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent import __version__
from agent.explain import explain_live
from agent.journal_catalog import SYSTEMD_CATALOG
from agent.level_evidence import SYSLOG_LEVELS
from agent.metrics import resident_bytes
from agent.queries import answer
from agent.text_levels import level_in_text
from contract import topics
from contract.bundle_features import BUNDLE_FEATURES
from contract.limits import PACKET_OVERHEAD_BYTES
from contract.messages import ModelInfo, QueryResponse, Status, response_bytes

if TYPE_CHECKING:
    from agent.daemon import Agent

log = logging.getLogger("nanofleet.agent")

# Queries run the model (classify): a few at once, not one thread per request.
MAX_CONCURRENT_QUERIES = 4
MQTT_QUERIES_PER_S = 20  # more are dropped unanswered and counted (queries_dropped)
MAX_REPLY_CLIENT_CHARS = 128
MAX_CORRELATION_BYTES = 1024  # a requester's id for its answer, echoed back: an id, not data
# Answers published and not yet acknowledged by the broker. paho keeps each one until it
# is, bounded in number (1,000) but not in bytes: a 49-byte recent_alerts query drew up to
# 256 KiB, 20 a second, and on a slow uplink the agent grew 4.7 MB/s, past MemoryMax in
# 35 s (review, December 2026). Beyond this the answer is "busy".
MAX_UNACKED_ANSWER_BYTES = 2 << 20
_REPLY_CLIENT = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_REPLY_CLIENT_CHARS}}}")


class QueryService:
    def __init__(self, agent: Agent) -> None:
        # The agent, not its parts: a reload replaces its config, link and sources.
        self.agent = agent
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT_QUERIES)
        # The model's queries, whichever door they came by (review, December 2026: the
        # socket's 8 handlers and MQTT's 4 slots made 12 classify/explain calls at once).
        self._model_slots = threading.BoundedSemaphore(MAX_CONCURRENT_QUERIES)
        self._tokens, self._tokens_at = 2.0 * MQTT_QUERIES_PER_S, time.monotonic()
        # (the link it went out on, paho's MQTTMessageInfo, bytes): a reload's new link
        # forgets the old one's messages, which will never be acknowledged here.
        self._unacked: list[tuple[Any, Any, int]] = []
        self._unacked_lock = threading.Lock()

    # --- answering -----------------------------------------------------------------------
    def answer(self, payload: bytes) -> QueryResponse:
        counters = self.agent.counters
        counters.inc("queries")
        resp = answer(self, payload)
        if not resp.ok:
            counters.inc("query_errors")
        return resp

    def on_query_message(self, msg: MQTTMessage) -> None:
        """A query over MQTT: answered on the request's response topic, with its
        correlation data."""
        if getattr(msg, "retain", False):
            # A query someone published retained (`mosquitto_pub -r`) would be answered
            # again at every reconnect, for ever: not a technician asking now.
            self.agent.counters.inc("query_errors")
            log.warning("retained query on %s ignored: queries are asked, not kept",
                        str(getattr(msg, "topic", ""))[:200])
            return
        if not self._within_rate():
            # A flood of queries (each one answered "busy" at least, on paho's network
            # thread, in the queue the outbox shares) costs only this check and a count.
            self.agent.counters.inc("queries_dropped")
            return
        props = getattr(msg, "properties", None)
        reply_to = getattr(props, "ResponseTopic", None)
        corr = getattr(props, "CorrelationData", None)
        if corr is not None and len(corr) > MAX_CORRELATION_BYTES:
            self.agent.counters.inc("query_errors")
            log.warning("query with %d bytes of correlation data ignored (at most %d)",
                        len(corr), MAX_CORRELATION_BYTES)
            return
        if not reply_to:
            self.agent.counters.inc("query_errors")
            log.warning("query without a response topic ignored")
            return
        if not self._is_reply_topic(reply_to):
            # Only the device's own reply/<client>: a requester must not make the agent
            # publish on its status, alerts or ota topics, or (on a broker without access
            # rules) on anyone's (review, December 2026).
            self.agent.counters.inc("query_errors")
            log.warning("query with response topic %r ignored: answers go to %s/<client> "
                        "(letters, digits, '.', '_', '-'; at most %d)", reply_to[:200],
                        topics.query_reply(self.agent.cfg.device_id, "")[:-1],
                        MAX_REPLY_CLIENT_CHARS)
            return
        if not self._slots.acquire(blocking=False):
            self.agent.counters.inc("queries_busy")
            self._reply(reply_to, corr, QueryResponse(ok=False, error="busy, try again"))
            return

        def work() -> None:
            try:
                self._reply(reply_to, corr, self.answer(bytes(msg.payload)))
            finally:
                self._slots.release()

        try:  # off paho's network thread: classify runs the model
            threading.Thread(target=work, name="query", daemon=True).start()
        except RuntimeError as exc:  # no thread to be had (TasksMax): the slot is not lost
            self._slots.release()
            self.agent.counters.inc("query_errors")
            self._reply(reply_to, corr, QueryResponse(ok=False, error=f"busy ({exc})"))

    def _within_rate(self) -> bool:
        """At most MQTT_QUERIES_PER_S a second (bursts of twice that), network thread only."""
        now = time.monotonic()
        self._tokens = min(2.0 * MQTT_QUERIES_PER_S,
                           self._tokens + (now - self._tokens_at) * MQTT_QUERIES_PER_S)
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _is_reply_topic(self, topic: str) -> bool:
        head = topics.query_reply(self.agent.cfg.device_id, "")
        return topic.startswith(head) and _REPLY_CLIENT.fullmatch(topic[len(head):]) is not None

    def _reply(self, topic: str, corr: bytes | None, resp: QueryResponse) -> None:
        props = Properties(PacketTypes.PUBLISH)
        if corr is not None:
            props.CorrelationData = corr
        data = response_bytes(resp)
        room = self.agent.link.max_send_bytes - len(topic.encode()) - PACKET_OVERHEAD_BYTES \
            - len(corr or b"")
        if len(data) > room:
            # The broker would refuse it and the technician would wait for nothing: say
            # what happened instead (review, December 2026: recent_alerts limit=1000).
            self.agent.counters.inc("query_errors")
            data = response_bytes(QueryResponse(
                ok=False, cmd=resp.cmd, error=f"the answer is {len(data)} bytes, over the "
                f"broker's packet limit ({room} bytes for it): ask for less (a smaller limit)"))
        link = self.agent.link
        with self._unacked_lock:
            self._unacked = [(on, info, n) for on, info, n in self._unacked
                             if on is link and not info.is_published()]
            pending = sum(n for _, _, n in self._unacked)
            if pending + len(data) > MAX_UNACKED_ANSWER_BYTES:
                self.agent.counters.inc("queries_busy")
                data = response_bytes(QueryResponse(
                    ok=False, cmd=resp.cmd, error=f"busy: {pending} bytes of earlier answers "
                    "are not delivered yet (a slow link); try again"))
            info = link.publish(topic, data, qos=1, props=props)
            # (one published while the link is down is not counted: paho cannot say when
            # it is acknowledged, and with no link no query comes in to ask for more)
            if info.rc == MQTT_ERR_SUCCESS:
                self._unacked.append((link, info, len(data)))

    # --- what the agent reports (QueryTarget) -------------------------------------------------
    def status_doc(self, state: str = "online", publish: bool = False) -> dict[str, Any]:
        """The status; ``publish``: for ``dev/{id}/status``, under the stream's next number.
        A query's answer carries the last one published: numbers are stored and bounded,
        and a query loop took one each time (review, December 2026: ~2,000 a second would
        have used them up in two weeks, and every later status refused)."""
        a = self.agent
        healthy = hasattr(a, "health") and a.health.check()[0] and not a.health.degraded()
        seq = a.spool.next_seq("status") if publish else a.spool.last_seq("status")
        return Status(seq=seq, device_id=a.cfg.device_id,
                      state=state,  # type: ignore[arg-type]
                      agent_version=__version__, started_at=a.started_at,
                      connection=a.link.connection,
                      uptime_s=round(time.monotonic() - a.started_monotonic, 3),
                      models=[ModelInfo(**m) for m in self.models_doc()],
                      health="ok" if healthy else "degraded",
                      reads=sorted(BUNDLE_FEATURES)).model_dump(mode="json")

    def models_doc(self) -> list[dict[str, Any]]:
        a = self.agent
        model = a.slot.current()
        m = model.manifest
        # During a trial the slot serves the candidate: say so, or a status would read as
        # a commit (the rollout policy infers lost outcomes from this flag).
        trial = a.ota is not None and a.ota.is_on_trial(model)
        return [ModelInfo(slot=a.slot.name, name=m.name, version=m.version,
                          label=m.version_label, runtime=model.runtime_name,
                          sha256=model.bundle_sha256, trial=trial).model_dump()]

    def sources_doc(self) -> list[dict[str, Any]]:
        out = []
        for src in self.agent.sources:
            doc = src.describe()
            doc["checkpoint"] = self.agent.spool.checkpoint(src.name)
            # Whether its lines are weighed with the keywords (agent.keyword_evidence).
            doc["keyword_evidence"] = src.name in self.agent.pipeline.keyword_sources
            # Whether its lines' own level words are read (agent.text_levels).
            doc["text_levels"] = src.name in self.agent.pipeline.text_level_sources
            out.append(doc)
        return out

    def metrics_doc(self) -> dict[str, Any]:
        a = self.agent
        a.counters.set_gauge("queue_depth", float(len(a.queue)))
        rss = resident_bytes()
        if rss is not None:  # plotted by the fleet console
            a.counters.set_gauge("rss_bytes", rss)
        counters, gauges = a.counters.snapshot()
        return {"uptime_s": round(time.monotonic() - a.started_monotonic, 3),
                "counters": counters, "gauges": gauges}

    def recent_alerts(self) -> list[dict[str, Any]]:
        return list(self.agent.pipeline.recent_alerts)

    def mutes_doc(self) -> dict[str, Any]:
        """The mutes in force, for a technician asking why a line raises no alert."""
        a = self.agent
        cfg = a.cfg.alerts
        return {"enabled": cfg.mutes, "revision": a.mutes.revision,
                "storm_per_minute": cfg.mute_storm_per_minute,
                "mutes": a.mutes.active(time.time(), time.monotonic())}

    def classify(self, texts: list[str], explain: bool = False, level: int | None = None,
                 message_id: str | None = None, keywords: bool = False,
                 text_levels: bool = False) -> list[dict[str, Any]]:
        if not self._model_slots.acquire(blocking=False):
            self.agent.counters.inc("queries_busy")
            raise ValueError(f"busy: {MAX_CONCURRENT_QUERIES} model queries in service, "
                             "try again")
        try:
            # A level given by the query makes the lines journal lines (the journal's
            # MESSAGE names no program), as does a catalog id; a level read from a line's
            # text (text_levels) leaves it a log file's line, whose tag may name a program.
            as_journal = level is not None or message_id is not None
            levels = [level if level is not None or not text_levels else level_in_text(t)
                      for t in texts]
            return self._classify(texts, explain, levels, message_id, keywords, as_journal)
        finally:
            self._model_slots.release()

    def _classify(self, texts: list[str], explain: bool, levels: list[int | None],
                  message_id: str | None, keywords: bool,
                  as_journal: bool) -> list[dict[str, Any]]:
        model = self.agent.slot.current()
        # A model on trial answers without counting the query as the device's traffic.
        probs, anomaly = getattr(model, "classify_unobserved", model.classify)(texts)
        words_anomaly = anomaly
        pipeline = self.agent.pipeline
        # As the pipeline would score such lines (the keywords weigh in on a log file's
        # line whose tag names a program the model has not read, or where asked).
        probs, anomaly = pipeline.weigh_journal(model.manifest, probs, anomaly, levels,
                                                [message_id] * len(texts), texts=texts,
                                                keywords=[keywords] * len(texts),
                                                tagged=[not as_journal] * len(texts))
        why = explain_live(model, texts) if explain else None
        labels = model.manifest.labels
        words_cfg = pipeline.keywords_for(model.manifest)
        levels_on = pipeline.level_evidence.enabled
        out = []
        for i, text in enumerate(texts):
            best, level = int(probs[i].argmax()), levels[i]
            out.append({"text": text, "label": labels[best],
                        "score": round(float(probs[i, best]), 4),
                        "anomaly": round(float(anomaly[i]), 4),
                        "probs": {lab: round(float(p), 4) for lab, p in zip(labels, probs[i],
                                                                            strict=True)}})
            if level is not None:
                out[-1]["level"] = SYSLOG_LEVELS[level] if levels_on \
                    else f"{SYSLOG_LEVELS[level]} (not weighed in: [model.level_evidence] is off)"
            if message_id is not None:
                verdict = pipeline.catalog_verdict(message_id, level)
                out[-1]["catalog"] = (f"{verdict.subject}: an alert" if verdict
                                      else _no_verdict(message_id, level,
                                                       pipeline.catalog_evidence.enabled))
            by_words = (level is None or not levels_on) and \
                words_cfg.weighs(text, keywords, not as_journal)
            if by_words:
                word = words_cfg.found(text)
                out[-1]["keywords"] = f"matched {word!r}" if word is not None else "none matched"
            if level is not None or message_id is not None or by_words:
                out[-1]["words_anomaly"] = round(float(words_anomaly[i]), 4)
            if why is not None:
                out[-1]["why"] = why[i]
        return out

    def ota_doc(self) -> dict[str, Any]:  # OTA (agent/ota)
        ota = self.agent.ota
        if ota is None:
            return {"enabled": False}
        return {"enabled": True, **ota.describe()}


def _no_verdict(message_id: str, level: int | None, enabled: bool) -> str:
    """Why a classify query's catalog id did not count."""
    if not enabled:
        return "not weighed in: [model.catalog_evidence] is off"
    entry = SYSTEMD_CATALOG.get(message_id)
    if entry is None:
        return "an id the catalog table leaves to the words"
    at = "no level" if level is None else SYSLOG_LEVELS[level]
    return f"{entry.subject}: not weighed in at {at} (it counts at notice or worse)"
