"""Map a real log message to the harvested template that produced it.

Each template becomes a regular expression (literal text escaped, conversions as
wildcards); a message takes the label of the matching template with the most literal
text, so a captured line is labelled by the same reviewed decision as its template.
A message no template explains is labelled by the rules on its own text, at the level
the logger recorded, and its reason says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nanomodel.harvest.overrides import apply_override
from nanomodel.harvest.rules import ALERTS, label_template
from nanomodel.realfill import CONVERSION


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

    def label(self, message: str, level: str, default_alert: str) -> tuple[str, str]:
        """(label, reason) of a message: its template's decision, else the rules on its text."""
        hit = self.match(message)
        if hit is not None:
            why = f"template {hit.origin} ({hit.template[:60]})"
            if hit.label == "normal":
                # The values can carry the trouble the template does not ("Client %s disconnected:
                # %s." with "No route to host"): an alert meaning in the line itself wins.
                for rule in ALERTS:
                    if rule.pattern.search(message):
                        return rule.label, f"{why} is normal, but the values say: rule:{rule.name}"
            return hit.label, f"{why}: {hit.reason}"
        over = apply_override(self.source, message)
        if over is not None:
            return over[0], f"no template matched; override: {over[1]}"
        label, reason = label_template(message, level, default_alert)
        return label, f"no template matched; {reason}"
