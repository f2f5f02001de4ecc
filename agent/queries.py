"""Technician queries: one command table serving MQTT request/response and the local CLI.

``answer`` never raises: bad JSON, unknown commands and bad arguments become an
error response, and the daemon carries on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.journal_catalog import parse_message_id
from agent.level_evidence import SYSLOG_LEVELS, SyslogLevel
from contract.messages import QueryResponse, format_validation_error, parse_query

log = logging.getLogger("nanofleet.agent.queries")


class QueryTarget(Protocol):
    def status_doc(self) -> dict[str, Any]: ...
    def models_doc(self) -> list[dict[str, Any]]: ...
    def sources_doc(self) -> list[dict[str, Any]]: ...
    def metrics_doc(self) -> dict[str, Any]: ...
    def recent_alerts(self) -> list[dict[str, Any]]: ...
    def mutes_doc(self) -> dict[str, Any]: ...
    def classify(self, texts: list[str], explain: bool = False, level: int | None = None,
                 message_id: str | None = None, keywords: bool = False,
                 text_levels: bool = False) -> list[dict[str, Any]]: ...
    def ota_doc(self) -> dict[str, Any]: ...  # OTA (agent/ota)


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecentAlertsArgs(NoArgs):
    since: float | None = Field(default=None, description="Only alerts at/after this Unix time.")
    label: str | None = Field(default=None, description="Only alerts with this label.")
    limit: int = Field(default=50, ge=1, le=1000, description="Newest N alerts (at most "
                       "256 KiB of them: ask with since= for older ones).")


class ClassifyArgs(NoArgs):
    text: str | list[str] = Field(description="A line, or up to 256 lines, to classify.")
    explain: bool = Field(default=False, description="Also name the words that drove each "
                          "decision (`why`: word and weight, positive towards an alert).")
    level: SyslogLevel | None = Field(
        default=None, description="Score the lines as if their program had logged them at "
        "this syslog level, as the journal tells the agent ([model.level_evidence]); the "
        "answer also gives the words' own anomaly.")
    message_id: str | None = Field(
        default=None, pattern=r"^([0-9a-fA-F]{32}|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-"
        r"[0-9a-fA-F]{12})$", description="Score the lines as if the service manager had "
        "tagged them with this journal catalog id (MESSAGE_ID: 32 hex digits, or the UUID "
        "form), as the journal tells the agent ([model.catalog_evidence]); it counts only "
        "with a level of notice or worse, as in the journal.")
    keywords: bool = Field(
        default=False, description="Score the lines as a source with `keyword_evidence = "
        "true` would ([model.keyword_evidence]: software the model has never read); lines "
        "given a level are left to the level, as in the pipeline. Without it, a line whose "
        "syslog tag names a program the model has not read is weighed as a log file's is "
        "(not with level or message_id: such a line is a journal line, whose message names "
        "no program). The answer also gives the words' own anomaly.")
    text_levels: bool = Field(
        default=False, description="Score the lines as a source with `text_levels = true` "
        "would: the level each line states in its text (log4j 'ERROR [main]', Apache's "
        "'[error]', level=warn) is weighed in as a journal line's ([model.level_evidence]); "
        "a level given with `level` wins.")

    def texts(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else self.text


MAX_CLASSIFY_LINES = 256
MAX_ALERTS_ANSWER_BYTES = 256 * 1024  # recent_alerts: the newest alerts that fit
MAX_CLASSIFY_CHARS = 8192
MAX_EXPLAIN_LINES = 32  # explaining walks each line's n-grams in Python: ~1 ms a line


def _recent(target: QueryTarget, args: RecentAlertsArgs) -> list[dict[str, Any]]:
    alerts = target.recent_alerts()
    if args.since is not None:
        alerts = [a for a in alerts if a["ts"] >= args.since]
    if args.label is not None:
        alerts = [a for a in alerts if a["item"]["label"] == args.label]
    # The newest that fit the answer's budget: 1,000 alerts of long lines were 25 MB, and
    # eight such answers at once pushed the agent past its unit's MemoryMax (review,
    # December 2026); over MQTT they never fitted a packet.
    picked: list[dict[str, Any]] = []
    size = 0
    for alert in reversed(alerts[-args.limit:]):
        size += len(json.dumps(alert)) + 1  # as encoded, escapes and all
        if size > MAX_ALERTS_ANSWER_BYTES and picked:
            break
        picked.append(alert)
    return picked[::-1]


def _classify(target: QueryTarget, args: ClassifyArgs) -> list[dict[str, Any]]:
    texts = args.texts()
    if not texts or len(texts) > MAX_CLASSIFY_LINES:
        raise ValueError(f"give 1 to {MAX_CLASSIFY_LINES} lines")
    if any(len(t) > MAX_CLASSIFY_CHARS for t in texts):
        raise ValueError(f"each line must be at most {MAX_CLASSIFY_CHARS} characters")
    if args.explain and len(texts) > MAX_EXPLAIN_LINES:
        raise ValueError(f"explain at most {MAX_EXPLAIN_LINES} lines at a time")
    level = None if args.level is None else SYSLOG_LEVELS.index(args.level)
    message_id = None if args.message_id is None else parse_message_id(args.message_id)
    return target.classify(texts, explain=args.explain, level=level, message_id=message_id,
                           keywords=args.keywords, text_levels=args.text_levels)


Handler = Callable[[QueryTarget, Any], Any]
COMMANDS: dict[str, tuple[type[BaseModel], Handler, str]] = {
    "status": (NoArgs, lambda t, a: t.status_doc(), "agent state, version, uptime, health"),
    "models": (NoArgs, lambda t, a: t.models_doc(), "live models per slot"),
    "sources": (NoArgs, lambda t, a: t.sources_doc(), "sources and their positions"),
    "metrics": (NoArgs, lambda t, a: t.metrics_doc(), "counters and gauges"),
    "recent_alerts": (RecentAlertsArgs, _recent, "recent alerts (since, label, limit)"),
    "mutes": (NoArgs, lambda t, a: t.mutes_doc(),
              "alert mutes in force (message shapes the fleet server silenced here)"),
    "classify": (ClassifyArgs, _classify, "run the live model on text (explain=true: why; "
                 "level=err: as if logged at that level; keywords=true: as a source with "
                 "keyword_evidence)"),
    "ota": (NoArgs, lambda t, a: t.ota_doc(), "model update state (OTA)"),  # OTA (agent/ota)
    "help": (NoArgs, lambda t, a: {k: v[2] for k, v in COMMANDS.items()}, "this list"),
}


def answer(target: QueryTarget, payload: bytes) -> QueryResponse:
    try:
        request = parse_query(payload)
    except ValueError as exc:
        return QueryResponse(ok=False, error=str(exc))
    spec = COMMANDS.get(request.cmd)
    if spec is None:
        # Cut: the answer must not echo a 60 KB name twice.
        return QueryResponse(ok=False, cmd=request.cmd[:64],
                             error=f"unknown command {request.cmd[:64]!r}; try: "
                             f"{', '.join(COMMANDS)}")
    args_model, handler, _ = spec
    try:
        args = args_model.model_validate(request.args)
    except ValidationError as exc:
        return QueryResponse(ok=False, cmd=request.cmd,
                             error=f"bad arguments: {format_validation_error(exc)}")
    try:
        return QueryResponse(ok=True, cmd=request.cmd, result=handler(target, args))
    except ValueError as exc:
        return QueryResponse(ok=False, cmd=request.cmd, error=str(exc))
    except Exception as exc:
        log.exception("query %s failed", request.cmd)
        return QueryResponse(ok=False, cmd=request.cmd, error=f"internal error: {exc}")
