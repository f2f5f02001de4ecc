"""How daemons frame the lines they write into log files of their own (not syslog).

:func:`native_prefix` is the head a daemon puts before its message in its own file
(nginx's error.log, Apache's error_log, ZooKeeper's log4j file, the kernel ring buffer,
...). Used by :func:`nanomodel.realtext.real_lines` when it renders templates.
"""

from __future__ import annotations

import random
import re

from nanomodel.realfill import fill

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
# Daemons whose lines in their own file are not also syslog lines.
OWN_LOG_FILE = {"nginx", "apache2", "mod_jk2", "zookeeper", "slurm", "opensm"}


def _apache_module(path: str) -> str:
    """The module tag Apache prints for a source file: server/*.c log as core, mod_ssl as ssl."""
    if path.startswith("server/mpm/"):
        return "mpm_" + path.split("/")[2]
    if path.startswith("server/") or not path:
        return "core"
    if path.startswith("modules/http/"):
        return "http"
    name = path.rsplit("/", 1)[-1].removesuffix(".c")
    return name.removeprefix("mod_") if name.startswith("mod_") else path.split("/")[1]


# syslog level name → the level names the templates and rules use
SYSLOG_LEVEL_NAMES = {
    "emerg": "crit",
    "alert": "crit",
    "crit": "crit",
    "err": "error",
    "warn": "warning",
    "warning": "warning",
    "notice": "notice",
    "info": "info",
    "debug": "debug",
}

# The level word of Apache's and nginx's error logs for a template's level.
_ERROR_LOG_LEVEL = {"crit": "crit", "error": "error", "warning": "warn", "notice": "notice"}
_AH_NUMBER = re.compile(r"^AH\d{5}: ")
# Messages Apache 2.0/2.2 logged at a level other than 2.4's: a missing file was an
# error there (public 2.2 logs show "[error] [client ...] File does not exist: ..."),
# info since 2.4 (AH00128).
_APACHE22_ERROR = re.compile(r"^File does not exist: ")
# An Apache 2.4 line as syslog carries it: tag, [module:level], [pid p:tid t],
# [client ip:port] when a request's, the message.
_APACHE24_CAPTURED = re.compile(
    r"^\S+?\[\d+\]: \[[\w-]*:(?P<lvl>\w+)\] \[pid [^\]]*\] "
    r"(?:\[client (?P<client>[^\]]+?)(?::\d+)?\] )?(?P<msg>.*)$"
)
# Apache 2.4 writes syslog's level names but "error" for "err"
_LEVEL_24 = {**SYSLOG_LEVEL_NAMES, "error": "error"}


def _apache20_head(rng: random.Random, hms: tuple[int, int, int], lvl: str,
                   years: tuple[int, int]) -> str:
    """Apache 2.0's and 2.2's error_log head: ``[Sun Dec 04 04:51:08 2005] [notice] ``."""
    hh, mm, ss = hms
    return (
        f"[{rng.choice(_DAYS)} {rng.choice(MONTHS)} {rng.randint(1, 28):02d} "
        f"{hh:02d}:{mm:02d}:{ss:02d} {rng.randint(*years)}] [{lvl}] "
    )


def apache22_line(message: str, level: str, rng: random.Random,
                  client: str | None = None) -> str:
    """An Apache 2.4 message as Apache 2.0 and 2.2 wrote it into error_log:
    ``[Mon Dec 23 09:49:10 2013] [error] [client 115.249.248.145] File does not exist:
    /var/www/pma`` — no module tag, pid, microseconds or ``AHnnnnn:`` number (2.4 added
    them), and the level 2.2 logged it at. Most public Apache logs come from those
    releases; the model had seen only 2.4's framing, so 2.2's 404 lines at ``[error]``
    read as trouble (docs/model.md, "A retrain held to written gates"). ``client``: the
    request's client address (a request's messages name it; without one, half do)."""
    text = _AH_NUMBER.sub("", message)
    request = _APACHE22_ERROR.match(text) is not None
    if request:
        level = "error"
    hms = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    head = _apache20_head(rng, hms, _ERROR_LOG_LEVEL.get(level, "info"), (2003, 2017))
    # ap_log_rerror (a request's messages) names the client and, when the request had
    # one, its referer; ap_log_error (the server's) names neither.
    if client is None and (request or rng.random() < 0.5):
        client = fill("from %s", rng)[5:]
    if client is not None:
        head += f"[client {client}] "
        if rng.random() < 0.2:
            text += f", referer: http://{rng.choice(['www.example.com', 'example.org'])}/"
    return head + text


def apache22_captured(text: str, rng: random.Random) -> str | None:
    """A captured Apache 2.4 line (``apache2[15313]: [core:info] [pid ...] [client
    ...] AH00128: ...``) as Apache 2.2 would have written it, or None when it is not in
    that form."""
    found = _APACHE24_CAPTURED.match(text)
    if found is None:
        return None
    level = _LEVEL_24.get(found["lvl"], "info")
    return apache22_line(found["msg"], level, rng, found["client"])


def native_prefix(source: str, level: str, rng: random.Random, origin: str = "") -> str:
    """The prefix a daemon writes into its own log file (nginx error.log, ZooKeeper's log4j)."""
    hh, mm, ss = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    if source == "apache2":
        lvl = _ERROR_LOG_LEVEL.get(level, "info")
        module = _apache_module(origin.split(":")[0])
        day = rng.choice(_DAYS)
        head = (
            f"[{day} {rng.choice(MONTHS)} {rng.randint(1, 28):02d} {hh:02d}:{mm:02d}:{ss:02d}."
            f"{rng.randint(0, 999999):06d} 2025] [{module}:{lvl}] [pid {rng.randint(100, 30000)}"
            f":tid {rng.randint(1000, 2**31)}] "
        )
        if rng.random() < 0.5:
            head += f"[client {fill('from %s', rng)[5:]}:{rng.randint(1024, 65535)}] "
        return head
    if source == "mod_jk2":  # Apache 2.0's error_log: no module tag, pid or microseconds
        if level == "crit":  # APLOG_STARTUP, mod_jk2's only crit: written with no header
            return ""
        return _apache20_head(rng, (hh, mm, ss), _ERROR_LOG_LEVEL.get(level, "info"),
                              (2004, 2006))
    if source == "nginx":
        lvl = _ERROR_LOG_LEVEL.get(level, "info")
        pid = rng.randint(100, 30000)
        return f"2025/03/{rng.randint(1, 28):02d} {hh:02d}:{mm:02d}:{ss:02d} [{lvl}] {pid}#{pid}: "
    if source == "zookeeper":
        lvl = {"crit": "ERROR", "error": "ERROR", "warning": "WARN"}.get(level, "INFO")
        where = rng.choice(
            [
                "main:QuorumPeerMain@",
                "NIOWorkerThread-1:NIOServerCnxn@",
                "QuorumPeer[myid=1](plain=0.0.0.0:2181):Leader@",
                "SyncThread:0:FileTxnLog@",
            ]
        )
        return (
            f"2025-03-{rng.randint(1, 28):02d} {hh:02d}:{mm:02d}:{ss:02d},"
            f"{rng.randint(0, 999):03d} "
            f"[myid:{rng.randint(1, 3)}] - {lvl:5s} [{where}{rng.randint(50, 999)}] - "
        )
    if source == "mosquitto":
        return f"{rng.randint(1700000000, 1760000000)}: "
    if source == "linux":
        return f"[{rng.randint(0, 900000):6d}.{rng.randint(0, 999999):06d}] "
    if source == "slurm":  # SlurmctldLogFile/SlurmdLogFile, LogTimeFormat=iso8601_ms
        return (
            f"[2025-03-{rng.randint(1, 28):02d}T{hh:02d}:{mm:02d}:{ss:02d}."
            f"{rng.randint(0, 999):03d}] "
        )
    if source == "opensm":  # /var/log/opensm.log: month day time usec [thread] verbosity ->
        verbosity = "0x01" if level in ("error", "crit") else rng.choice(["0x02", "0x02", "0x80"])
        return (
            f"{rng.choice(MONTHS)} {rng.randint(1, 28):02d} {hh:02d}:{mm:02d}:{ss:02d} "
            f"{rng.randint(0, 999999):06d} [{rng.randint(0x1000, 0xFFFFFFFF):04X}] {verbosity} -> "
        )
    if source == "networkmanager":
        lvl = {"crit": "error", "error": "error", "warning": "warn"}.get(level, "info")
        return f"<{lvl}>  [{rng.randint(1700000000, 1760000000)}.{rng.randint(0, 9999):04d}] "
    return ""

