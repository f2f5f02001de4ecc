"""The source plug-in interface: a thread that turns something into bounded text lines.

A source pushes :class:`Line` objects into the pipeline through a
:class:`LineSink`. Each line carries an opaque ``checkpoint``: the position to
resume from *after* this line. The pipeline persists a source's checkpoint only
once the line's result is durable (in the spool), in the same transaction, so a
restart — even after kill -9 — neither re-reads a committed line nor skips one.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from agent.metrics import Counters

log = logging.getLogger("nanofleet.agent.sources")


# The highest uid of a system user (login.defs' SYS_UID_MAX): above it, an ordinary
# user's process, whose claims about its program name and level are not weighed.
SYSTEM_UID_MAX = 999


def is_system_uid(uid: int | None) -> bool:
    """Whether the kernel says root, a system user or the kernel itself (None: journald
    gives the kernel's entries no ``_UID``) logged a line."""
    return uid is None or 0 <= uid <= SYSTEM_UID_MAX


@dataclass(slots=True)
class Line:
    source: str
    text: str
    ts: float
    truncated: bool = False
    checkpoint: str | None = None
    # The syslog level the program logged it at (0 emerg .. 7 debug), where the source
    # knows it (journald's PRIORITY); None elsewhere (agent.level_evidence).
    level: int | None = None
    # The user id of the process that logged it, where the kernel says (journald's _UID,
    # which no process can forge, unlike the identifier in the text); None elsewhere, and
    # for journal files whose writer is not trusted (JournaldSourceConfig.trust_fields).
    # Alerts group per uid, so an ordinary user's lines cannot stand in for root's.
    uid: int | None = None
    # The journal catalog id its owner tagged the entry with (journald's MESSAGE_ID of PID 1
    # as root, or of systemd-coredump's service for a crash); None elsewhere
    # (agent.journal_catalog.trusted_message_id).
    message_id: str | None = None
    # Called by the pipeline once this line's result is committed: a source that cannot
    # re-read (MQTT) acknowledges its message to the broker only then.
    ack: Callable[[], None] | None = None
    # The program the source says logged it (journald's SYSLOG_IDENTIFIER, the logger's
    # claim); None where the source does not say (a log file's line may name it in its
    # tag: agent.keyword_evidence).
    program: str | None = None


@dataclass(frozen=True, slots=True)
class Batching:
    """How the consumer of a sink batches lines: a batch runs once ``min_lines`` wait,
    or once the oldest waiting line was noticed ``max_wait_s`` ago. A source that can
    choose when to read (a file) sizes its read windows by it, so that one read brings
    one batch instead of every write waking two threads."""

    min_lines: int = 1
    max_wait_s: float = 0.0


class LineSink(Protocol):
    # Read by sources that choose when to read (see agent.sources.windows).
    batching: Batching

    def put(self, line: Line, can_wait: bool = False) -> bool:
        """Queue a line without waiting; False when full or stopping. Back-pressure
        (waiting for room) is done by :meth:`Source.emit`, which can honour stop();
        ``can_wait``: the caller will retry, so room kept for those that cannot is not
        its."""
        ...

    def put_many(self, lines: Sequence[Line], since: float) -> int:
        """Queue the first lines of ``lines`` that fit, without waiting; how many did.
        ``since`` (``time.monotonic()``) is when the source noticed them: their batch
        deadline counts from then. The consumer is woken once, not per line."""
        ...


def sanitize(raw: bytes, max_bytes: int, counters: Counters) -> tuple[str, bool]:
    """Bound and decode one raw line: cut at ``max_bytes`` (counted as
    ``lines_truncated``) and replace invalid UTF-8 (counted as ``lines_invalid_utf8``).
    Returns (text, truncated)."""
    truncated = len(raw) > max_bytes
    if truncated:
        counters.inc("lines_truncated")
        raw = _cut_partial_char(raw[:max_bytes])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        counters.inc("lines_invalid_utf8")
        text = raw.decode("utf-8", errors="replace")
    return text.rstrip("\r\n"), truncated


def _cut_partial_char(raw: bytes) -> bytes:
    """Drop a multi-byte character split by truncation: a cut is not bad input."""
    for i in range(1, min(4, len(raw)) + 1):
        b = raw[-i]
        if b & 0xC0 == 0x80:  # continuation byte: keep looking for the lead byte
            continue
        if b >= 0xC0:
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return raw[:-i] if need > i else raw
        return raw
    return raw


class Source(ABC):
    """A line source. Subclasses set ``kind`` and implement ``_run``."""

    kind: ClassVar[str]
    # Longest sleep between retries while the sink is full (see emit).
    BACKPRESSURE_POLL_MAX_S: ClassVar[float] = 0.02

    def __init__(self, name: str, sink: LineSink, counters: Counters, max_line_bytes: int) -> None:
        self.name = name
        self.sink = sink
        self.counters = counters
        self.max_line_bytes = max_line_bytes
        self.lines_read = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, checkpoint: str | None) -> None:
        """Start reading, resuming after ``checkpoint`` (None: first run)."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run_guarded, args=(checkpoint,), name=f"source-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0, keep_open: bool = False) -> None:
        """Stop reading. ``keep_open``: keep what the lines already queued still need
        until :meth:`close` (an MQTT source's connection, which acknowledges them once
        the pipeline has committed them); the others hold nothing and ignore it."""
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self, timeout: float = 5.0) -> None:  # noqa: B027  (an optional hook)
        """After the pipeline drained the lines of a ``stop(keep_open=True)``."""

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def describe(self) -> dict[str, Any]:
        """What `query sources` shows about this source."""
        return {"name": self.name, "kind": self.kind, "alive": self.alive(),
                "lines_read": self.lines_read, "last_error": self.last_error}

    def emit(self, raw: bytes, ts: float, checkpoint: str | None, block: bool = True,
             level: int | None = None, uid: int | None = None,
             message_id: str | None = None, ack: Callable[[], None] | None = None,
             program: str | None = None) -> bool:
        """Bound, decode and queue one line. ``block=True`` waits while the sink is full
        (back-pressure) until there is room or this source is stopped; it polls rather
        than blocking inside the sink so that stop() is prompt. ``block=False`` returns
        False at once when the sink is full (the caller counts the drop). ``level``: the
        syslog level the program logged it at, ``uid`` the user who logged it and
        ``message_id`` its journal catalog id, when the source knows them; ``ack`` is
        called once the line is committed (:attr:`Line.ack`); ``program`` the program the
        source says logged it (:attr:`Line.program`)."""
        text, truncated = sanitize(raw, self.max_line_bytes, self.counters)
        line = Line(self.name, text, ts, truncated, checkpoint, level, uid, message_id, ack,
                    program)
        ok = self.sink.put(line, can_wait=block)
        delay = 0.001
        while not ok and block and not self._stop.is_set():
            self._stop.wait(delay)
            delay = min(delay * 2, self.BACKPRESSURE_POLL_MAX_S)
            ok = self.sink.put(line, can_wait=True)
        if ok:
            self.lines_read += 1
            self.counters.inc("lines_in")
        return ok

    def emit_many(self, raws: Sequence[tuple[bytes, str | None]], ts: float,
                  since: float) -> bool:
        """Like :meth:`emit` (``block=True``) for the lines of one read: queued together,
        so the consumer wakes once for them. ``raws`` are (raw line, checkpoint) pairs;
        ``since`` is when the source noticed the data (see :meth:`LineSink.put_many`).
        False when stopped before all were queued (those queued keep their checkpoints,
        so nothing is lost or repeated)."""
        if not raws:
            return True
        limit, counters, name = self.max_line_bytes, self.counters, self.name
        lines = []
        for raw, checkpoint in raws:
            text, truncated = sanitize(raw, limit, counters)
            lines.append(Line(name, text, ts, truncated, checkpoint))
        done, delay = 0, 0.001
        while True:
            n = self.sink.put_many(lines[done:] if done else lines, since)
            if n:
                done += n
                self.lines_read += n
                counters.inc("lines_in", n)
            if done >= len(lines):
                return True
            if self._stop.is_set():
                return False
            self._stop.wait(delay)
            delay = min(delay * 2, self.BACKPRESSURE_POLL_MAX_S)

    def _run_guarded(self, checkpoint: str | None) -> None:
        try:
            self._run(checkpoint)
        except Exception as exc:  # a source failing must not take the daemon down
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.counters.inc("source_errors")
            log.exception("source %s stopped: %s", self.name, exc)

    @abstractmethod
    def _run(self, checkpoint: str | None) -> None:
        """Read until ``self._stop`` is set."""

    def _wake(self) -> None:  # noqa: B027  (an optional hook, empty by default)
        """Interrupt a blocking wait so stop() is prompt; override where needed."""
