"""Map a real log message to the harvested template that produced it.

Each template becomes a regular expression (literal text escaped, conversions as
wildcards); a message takes the label of the matching template with the most literal
text, so a captured line is labelled by the same reviewed decision as its template.
A message no template explains is labelled by the rules on its own text, at the level
the logger recorded, and its reason says so.

Web servers log each failed client request with the request attached; for those lines
what the client asked for decides (:data:`REQUEST_RULES`) where no template, or only a
template's log level, did: most are a public server's routine (404s, scanners' malformed
requests), refused logins are security, and the server's own trouble (an upstream that
is down or slow) keeps the alert its text and level give it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nanomodel.harvest.overrides import apply_override, line_decision
from nanomodel.harvest.rules import ALERTS, label_template
from nanomodel.realfill import CONVERSION

# A line about one client request: nginx appends ", client: <ip>, server: <name>, ...",
# apache puts "[client <ip>:<port>]" among its leading fields.
CLIENT_REQUEST = re.compile(r", client: \S+, server: |\[client [0-9a-fA-F.:\[\]]+\]")


@dataclass(frozen=True)
class RequestRule:
    name: str
    label: str
    pattern: re.Pattern[str]
    reason: str


REQUEST_RULES = (
    RequestRule(
        "refused-login",
        "security",
        re.compile(
            r"password mismatch|was not found in \"|authentication failure|user \S+ not found"
            r"|access forbidden by rule|client denied by server configuration"
        ),
        "a refused login or a request the server's rules deny",
    ),
    RequestRule(
        "missing-file",
        "normal",
        re.compile(r"No such file or directory|File does not exist|script not found"),
        "a client asked for a file that does not exist (404): a public server's routine",
    ),
    RequestRule(
        "no-index",
        "normal",
        re.compile(r"directory index of .* is forbidden|Cannot serve directory"),
        "a client asked for a directory that has no index (403): routine",
    ),
    RequestRule(
        "bad-request",
        "normal",
        re.compile(
            r"client sent |Invalid (?:method|URI) in request"
            r"|Request header (?:read timeout|exceeds)"
            r"|prematurely closed connection|closed keepalive connection"
        ),
        "a client sent a malformed, oversized or unfinished request (4xx): scanners and "
        "browsers do this all day",
    ),
    RequestRule(
        "no-credentials",
        "normal",
        re.compile(r"no user/password was provided"),
        "a browser's first request to a protected page, before it asks for the password",
    ),
)
WEB_SOURCES = frozenset({"apache2", "nginx", "lighttpd"})


def request_rule(source: str, line: str) -> RequestRule | None:
    """The rule for a web server's line about one client request, if one applies."""
    if source not in WEB_SOURCES or not CLIENT_REQUEST.search(line):
        return None
    for rule in REQUEST_RULES:
        if rule.pattern.search(line):
            return rule
    return None


@dataclass(frozen=True)
class Compiled:
    template: str
    label: str
    reason: str
    origin: str
    pattern: re.Pattern[str]
    literal: int  # characters of literal text: more means a more specific match


def compile_template(template: str, label: str, reason: str, origin: str) -> Compiled:
    parts: list[str] = []
    pos = 0
    literal = 0
    for m in CONVERSION.finditer(template):
        chunk = template[pos : m.start()]
        parts.append(re.escape(chunk))
        literal += len(chunk.strip())
        pos = m.end()
        if m.group(0) == "%%":
            parts.append("%")
        elif m.group("conv") in ("d", "i", "u") and not m.group("name"):
            parts.append(r"-?\d+")
        else:
            parts.append(r".*?")
    tail = template[pos:]
    parts.append(re.escape(tail))
    literal += len(tail.strip())
    # Loggers may cut, pad or add ": <error>" at the end; allow trailing text.
    body = "".join(parts).replace(r"\ ", r"\s+")
    return Compiled(
        template, label, reason, origin, re.compile(body + r"(?:[\s.:].*)?$", re.S), literal
    )


class Matcher:
    """Templates of one or more sources, ready to explain messages."""

    def __init__(self, rows: list[tuple[str, str, str, str]], source: str = "") -> None:
        self.source = source
        self.compiled = sorted((compile_template(*row) for row in rows), key=lambda c: -c.literal)

    def match(self, message: str) -> Compiled | None:
        for c in self.compiled:
            if c.literal >= 6 and c.pattern.match(message):
                return c
        return None

    def label(
        self, message: str, level: str, default_alert: str, line: str = ""
    ) -> tuple[str, str, str]:
        """(label, reason, origin) of a message: its template's decision, else the rules on
        its text. ``origin`` is the ``file:line`` of the template whose label the message
        took, ``""`` when something else decided (a later review of that template decides
        for the message too: ``realtext``).

        ``line`` is the whole logged message (``message`` without the daemon's own stamps
        is what templates match); it says whether the message is about a client request.
        """
        decided = line_decision(self.source, message)
        if decided is not None:
            return decided[0], f"line decision: {decided[1]}", ""
        hit = self.match(message)
        req = request_rule(self.source, line or message)
        if req is not None and (
            hit is None or (hit.reason.startswith("level:") and hit.label != req.label)
        ):
            why = (
                "no template matched"
                if hit is None
                else (f"template {hit.origin} ({hit.template[:60]}) decided by its level only")
            )
            return (
                req.label,
                f"{why}; the client request says: request:{req.name}: {req.reason}",
                "",
            )
        if hit is not None:
            why = f"template {hit.origin} ({hit.template[:60]})"
            if hit.label == "normal":
                # The values can carry the trouble the template does not ("Client %s disconnected:
                # %s." with "No route to host"): an alert meaning in the line itself wins.
                for rule in ALERTS:
                    if rule.pattern.search(message):
                        return (
                            rule.label,
                            f"{why} is normal, but the values say: rule:{rule.name}",
                            "",
                        )
            return hit.label, f"{why}: {hit.reason}", hit.origin
        over = apply_override(self.source, message)
        if over is not None:
            return over[0], f"no template matched; override: {over[1]}", ""
        label, reason = label_template(message, level, default_alert)
        return label, f"no template matched; {reason}", ""
