"""How daemons frame the lines they write into log files of their own (not syslog).

:func:`native_prefix` is the head a daemon puts before its message in its own file
(nginx's error.log, Apache's error_log, ZooKeeper's log4j file, the kernel ring buffer,
...). Used by :func:`nanomodel.realtext.real_lines` when it renders templates.
"""

from __future__ import annotations

import random

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


def native_prefix(source: str, level: str, rng: random.Random, origin: str = "") -> str:
    """The prefix a daemon writes into its own log file (nginx error.log, ZooKeeper's log4j)."""
    hh, mm, ss = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    if source == "apache2":
        lvl = {"crit": "crit", "error": "error", "warning": "warn", "notice": "notice"}.get(
            level, "info"
        )
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
        lvl = {"error": "error", "warning": "warn", "notice": "notice"}.get(level, "info")
        day = rng.choice(_DAYS)
        return (
            f"[{day} {rng.choice(MONTHS)} {rng.randint(1, 28):02d} {hh:02d}:{mm:02d}:{ss:02d}"
            f" {rng.choice([2004, 2005, 2006])}] [{lvl}] "
        )
    if source == "nginx":
        lvl = {"crit": "crit", "error": "error", "warning": "warn", "notice": "notice"}.get(
            level, "info"
        )
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

