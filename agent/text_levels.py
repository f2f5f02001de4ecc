"""The level a line's own text states (``ERROR [main]``, ``[error]``, ``level=warn``),
read for the sources that say their lines carry one (``text_levels = true``).

journald hands the agent the level each program logged a line at, and the agent weighs it
in (:mod:`agent.level_evidence`). A log file or MQTT text has no such field, but many
programs write the level into the line: log4j/logback and Python logging (``2024-05-01
12:00:00,123 ERROR [main] ...``, ``- WARN  [QuorumPeer...] -``, ``ERROR:root:...``), Apache
and nginx error logs (``[error]``, ``[core:warn]``), logfmt and JSON (``level=error``,
``"level":"warn"``). Weighed in as journald's level, it brings the same kind of evidence:
held out on software the model has never read, the 4,302 lines whose text states a level
(ZooKeeper's, Apache's and nginx's own files, mostly) score alert F1 0.712 with it against
0.636 by the words alone (the grep: 0.659; docs/model.md, "A file's own level words"). On
software the model has read it costs (other people's Apache error logs: healthy lines
flagged 12.3 % -> 22.8 %), which is why a source asks for it.

Sources: files and MQTT topics, and a journal's lines that bring no level the agent
weighs — a service's stdout, which journald stores at info — of system users, in a journal
whose fields are trusted. It is opt-in per source: a line's text is whatever its writer
chose, and in a file that is not in such a format an upper-case ``ERROR`` early in a
message would read as a level. The writer gains nothing it did not have — its own words
already move its own line — and cannot reach another source's lines. Reading is bounded:
the first :data:`SCAN_CHARS` characters after the time-and-host head, one regular
expression without nested repetition.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from agent.featurizer import head_end
from agent.sources.base import Line, is_system_uid

SCAN_CHARS = 120  # the level of these formats comes before the message

# syslog numbers (0 emerg .. 7 debug) of the words programs write
_LEVEL_OF = {"emerg": 0, "emergency": 0, "panic": 0, "alert": 1, "crit": 2, "critical": 2,
             "fatal": 2, "severe": 2, "err": 3, "error": 3, "warn": 4, "warning": 4,
             "notice": 5, "info": 6, "debug": 7, "trace": 7, "fine": 7}
_WORDS = "|".join(sorted(_LEVEL_OF, key=len, reverse=True))
_TEXT_LEVEL = re.compile(
    # Apache/nginx and many others: the word in brackets, Apache 2.4 with its module
    rf"\[(?:[a-z_]{{1,32}}:)?(?P<bracketed>{_WORDS})\]"
    # logfmt and JSON
    rf"|\b(?:level|lvl|severity)\"?\s?[=:]\s?\"?(?P<keyed>{_WORDS})\b"
    # log4j, logback, Python logging, Go loggers: an upper-case word standing alone (not
    # ERROR=0 or ERRORS)
    rf"|(?:^|(?<=[\s\[|-]))(?P<upper>{_WORDS.upper()})(?=[\s:\]|])",
    re.IGNORECASE)


def level_in_text(text: str) -> int | None:
    """The syslog level (0..7) the line's text states near its start, or None."""
    start = head_end(text)
    end = min(len(text), start + SCAN_CHARS)
    # A word cut by the window's end is no word ("ERR" of "ERRORS"); one that ends the
    # line is ("INFO" alone).
    window = text[start:end] + (" " if end == len(text) else "\0")
    for found in _TEXT_LEVEL.finditer(window):
        upper = found.group("upper")
        if upper is not None and not upper.isupper():
            continue  # an ordinary word ("error", "Info") in a message is no level
        word = found.group("bracketed") or found.group("keyed") or upper
        return _LEVEL_OF[word.lower()]
    return None


def text_levels_read(source: object) -> bool:
    """Whether a source's config asks for its lines' stated levels and may have them: a
    journal only where its fields are trusted (else a line's uid, and so whether a system
    user wrote it, is the journal writer's claim)."""
    if not getattr(source, "text_levels", False):
        return False
    trusts = getattr(source, "trusts_fields", None)
    return trusts() if callable(trusts) else True


def read_text_levels(lines: Sequence[Line], sources: Collection[str]) -> None:
    """Give each line of ``sources`` that brings no level the level its text states (the
    pipeline then weighs it in as a journal line's). An ordinary user's journal line keeps
    none: as its PRIORITY, a level it states is not weighed (agent.sources.journald)."""
    if not sources:
        return
    for line in lines:
        if line.level is None and line.source in sources and is_system_uid(line.uid):
            line.level = level_in_text(line.text)
