"""The fleet server's log lines: one record, one line, whatever a device put in it.

Devices choose text the server logs (a refused report's field names, an artifact path, an
OTA reason in a rollout's log line). Written raw, a ``\\n`` in it started a forged line
("operator token 'admin' revoked by admin"), which journald's stream splits into an entry
of its own, and escape codes drove the terminal of whoever ran ``tail -f`` (review,
December 2026). :class:`EscapingFormatter` writes every character that is not printable
as its Python escape (``\\n``, ``\\x1b``, ``\\u202e``): nothing is lost, unlike
``contract.display.printable``, which shows it as ``?`` and is for operators' screens.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def escaped(text: str) -> str:
    """``text`` with each character that is not printable (``str.isprintable``: controls,
    line and paragraph separators, bidi and other format characters) as its escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


class EscapingFormatter(logging.Formatter):
    """``logging.Formatter`` whose message part is :func:`escaped`, and whose traceback
    and stack lines are escaped one by one and indented: a record's first line is the
    only one at the margin, so no line within it can pass for a record of its own."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escaped(super().formatMessage(record))

    def format(self, record: logging.LogRecord) -> str:
        head, _, rest = super().format(record).partition("\n")
        if not rest:
            return head
        return head + "".join(f"\n  {escaped(line)}" for line in rest.split("\n"))


def install(level: str) -> None:
    """The server's logging: the root logger at ``level`` writing to stderr through one
    :class:`EscapingFormatter` (uvicorn's loggers propagate to it: ``server run`` gives
    uvicorn no log config of its own)."""
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
