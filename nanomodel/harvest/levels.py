"""Reading a log call's level from its name and its level constant (LOG_ERR, KERN_WARNING,
MSG_INFO, APLOG_STARTUP, openvpn's M_*/D_* flags...)."""

from __future__ import annotations

import re

_LEVEL_WORDS = [
    (
        re.compile(
            r"(?i)(^|_)(debug|dbg|trace|excessive|msgdump|verbose_debug)\d?$|^DBG$|^_LOG[DT]"
            # opensm's levels above its default ERROR|INFO
            r"|^OSM_LOG_(VERBOSE|FUNCS|FRAMES|ROUTING)$"
        ),
        "debug",
    ),
    (
        re.compile(r"(?i)(^|_)(emerg|emergency|alert|crit|critical|fatal|panic|die)$|^LOG_FATAL$"),
        "crit",
    ),
    # mcelog's Lprintf/Eprintf/SYSERRprintf all go to syslog at LOG_ERR
    (
        re.compile(
            r"(?i)(^|_)(err|error|errors|perror|errx|nonfatal)$|^_LOGE|(?-i:^(L|E|SYSERR)printf$)"
        ),
        "error",
    ),
    (re.compile(r"(?i)(^|_)(warn|warning|warnx)$|^_LOGW"), "warning"),
    (re.compile(r"(?i)(^|_)(notice|client|startup)$|^_LOGN"), "notice"),
    (
        re.compile(
            r"(?i)(^|_)(info|infox|information|message|show_parms)$|^_LOGI|^(logit|verbose)$"
        ),
        "info",
    ),
]


def word_level(word: str) -> str | None:
    """The level a call name or level constant denotes (``LOG_ERR`` → error)."""
    if word.startswith(
        "D_"
    ):  # openvpn's D_* flags: errors show at default verbosity, the rest is chatter
        return (
            "error"
            if word.endswith("ERRORS")
            else ("debug" if re.search(r"DEBUG|LOW|MEDIUM", word) else "info")
        )
    if word == "M_FATAL":
        return "crit"
    if word in ("M_ERR", "M_ERRNO", "M_NONFATAL"):
        return "error"
    if word == "M_USAGE":
        return "debug"  # command-line usage errors, never in a log
    for pattern, level in _LEVEL_WORDS:
        if pattern.search(word):
            return level
    return None


def call_level(name: str, level_args: list[str]) -> str:
    """Level of a call from the level constants among its leading arguments, else its name."""
    base = name.split(".")[-1]
    for word in level_args:
        got = word_level(word)
        if got is not None:
            return got
    if base in ("printk", "syslog", "msg", "LOG", "dev_printk"):
        return "info"
    got = word_level(base)
    if got is None:
        # openssh/bluez's error()/fatal(), busybox bb_error_msg, postfix msg_warn...
        for key, level in (
            ("fatal", "crit"),
            ("die", "crit"),
            ("panic", "crit"),
            ("err", "error"),
            ("warn", "warning"),
            ("WARN", "warning"),
            ("info", "info"),
            ("debug", "debug"),
            ("disconnect", "info"),
            ("exit", "error"),
            ("close", "info"),
        ):
            if key in base:
                return level
        return "info"
    return got
