"""Healthy log lines from logcheck's rules: what Debian's maintainers judged an administrator
need not read, rendered as lines for training.

``logcheck-database`` holds regular expressions, one per message shape, for the lines that
logcheck leaves out of its reports (``ignore.d.paranoid`` and ``ignore.d.server``: ignored
even on a server, at the strictest levels). They are written from real logs of a hundred
and more daemons, many of which our harvest never read (dovecot, exim4, samba, squid,
slapd, ...), so they teach the healthy chatter of software the model has not seen — where
its false alarms come from (docs/model.md, "logcheck's healthy lines").

:func:`expression_template` turns one rule into a template our value filler understands
(``nanomodel.realfill``): literal text stays, an alternation or an optional part is drawn,
and a repeated character class becomes a placeholder (``%d``, ``%s``) whose value the
words before it choose, or a value of the class itself (:func:`_slot`). Rows are stored
by ``nanomodel.harvest.logcheck`` in ``data/real/logcheck/<rule file>.jsonl``;
:func:`logcheck_lines` renders them.
"""

from __future__ import annotations

import random
import re
import string
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from nanomodel.realeval import RealLine
from nanomodel.realfill import fill
from nanomodel.realreview import jsonl_rows
from nanomodel.realtext import DATA, as_in_a_file
from nanomodel.realvalues import HOSTS, IFACES, PATHS, USERS, WORDS

# POSIX bracket classes, as Python's parser reads the characters inside brackets.
_POSIX = {
    "[:alnum:]": "a-zA-Z0-9",
    "[:alpha:]": "a-zA-Z",
    "[:digit:]": "0-9",
    "[:xdigit:]": "0-9a-fA-F",
    "[:space:]": " \\t",
    "[:blank:]": " \\t",
    "[:lower:]": "a-z",
    "[:upper:]": "A-Z",
    "[:punct:]": "!-/:-@\\[-`{-~",
    "[:graph:]": "!-~",
    "[:print:]": " -~",
}
# What a syslog file puts before the program's tag: logcheck's rules all start with it.
_HEAD = re.compile(r"^\^?\((?:\\w|\[\[:alpha:\]\])\{3\} \[ :(?:0-9|\[:digit:\]\]?)\]?\{11\}"
                   r"\|\[0-9T:\.\+-\]\{32\}\) \[\._\[:alnum:\]-\]\+ ")
_PRINTABLE = [chr(c) for c in range(32, 127)]
_DIGITS = set(string.digits)
_HEX = set(string.hexdigits)


def posix_to_python(expression: str) -> str:
    """The rule with its POSIX bracket classes written as Python's ``re`` reads them."""
    for name, chars in _POSIX.items():
        expression = expression.replace(name, chars)
    return expression


def strip_head(expression: str) -> str:
    """The rule without the time-and-host head it matches before the program's tag."""
    return _HEAD.sub("", expression)


_CATEGORY = {
    sre.CATEGORY_DIGIT: r"\d",
    sre.CATEGORY_NOT_DIGIT: r"\D",
    sre.CATEGORY_SPACE: r"\s",
    sre.CATEGORY_NOT_SPACE: r"\S",
    sre.CATEGORY_WORD: r"\w",
    sre.CATEGORY_NOT_WORD: r"\W",
}


def _class_chars(items: list[tuple[Any, Any]]) -> set[str]:
    """The printable characters a bracket class (``IN`` items) accepts."""
    accepted: set[str] = set()
    negate = False
    for op, av in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            accepted.add(chr(av))
        elif op is sre.RANGE:
            accepted.update(chr(c) for c in range(av[0], av[1] + 1))
        elif op is sre.CATEGORY:
            accepted.update(c for c in _PRINTABLE if re.match(_CATEGORY.get(av, "(?!)"), c))
    chosen = set(_PRINTABLE) - accepted if negate else accepted & set(_PRINTABLE)
    return chosen


# Values a class may take when the filler's choice does not fit it (strict renderings).
_VALUES = sorted({*HOSTS, *USERS, *WORDS, *IFACES, *PATHS, "1", "42", "2025-03-04", "1.2.3"})


def _fitting(chars: set[str], lo: int, hi: int, rng: random.Random) -> str:
    """A value of ``lo``..``hi`` characters all in ``chars``: a known word if one fits,
    else characters of the class."""
    fits = [v for v in _VALUES if lo <= len(v) <= hi and set(v) <= chars]
    if fits:
        value = rng.choice(fits)
    else:
        pool = sorted(chars & set(string.ascii_letters + string.digits)) or sorted(chars)
        value = "".join(rng.choice(pool) for _ in range(max(lo, min(hi, rng.randint(3, 8)))))
    return value.replace("%", "%%")


def _slot(chars: set[str], lo: int, hi: int, rng: random.Random, strict: bool = False) -> str:
    """A placeholder (or a value) for ``lo``..``hi`` characters of one class; ``strict``:
    a value that fits the class rather than a placeholder the filler may fill otherwise.

    Digits become ``%d``; a class with no letters beyond hex digits (hex, a number with
    separators, an address class such as ``[.:[:xdigit:]]``) a value of the class drawn
    from :data:`_VALUES` (so an address may read ``1.2.3``: measured so, docs/model.md);
    a few characters of a fixed count themselves; anything else ``%s``."""
    if chars <= _DIGITS:
        if not strict:
            return "%d"
        width = rng.randint(max(lo, 1), max(lo, min(hi, 5)))
        return str(rng.randint(10 ** (width - 1) if width > 1 else 0, 10**width - 1))
    if strict or not chars & set(string.ascii_letters) - _HEX:
        if not chars & set(string.ascii_letters):
            return _fitting(chars & (_DIGITS | set(".-:/")) or chars, lo, hi, rng)
        return _fitting(chars, lo, hi, rng)
    if hi <= 3 and lo == hi:
        letters = sorted(chars & set(string.ascii_letters + string.digits)) or sorted(chars)
        return "".join(rng.choice(letters) for _ in range(lo))
    return "%s"


def _render(items: Any, rng: random.Random, strict: bool = False) -> str:
    out: list[str] = []
    for op, av in items:
        if op is sre.LITERAL:
            out.append("%%" if av == ord("%") else chr(av))
        elif op is sre.ANY:  # one character: in these rules nearly always a literal dot
            out.append(".")
        elif op is sre.NOT_LITERAL:
            out.append("y" if av == ord("x") else "x")
        elif op is sre.IN:
            chars = _class_chars(av)
            pool = sorted(chars & set(string.ascii_letters + string.digits)) or sorted(chars)
            out.append(rng.choice(pool).replace("%", "%%"))
        elif op is sre.SUBPATTERN:
            out.append(_render(av[-1], rng, strict))
        elif op is sre.BRANCH:
            out.append(_render(rng.choice(av[1]), rng, strict))
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            lo, hi, item = av
            hi = min(hi, 64)
            out.append(_repeat(lo, hi, item, rng, strict))
        elif op is sre.GROUPREF:
            out.append("%s")
        # AT (^, $, \b) and lookarounds render as nothing
    return "".join(out)


def _repeat(lo: int, hi: int, item: Any, rng: random.Random, strict: bool) -> str:
    single = len(item) == 1 and item[0][0] in (sre.IN, sre.ANY, sre.NOT_LITERAL)
    if single:
        op, av = item[0]
        if lo == 0 and rng.random() < 0.5 and op is not sre.IN:
            return ""  # ".*": often nothing follows
        chars = _class_chars(av) if op is sre.IN else set(_PRINTABLE) - {" "}
        if len(chars) == 1:
            return next(iter(chars)) * max(lo, 1)
        return _slot(chars, lo, hi, rng, strict)
    if len(item) == 1 and item[0][0] is sre.LITERAL:  # " *", "x?"
        return chr(item[0][1]) * (max(lo, 1) if lo or rng.random() < 0.5 else 0)
    if lo == 0 and rng.random() < 0.5:
        return ""
    times = max(lo, 1) if hi <= 1 else rng.randint(max(lo, 1), min(hi, max(lo, 1) + 2))
    return "".join(_render(item, rng, strict) for _ in range(times))


@cache
def _parsed(expression: str) -> tuple[Any, re.Pattern[str]]:
    python = posix_to_python(expression)
    with warnings.catch_warnings():  # "possible nested set": POSIX classes beside "[" literals
        warnings.simplefilter("ignore", FutureWarning)
        return sre_parse.parse(python), re.compile(python)


def expression_template(expression: str, rng: random.Random, strict: bool = False) -> str:
    """One rendering of a logcheck rule (head stripped) as a printf-style template."""
    return _render(_parsed(expression)[0], rng, strict)


def render_rule(expression: str, rng: random.Random, source: str = "") -> str | None:
    """A line the rule matches: the filler's values where they fit the rule (they read
    like logs), else values made to fit; None when neither matches (a rule our renderer
    cannot follow, e.g. one that refers back to a group)."""
    pattern = _parsed(expression)[1]
    for strict in (False, False, True, True):
        text = fill(expression_template(expression, rng, strict), rng, source).strip()
        if pattern.search(text):
            return text
    return None


def literal_words(expression: str) -> list[str]:
    """The words of three letters or more a rule spells out (how much it says)."""
    body = re.sub(r"\[[^\]]*\]|\\.|\([^)]*\|[^)]*\)", " ", posix_to_python(expression))
    return re.findall(r"[A-Za-z]{3,}", body)


@dataclass(frozen=True)
class LogcheckRule:
    """One stored rule: the expression (head stripped), the rule file, the sources of
    ours whose held-out evaluation it must stay out of, and the label's reason."""

    file: str
    expression: str
    sources: tuple[str, ...]
    reason: str


@cache
def load_rules() -> tuple[LogcheckRule, ...]:
    """Every stored logcheck rule (``data/real/logcheck/``) that our labels do not overrule
    (``nanomodel.harvest.logcheck.Overruler``)."""
    return tuple(
        LogcheckRule(row["file"], row["expression"], tuple(row["sources"]), row["reason"])
        for _, _, row in jsonl_rows(DATA / "logcheck") if not row.get("overruled")
    )


def logcheck_lines(rng: random.Random, per_rule: int, known: Collection[str],
                   trained: Collection[str], prefix_share: float = 0.5) -> list[RealLine]:
    """``(text, "normal", "logcheck:<file>")`` rows: each rule rendered ``per_rule`` times,
    leaving out every rule that belongs to a source in ``known`` (the evaluation's sources)
    but not in ``trained`` (the sources this model may see): a held-out source's phrasing
    must not reach its model through logcheck's rules either."""
    out: list[RealLine] = []
    for rule in load_rules():
        if any(s in known and s not in trained for s in rule.sources):
            continue
        for _ in range(per_rule):
            text = render_rule(rule.expression, rng, rule.sources[0] if rule.sources else "")
            if text is None:
                continue
            out.append((as_in_a_file(text, rng, prefix_share), "normal", f"logcheck:{rule.file}"))
    return out
