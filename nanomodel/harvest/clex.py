"""Find log calls in C-family source text and pull out their format strings.

Pure functions over source text: no file access. A *log call* is ``NAME(`` for a
name the caller chooses (``logit``, ``log_error``, ``dev_err``, ``LOG.warn``...).
Its argument text is found by matching parentheses while skipping strings, character
literals and comments; its *format* is the first run of adjacent string literals
(C concatenation, ``"a" "b"``), where string macros (``MACSTR``, ``PRIu64``,
``WPA_EVENT_CONNECTED``) are replaced by their values and gettext wrappers
(``_("...")``, ``N_("...")``) are looked through. Java style ``"a" + x + "b"``
becomes ``a{}b`` (slf4j's placeholder), so one renderer fills both.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# Token kinds: string literal, identifier, punctuation (one char), number.
_TOKEN = re.compile(
    r'(?P<str>(?:L|u8|u|U)?"(?:\\.|[^"\\\n])*")'
    r"|(?P<chr>'(?:\\.|[^'\\\n])*')"
    r"|(?P<cmt>/\*.*?\*/|//[^\n]*)"
    r"|(?P<id>[A-Za-z_][A-Za-z0-9_.]*)"
    r"|(?P<num>\d[\w.]*)"
    r"|(?P<ws>\s+)"
    r"|(?P<p>.)",
    re.S,
)
# printf length macros from <inttypes.h> and friends, and common string macros.
BUILTIN_MACROS: dict[str, str] = {
    **{f"PRI{c}{n}": f"ll{c}" for c in "diuxX" for n in ("64", "MAX")},
    **{f"PRI{c}{n}": c for c in "diuxX" for n in ("8", "16", "32")},
    "PRIuPTR": "lu",
    "PRIxPTR": "lx",
    "PRIiPTR": "li",
    "PRIdPTR": "ld",
    "PRIu64x": "llu",
    "PRI_TIME": "ld",
    "PRI_USEC": "llu",
    "PRI_NSEC": "llu",
    # systemd's own format macros carry their "%" ("#define PID_FMT "%" PRIi32"), unlike
    # <inttypes.h>'s: "process " PID_FMT is "process %i", not "process i"
    "PID_FMT": "%i",
    "UID_FMT": "%u",
    "GID_FMT": "%u",
    "USEC_FMT": "%llu",
    "NSEC_FMT": "%llu",
    "MACSTR": "%02x:%02x:%02x:%02x:%02x:%02x",
    "COMPACT_MACSTR": "%02x%02x%02x%02x%02x%02x",
    "IPSTR": "%d.%d.%d.%d",
    "SIZE_FMT": "zu",
    "TIME_FMT": "ld",
    "NGX_LINEFEED": "",
    "CRLF": "",
}
_GETTEXT = {"_", "N_", "gettext", "dgettext", "Q_", "ngettext", "tr", "TEXT"}
_DEFINE = re.compile(
    r'^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)[ \t]+((?:"(?:\\.|[^"\\\n])*"[ \t]*)+)\s*$', re.M
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "", '"': '"', "\\": "\\", "'": "'", "a": "", "0": ""}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


@dataclass(frozen=True)
class Call:
    """One log call: its name, where it starts, the tokens of its arguments."""

    name: str
    line: int
    args: list[Token]


def tokens(text: str) -> list[Token]:
    """Tokens of ``text`` without whitespace and comments."""
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup or "p"
        if kind in ("ws", "cmt"):
            continue
        out.append(Token(kind, m.group(), m.start()))
    return out


def unquote(literal: str) -> str:
    """The value of one C string literal (escapes decoded, octal/hex dropped)."""
    body = literal[literal.index('"') + 1 : -1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567":
                j = i + 1
                while j < len(body) and j < i + 4 and body[j] in "01234567":
                    j += 1
                i = j
                continue
            if nxt == "x":
                j = i + 2
                while j < len(body) and body[j] in "0123456789abcdefABCDEF":
                    j += 1
                i = j
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def string_macros(text: str) -> dict[str, str]:
    """``#define NAME "value"`` definitions found in ``text`` (values concatenated)."""
    found: dict[str, str] = {}
    for m in _DEFINE.finditer(text):
        found[m.group(1)] = "".join(
            unquote(s) for s in re.findall(r'"(?:\\.|[^"\\\n])*"', m.group(2))
        )
    return found


def find_calls(text: str, names: re.Pattern[str]) -> Iterator[Call]:
    """Each call ``NAME(...)`` whose NAME fully matches ``names``."""
    toks = tokens(text)
    i = 0
    while i < len(toks) - 1:
        tok = toks[i]
        if tok.kind == "id" and toks[i + 1].text == "(" and names.fullmatch(tok.text):
            prev = toks[i - 1].text if i else ""
            depth, j = 0, i + 1
            while j < len(toks):
                if toks[j].text in "([{":
                    depth += 1
                elif toks[j].text in ")]}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            # Skip definitions/prototypes ("void logit(const char *fmt, ...)") and
            # member functions called through another name ("foo.error(").
            if prev not in ("void", "int", "static", "define", "#"):
                yield Call(tok.text, text.count("\n", 0, tok.pos) + 1, toks[i + 2 : j])
            i = j if j > i else i + 1
        else:
            i += 1


def split_args(args: list[Token]) -> list[list[Token]]:
    """Top-level comma-separated arguments."""
    out: list[list[Token]] = [[]]
    depth = 0
    for t in args:
        if t.text in "([{":
            depth += 1
        elif t.text in ")]}":
            depth -= 1
        if t.text == "," and depth == 0:
            out.append([])
        else:
            out[-1].append(t)
    return out


def literal_run(arg: list[Token], macros: dict[str, str]) -> str | None:
    """The string an argument denotes when it is (a concatenation of) literals/macros."""
    parts: list[str] = []
    prev = ""
    for t in arg:
        if t.kind == "num" and prev == "APLOGNO":  # Apache: APLOGNO(01234) -> "AH01234: "
            parts.append(f"AH{t.text}: ")
            continue
        if t.kind == "id":
            prev = t.text
        if t.kind == "id" and t.text == "APLOGNO":
            continue
        if t.kind == "str":
            parts.append(unquote(t.text))
        elif t.kind == "id" and t.text in macros:
            parts.append(macros[t.text])
        elif (t.kind == "id" and t.text in _GETTEXT) or t.text in "()":
            continue
        else:
            return None
    if not parts or not any(t.kind == "str" for t in arg):
        return None
    return "".join(parts)


def java_concat(arg: list[Token]) -> str | None:
    """``"a" + x + "b"`` → ``a{}b``; None when the argument holds no literal."""
    if not any(t.kind == "str" for t in arg):
        return None
    out: list[str] = []
    pending_expr = False
    depth = 0
    for t in arg:
        if t.text in "([{":
            depth += 1
        elif t.text in ")]}":
            depth -= 1
        if depth == 0 and t.text == "+":
            if pending_expr:
                out.append("{}")
                pending_expr = False
            continue
        if t.kind == "str" and depth == 0:
            if pending_expr:
                out.append("{}")
                pending_expr = False
            out.append(unquote(t.text))
        else:
            pending_expr = True
    if pending_expr:
        out.append("{}")
    return "".join(out)


def format_of(call: Call, macros: dict[str, str], java: bool = False) -> tuple[str, int] | None:
    """The call's format string and the index of the argument that holds it.

    The format is the first argument that is entirely literals (C) or that contains a
    literal (Java). Calls that build a journal record (systemd's ``log_struct``) keep
    their text inside ``LOG_MESSAGE(...)``/``LOG_UNIT_MESSAGE(u, ...)``: look there first.
    """
    args = split_args(call.args)
    for idx, arg in enumerate(args):
        if arg and arg[0].kind == "id" and arg[0].text.endswith("_MESSAGE") and len(arg) > 2:
            inner = split_args(arg[2:-1])
            for sub in inner:
                got = literal_run(sub, macros)
                if got is not None:
                    return got, idx
    for idx, arg in enumerate(args):
        got = java_concat(arg) if java else literal_run(arg, macros)
        if got is None:
            continue
        if re.fullmatch(r"[A-Z_]+=.*", got, re.S):  # a journal field, not the message
            continue
        return got, idx
    return None


def level_words(call: Call, before: int) -> list[str]:
    """Identifiers in the arguments before the format (where LOG_ERR etc. live)."""
    args = split_args(call.args)
    return [t.text for arg in args[:before] for t in arg if t.kind == "id"]


def enclosing_function(text: str, pos_line: int) -> str | None:
    """Name of the C function whose body holds line ``pos_line`` (K&R/OpenBSD style)."""
    lines = text.split("\n")
    for i in range(min(pos_line - 1, len(lines) - 1), -1, -1):
        m = re.match(r"^([A-Za-z_]\w*)\(", lines[i])
        if m:
            return m.group(1)
        m = re.match(r"^(?:static\s+)?[\w\s\*]+?\b([A-Za-z_]\w*)\(", lines[i])
        if m and not lines[i].startswith((" ", "\t")) and not lines[i].rstrip().endswith(";"):
            return m.group(1)
    return None
