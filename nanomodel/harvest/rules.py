"""Labelling rules for harvested message templates: "would a technician want to be told?"

The rules are read in order and the first that matches decides; each carries the reason
written next to every template it labels (``rule:<name>``), so a reviewer can find all
templates one rule decided and challenge the rule rather than thousands of lines.
Per-template decisions that no rule captures live in
:mod:`nanomodel.harvest.overrides` and win over everything here.

Order (see LABELLING.md):

1. ``RECOVERY`` (in :mod:`nanomodel.harvest.ruleset`) — a message saying a problem
   ended or did not happen is normal ("back to normal", "0 errors", "no longer").
2. ``ALERTS`` (same module) — meanings a technician must hear about whatever level the code logs
   them at (failed logins at info, under-voltage, I/O errors, segfaults...).
3. ``CHATTER_ALWAYS`` and, for texts without a failure word, ``CHATTER`` — routine
   events that look alarming to a keyword rule or are logged at
   error level although nothing is wrong (a client hanging up, a scanner, a config
   deprecation nag).
4. The code's level: error and worse, or a warning/info that reports a failure → the
   source's default category, refined by ``CATEGORY_HINTS``; everything else → normal.
"""

from __future__ import annotations

import re

from nanomodel.harvest.ruleset import ALERTS, RECOVERY, Rule, _r

LABELS = (
    "normal",
    "hardware",
    "thermal",
    "power",
    "network",
    "storage",
    "security",
    "software",
    "sensor",
)


CHATTER_ALWAYS = [
    _r(
        "client-hangup",
        "normal",
        "a client ended its session or timed out: routine",
        [
            r"connection (closed|reset) by",
            r"received disconnect",
            r"disconnected from",
            r"bye bye",
            r"client .*(disconnected|closed the connection|has exceeded timeout|has closed)",
            r"socket error on client",
            r"(client|peer|remote) (has )?(closed|disconnected|hung up|went away)",
            r"closed connection",
            r"connection closed",
            r"Disconnecting",
            r"Client %s disconnected",
            r"client disconnected",
            r"lost connection after",
            r"timeout after .* from",
            r"timeout, client not responding",
            r"idle timeout",
            r"client timed out",
            r"Timeout before authentication",
            r"expiring session",
            r"Conn(ection)? closed",
            r"EOF on client",
            r"client prematurely closed",
            r"closed keepalive",
            r"keepalive timeout",
        ],
    ),
    _r(
        "scanner-noise",
        "normal",
        "what scanners and odd clients cause on any reachable service: noise, not a fault",
        [
            r"did not receive identification string",
            r"kex_exchange_identification",
            r"banner exchange",
            r"bad protocol version",
            r"protocol mismatch",
            r"unable to negotiate",
            r"no matching (key exchange|host key|cipher|mac|kex|compression)",
            r"invalid format",
            r"not a valid ssh",
            r"client sent (invalid|plain)",
            r"SSL_do_handshake",
            r"TLS handshake",
            r"ssl handshake",
            r"peer closed",
            r"unknown command",
            r"unrecognized command",
            r"invalid request",
            r"client sent too",
            r"request (line|header) too long",
            r"client intended to send too large",
        ],
    ),
    _r(
        "config-advice",
        "normal",
        "configuration advice, not a fault of the device",
        [
            r"deprecated",
            r"obsolete",
            r"will be removed",
            r"is not recommended",
            r"consider using",
            r"please (use|update|migrate)",
            r"ignoring (unknown|duplicate)",
            r"not supported by this build",
            r"unknown (option|key name|lvalue|section)",
            r"no longer supported",
        ],
    ),
]

# Routine events; they apply only when the text reports no failure ("Lease lost" is not chatter).
CHATTER = [
    _r(
        "lifecycle",
        "normal",
        "a service starting, stopping or reloading: routine",
        [
            r"^(%\{\w+\}: )?(Started|Starting|Stopped|Stopping|Reached target|Listening on)\b",
            r"^(%\{\w+\}: )?Finished\b",
            r"^(%\{\w+\}: )?(Reloading|Reloaded|Mounted|Unmounted|Created slice|Removed slice)\b",
            r"^(%\{\w+\}: )?(Deactivated successfully|Consumed|Succeeded)\b",
            r"server listening",
            r"exiting on signal",
            r"received (signal|SIG)",
            r"shutting down",
            r"caught (SIGTERM|signal)",
            r"terminating on signal",
            r"version \S+ start",
            r"\bstarted\b",
            r"\bstarting\b",
            r"\bready\b",
            r"up and running",
        ],
    ),
    _r(
        "sessions",
        "normal",
        "a normal login, session or connection",
        [
            r"accepted (password|publickey|keyboard|hostbased|gssapi|%s)",
            r"session (opened|closed)",
            r"new (client|connection|session|user|seat)",
            r"connection from",
            r"connect from",
            r"logged (in|out)",
            r"login successful",
            r"user logged",
            r"removed session",
            r"new session",
            r"\bopened\b",
            r"\bauthenticated\b",
            r"successfully authenticated",
            r"postponed",
        ],
    ),
    _r(
        "net-chatter",
        "normal",
        "routine network chatter (leases, syncs, links, addresses)",
        [
            r"\blease\b",
            r"\bDHCP(DISCOVER|OFFER|REQUEST|ACK|INFORM|RELEASE|DECLINE)?\b",
            r"renew",
            r"rebind",
            r"bound to",
            r"selected source",
            r"synchroni[sz]",
            r"time server",
            r"clock (step|wrong by)",
            r"adjusting",
            r"link (is )?up",
            r"link becomes ready",
            r"carrier",
            r"state change",
            r"activation",
            r"link connected",
            r"\bis up\b",
            r"associated",
            r"authenticated",
            r"completed",
            r"connected",
            r"joining",
            r"leaving",
            r"registered",
            r"announc",
            r"new address",
            r"address (added|removed|configured)",
            r"gained",
            r"\bprobing\b",
            r"neighbor",
            r"resolved",
        ],
    ),
    _r(
        "success",
        "normal",
        "reports an action that worked",
        [
            r"success",
            r"\bdone\b",
            r"\bok\b",
            r"completed",
            r"\bsaved\b",
            r"\bloaded\b",
            r"\bupdated\b",
            r"\benabled\b",
            r"\bcreated\b",
            r"\bremoved\b",
            r"\bfound\b",
            r"\bsent\b",
            r"\bwritten\b",
            r"\bchanged\b",
        ],
    ),
]

FAILURE_WORDS = re.compile(
    "|".join(
        [
            r"\bfail",
            r"\bproblem",
            r"\bdied\b",
            r"does not match",
            r"\bcorrupt",
            r"%m",
            r"\bbusted\b",
            r"\berror",
            r"\bunable\b",
            r"\bcannot\b",
            r"can't",
            r"could not",
            r"couldn't",
            r"\binvalid\b",
            r"refused",
            r"time(d)? ?out",
            r"\blost\b",
            r"\bdenied\b",
            r"\bbad\b",
            r"not found",
            r"\bmissing\b",
            r"\bwrong\b",
            r"\bbroken\b",
            r"\bunexpected\b",
            r"\bexceed",
            r"\bmismatch",
            r"\bfault",
            r"not available",
            r"no memory",
            r"out of memory",
            r"cannot allocate",
            r"exception",
            r"\bnot up\b",
            r"unavailable",
            r"\bno \w+ available",
            r"\bunreachable",
            r"\bdown\b",
            r"\bno (route|carrier|response|reply)",
            r"\btoo (many|large|long)",
        ]
    ),
    re.I,
)

CATEGORY_HINTS = [
    _r(
        "hint-software",
        "software",
        "",
        [r"\bsystem bus\b", r"\bd-?bus\b", r"\bmemory\b", r"\bthread", r"\bfork\b"],
    ),
    _r(
        "hint-storage",
        "storage",
        "",
        [
            r"\bdisk\b",
            r"\bsd[a-z]\b",
            r"mmcblk",
            r"\bnvme",
            r"\bfile ?system",
            r"\bmount",
            r"\bblock",
            r"\bsector",
            r"\bjournal file",
            r"\bext[234]\b",
            r"\bvfat\b",
            r"\bswap\b",
            r"\bpartition",
        ],
    ),
    _r(
        "hint-network",
        "network",
        "",
        [
            r"\bnetwork",
            r"\bdns\b",
            r"\bdhcp",
            r"\blease\b",
            r"\binterface\b",
            r"\blink\b",
            r"\broute",
            r"\bsocket",
            r"\bconnect",
            r"\bbroker",
            r"\bresolv",
            r"\bhost ?name",
            r"\baddress",
            r"\bgateway",
            r"\bwifi",
            r"\bwlan",
            r"\bssid",
            r"\bntp\b",
            r"\bserver\b.*(unreach|time)",
            r"\bpeer\b",
            r"\btls\b",
            r"\bssl\b",
            r"\bhandshake",
        ],
    ),
    _r(
        "hint-hardware",
        "hardware",
        "",
        [
            r"\busb\b",
            r"\bpci",
            r"\bi2c\b",
            r"\bspi\b",
            r"\bgpio",
            r"\bfirmware",
            r"\bcontroller",
            r"\badapter",
        ],
    ),
]


def level_fallback(
    text: str, level: str, default_alert: str, hints: bool = True
) -> tuple[str, str]:
    """Label by the code's level when no rule matched, with the reason."""
    failing = FAILURE_WORDS.search(text) is not None
    if level in ("error", "crit") or (level in ("warning", "notice", "info") and failing):
        label = default_alert
        for hint in CATEGORY_HINTS if hints else []:
            if hint.pattern.search(text):
                label = hint.label
                break
        why = (
            f"logged at {level}" if level in ("error", "crit") else f"a failure reported at {level}"
        )
        return label, f"level: {why}; category {label} from the subject or the source's default"
    return "normal", f"level: {level} status message without a failure"


def label_template(
    text: str, level: str, default_alert: str, hints: bool = True
) -> tuple[str, str]:
    """(label, reason) for one template (printf text) logged at ``level``."""
    failing = FAILURE_WORDS.search(text) is not None
    # Routine-event words ("found", "started") do not outweigh a message the code logs as an error.
    routine = [] if failing or level in ("error", "crit") else CHATTER
    for rule in RECOVERY + ALERTS + CHATTER_ALWAYS + routine:
        if rule.pattern.search(text):
            return rule.label, f"rule:{rule.name}: {rule.reason}"
    return level_fallback(text, level, default_alert, hints)


__all__ = [
    "ALERTS",
    "CATEGORY_HINTS",
    "CHATTER",
    "CHATTER_ALWAYS",
    "FAILURE_WORDS",
    "LABELS",
    "RECOVERY",
    "Rule",
    "label_template",
    "level_fallback",
]
