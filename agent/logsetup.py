"""Logging for the agent: structured journald entries under systemd, readable stderr otherwise.

Call sites attach structured fields with ``extra=`` (or :func:`log_event`)::

    log.info("source rotated", extra={"device_id": "pump-07", "source": "pump-log"})

Under systemd they become journal fields (``DEVICE_ID=pump-07``, ``SOURCE=pump-log``,
queryable with ``journalctl DEVICE_ID=pump-07``); on a terminal they are appended as
``key=value``. Every handler we install redacts secrets first: values of fields named
like password/token/secret/key, ``name=value`` pairs of such names inside messages,
and passwords in URLs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

IDENTIFIER = "nanofleet-agent"
JOURNAL_SOCKET = "/run/systemd/journal/socket"
REDACTED = "***"

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "warn": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName"}

# Journal fields our handler sets itself; an extra with such a name is renamed.
_RESERVED_JOURNAL_FIELDS = frozenset({
    "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "LOGGER", "THREAD_NAME", "CODE_FILE",
    "CODE_LINE", "CODE_FUNC", "EXCEPTION_TEXT"})

_SECRET_WORDS = frozenset({"password", "passwd", "passphrase", "pwd", "token", "secret", "key",
                           "apikey", "credential", "credentials", "authorization", "cookie"})
_SECRET_SUBSTRINGS = ("password", "passwd", "secret", "token", "apikey", "credential")
# A field that names where a secret lives (key_file=/etc/...) is not the secret itself.
_LOCATION_SUFFIXES = frozenset({"file", "path", "dir"})

# A name starts only where no name character is before it, and its run is taken whole
# (possessive): each run of name characters is tried once. With `\b` every word inside
# `a.a.a...` was a new start scanning to the run's end, quadratic: 64 KB of it in a
# query's reply topic held the GIL for 80 s (review, December 2026).
_NAME_VALUE_RE = re.compile(r"""(?P<name>(?<![\w.-])-*[A-Za-z][\w.-]*+)(?P<sep>\s*[=:]\s*)"""
                            r"""(?P<value>"[^"]*"|'[^']*'|[^\s,;]+)""")
_URL_PASSWORD_RE = re.compile(
    r"(?P<head>(?<![\w+.-])[a-zA-Z][\w+.-]*+://[^/\s:@]*:)[^@\s/]+@")


# ---------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------


def parse_level(level: str | int) -> int:
    """A logging level from ``debug``/``info``/``warning``/``error``/``critical``."""
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}: use one of debug, info, warning, error, critical"
        ) from None


def is_secret_name(name: str) -> bool:
    """True for field names whose values must never be logged (``mqtt_password``,
    ``api-key``, ``Token``...), False for locations such as ``key_file``."""
    lowered = name.lower()
    parts = [p for p in re.split(r"[_\-.\s]+", lowered) if p]
    if parts and parts[-1] in _LOCATION_SUFFIXES:
        return False
    return any(p in _SECRET_WORDS for p in parts) or any(s in lowered for s in _SECRET_SUBSTRINGS)


def redact_value(name: str, value: Any) -> Any:
    """``value`` with secrets replaced: the whole value when ``name`` is secret, else
    secret keys inside dicts/lists and secrets inside strings."""
    if is_secret_name(name):
        return REDACTED
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value("", v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    """Redact ``password=...``/``token: ...`` pairs and URL passwords in free text."""
    text = _URL_PASSWORD_RE.sub(lambda m: f"{m.group('head')}{REDACTED}@", text)

    def repl(m: re.Match[str]) -> str:
        if is_secret_name(m.group("name")):
            return f"{m.group('name')}{m.group('sep')}{REDACTED}"
        return m.group(0)

    return _NAME_VALUE_RE.sub(repl, text)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record, in the order given."""
    return {k: v for k, v in record.__dict__.items()
            if k not in _STANDARD_ATTRS and not k.startswith("_")}


def journal_field_name(name: str) -> str:
    """A valid journal field name: upper case, [A-Z0-9_], not starting with ``_``
    (those are trusted fields journald sets itself) nor a digit, at most 64 chars."""
    cleaned = re.sub(r"[^A-Z0-9_]", "_", name.upper()).lstrip("_")
    if not cleaned or cleaned[0].isdigit():
        cleaned = "F_" + cleaned
    if cleaned in _RESERVED_JOURNAL_FIELDS:
        cleaned = "EXTRA_" + cleaned
    return cleaned[:64]


def field_text(value: Any) -> str:
    """A field value as text: JSON for containers, str() otherwise."""
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str, separators=(",", ":"))
    return str(value)


def _kv(value: Any) -> str:
    text = field_text(value)
    if isinstance(value, Mapping | list | tuple):
        return text  # compact JSON delimits itself
    if not text or any(c.isspace() or c in '="' for c in text):
        return json.dumps(text)
    return text


def stderr_is_journal(environ: Mapping[str, str], stream: TextIO) -> bool:
    """True when ``stream`` is the journal stream systemd connected (``JOURNAL_STREAM``
    is ``device:inode`` of that stream, see systemd.exec(5))."""
    value = environ.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        return False


def running_under_systemd(environ: Mapping[str, str], stream: TextIO) -> bool:
    """True when systemd runs us as a unit: stderr is its journal stream, or it gave us
    an ``INVOCATION_ID`` and journald is listening (a container may set the variable
    without running journald; then every entry would fail to send)."""
    if stderr_is_journal(environ, stream):
        return True
    return bool(environ.get("INVOCATION_ID")) and os.path.exists(JOURNAL_SOCKET)


# ---------------------------------------------------------------------------
# Filter, formatters, journal handler
# ---------------------------------------------------------------------------


class RedactSecrets(logging.Filter):
    """Replaces secrets in the message and the extra fields before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: leave it to the handler's handleError
            message = None
        if message is not None:
            cleaned = redact_text(message)
            if cleaned != message or record.args:
                record.msg, record.args = cleaned, None
        for name, value in extra_fields(record).items():
            setattr(record, name, redact_value(name, value))
        return True


class KeyValueFormatter(logging.Formatter):
    """``2025-01-31T12:00:00.123 INFO agent.pipeline: message key=value ...``.

    With ``journal_prefix`` (stderr already goes to the journal but systemd-python is
    missing) the timestamp is left to journald and a ``<N>`` syslog priority prefix
    carries the level (journald parses it, SyslogLevelPrefix=yes)."""

    def __init__(self, journal_prefix: bool = False) -> None:
        super().__init__()
        self.journal_prefix = journal_prefix

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        extras = " ".join(f"{k}={_kv(v)}" for k, v in extra_fields(record).items())
        if extras:
            text = f"{text} {extras}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        if self.journal_prefix:
            priority = _journal_priority(record.levelno)
            return "\n".join(f"<{priority}>{line}" for line in text.split("\n"))
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        return f"{stamp}.{int(record.msecs):03d} {record.levelname} {record.name}: {text}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers reading stderr."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3), "level": record.levelname.lower(),
            "logger": record.name, "msg": record.getMessage()}
        for name, value in extra_fields(record).items():
            doc.setdefault(name, value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def _journal_priority(levelno: int) -> int:
    if levelno <= logging.DEBUG:
        return 7
    if levelno <= logging.INFO:
        return 6
    if levelno <= logging.WARNING:
        return 4
    if levelno <= logging.ERROR:
        return 3
    return 2


def _journal_handler_class() -> Callable[..., logging.Handler] | None:
    try:
        from systemd.journal import JournalHandler
    except ImportError:
        return None

    class StructuredJournalHandler(JournalHandler):
        """systemd-python's JournalHandler sending only well-formed fields: the
        standard ones plus each ``extra=`` field upper-cased (the stock handler
        forwards every LogRecord attribute as-is, and journald drops lower-case names)."""

        def emit(self, record: logging.LogRecord) -> None:
            try:
                message = record.getMessage()
                fields: dict[str, Any] = dict(self._extra)
                fields.update(
                    PRIORITY=str(_journal_priority(record.levelno)), LOGGER=record.name,
                    THREAD_NAME=record.threadName or "", CODE_FILE=record.pathname,
                    CODE_LINE=record.lineno, CODE_FUNC=record.funcName)
                if record.exc_info:
                    fields["EXCEPTION_TEXT"] = logging.Formatter().formatException(
                        record.exc_info)
                for name, value in extra_fields(record).items():
                    fields[journal_field_name(name)] = field_text(value)
                self.send(message, **fields)
            except Exception:
                self.handleError(record)

    return StructuredJournalHandler


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------

_OURS = "_nanofleet_handler"


def setup_logging(
    level: str | int,
    json_stderr: bool = False,
    *,
    environ: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
    identifier: str = IDENTIFIER,
    fields: Mapping[str, Any] | None = None,
) -> logging.Handler:
    """Configure the root logger once (calling again, e.g. on SIGHUP, replaces our
    handler and level) and return the handler installed:

    - under systemd with systemd-python: a ``systemd.journal.JournalHandler`` sending
      ``SYSLOG_IDENTIFIER=identifier`` and the ``extra=`` fields as journal fields;
    - otherwise a stream handler on stderr: ``key=value`` text, or JSON lines with
      ``json_stderr`` (a ``<N>``-prefixed form when stderr is the journal stream).

    ``fields`` (e.g. ``{"device_id": "pump-07"}``) go into every journal entry
    (``DEVICE_ID=pump-07``); stderr lines leave them out, they would repeat on each line.
    """
    env = os.environ if environ is None else environ
    out = sys.stderr if stream is None else stream
    root = logging.getLogger()
    numeric = parse_level(level)
    handler: logging.Handler
    journal_cls = _journal_handler_class() if running_under_systemd(env, out) else None
    if journal_cls is not None:
        static = {journal_field_name(k): field_text(v) for k, v in (fields or {}).items()}
        handler = journal_cls(**{**static, "SYSLOG_IDENTIFIER": identifier})
    else:
        handler = logging.StreamHandler(out)
        if json_stderr:
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(KeyValueFormatter(journal_prefix=stderr_is_journal(env, out)))
    handler.addFilter(RedactSecrets())
    setattr(handler, _OURS, True)
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)
    return handler


def log_event(logger: logging.Logger, level: str | int, msg: str, **fields: Any) -> None:
    """``logger.log`` with structured fields; a field clashing with a LogRecord
    attribute (``name``, ``msg``...) is kept as ``<name>_field`` instead of raising."""
    extra = {(f"{k}_field" if k in _STANDARD_ATTRS else k): v for k, v in fields.items()}
    logger.log(parse_level(level), msg, extra=extra, stacklevel=2)
