"""Turn a captured syslog file into labelled ``captured/<source>.jsonl`` rows.

Pure parsing and labelling (:func:`captured_rows`) plus the one function that writes the
files. BusyBox syslogd writes ``Dec  3 07:40:27 host facility.prio tag[pid]: message``;
the row keeps ``tag[pid]: message`` (no timestamp, no host) and labels ``message``
through the source's templates.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from nanomodel import realtext
from nanomodel.harvest.match import Matcher
from nanomodel.harvest.sources import SOURCES
from nanomodel.realframes import SYSLOG_LEVEL_NAMES

_LINE = re.compile(
    r"^\w{3} [ \d]\d \d\d:\d\d:\d\d (?P<host>\S+) (?P<fac>\w+)\.(?P<prio>\w+) "
    r"(?P<tagged>(?P<tag>[^\s\[:]+)(?:\[\d+\])?: ?(?P<msg>.*))$"
)
# syslog tag → template source
_TAG_SOURCE = {
    "sshd": "openssh",
    "internal-sftp": "openssh",
    "sftp-server": "openssh",
    "mosquitto": "mosquitto",
    "dnsmasq": "dnsmasq",
    "dnsmasq-dhcp": "dnsmasq",
    "dhclient": "isc-dhcp",
    "dhcpd": "isc-dhcp",
    "udhcpc": "busybox",
    "crond": "busybox",
    "syslogd": "busybox",
    "chronyd": "chrony",
    "ovpn-server": "openvpn",
    "ovpn-client": "openvpn",
    "sudo": "sudo",
    "CRON": "cron",
    "cron": "cron",
    "rsyslogd": "rsyslog",
    "apache2": "apache2",
    "nginx": "nginx",
    "lighttpd": "lighttpd",
    "zookeeper": "zookeeper",
    # the classic server: inetutils (inetd, ftpd and the tcpd it runs), su and login
    "ftpd": "ftpd",
    "inetutils-inetd": "ftpd",
    "su": "util-linux",
    "login": "util-linux",
    "logrotate": "logrotate",
    "named": "named",
    "xinetd": "xinetd",
    "snmpd": "snmpd",
}
# Programs this machine runs for other work (tests su to the agent's user) while a capture
# owns /dev/log: a scenario's own come through its socket, host name SCENARIO_HOST
SCENARIO_HOST = "nfcap-scenario"
_SCENARIO_ONLY = {"su", "sudo", "login"}
# Real logs repeat the same few healthy lines all day, and that repetition is what the
# model must not alarm on; but one shape (the same message with other numbers) should not
# drown the rest: keep at most this many of each.
MAX_PER_SHAPE = 60
# rsyslog folds a run of identical messages into one line that quotes the message
_REPEATED = re.compile(r"^message repeated \d+ times: \[\s*(?P<inner>.*?)\s*\]$", re.S)
# What a daemon stamps in front of its own message, even under syslog
_STAMP = {
    "mosquitto": re.compile(r"^\d{9,}: "),  # epoch seconds
    # nginx: its own time, level, pid#tid and the connection number
    "nginx": re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[\w+\] \d+#\d+: (?:\*\d+ )?"),
    # cron: "(user) EVENT (detail)"; the events are its templates
    "cron": re.compile(r"^\([^)]*\) "),
    # apache2: [module:level] [pid N:tid N] [client ip:port] and an OS error "(111)...: "
    "apache2": re.compile(r"^(?:\[[^\]]*\] |\(-?\d+\)[^:]*: )*"),
    # logrotate: the severity its message() puts in front
    "logrotate": re.compile(r"^(?:error|warning|note): "),
    # ZooKeeper's log4j layout, Debian's "%d{ISO8601} - %-5p [%t:%C{1}@%L] - " or upstream's
    # with "[myid:%X{myid}] "; the thread name may hold brackets ("QuorumPeer[myid=1](...)")
    "zookeeper": re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?:\[myid:\d*\] )?- (?P<level>[A-Z]+) *"
        r"\[.*?@\d+\] - "
    ),
}
# Programs that write a log file of their own (the row keeps the line as that file holds
# it, without the syslog tag the capture put in front) and their level words
_OWN_FILE = {"zookeeper"}
_JAVA_LEVEL = {"FATAL": "crit", "ERROR": "error", "WARN": "warning", "INFO": "info"}

DATA = Path(realtext.__file__).resolve().parent / "data" / "real" / "captured"


def _shape(text: str) -> str:
    # hex ids (ZooKeeper's sessions and zxids) are numbers too
    return re.sub(r"\b0x[0-9a-fA-F]+\b|\d+", "0", re.sub(r"\[\d+\]", "", text))


def message_body(source: str, msg: str) -> str:
    """The part of a syslog message the daemon's format string produced.

    ``message repeated 3 times: [ Failed password ...]`` is the quoted message (it is as
    healthy or as bad as each of its repeats); stamps a daemon puts in front of its own
    text (mosquitto's epoch, nginx's time and pid, apache's module and client fields) go.
    """
    rep = _REPEATED.match(msg)
    if rep is not None:
        msg = rep.group("inner")
    stamp = _STAMP.get(source)
    return stamp.sub("", msg, count=1) if stamp is not None else msg


class Labeller:
    """What the syslog capture and the journal capture share: each message labelled through
    its source's harvested templates (one :class:`Matcher` per source, built when first
    needed), and at most :data:`MAX_PER_SHAPE` lines kept of one shape."""

    def __init__(self) -> None:
        self._matchers: dict[str, Matcher] = {}
        self._default_alert = {s.source: s.alert for s in SOURCES}
        self._shapes: Counter[str] = Counter()

    def seen_too_often(self, text: str) -> bool:
        """Count ``text``'s shape; True once it is past the cap (the line is not kept)."""
        shape = _shape(text)
        self._shapes[shape] += 1
        return self._shapes[shape] > MAX_PER_SHAPE

    def row(self, source: str, text: str, body: str, line: str, level: str,
            how: str) -> dict[str, str]:
        """The labelled row of a kept line: ``body`` is what the templates match, ``line``
        the whole logged message, ``text`` what the row keeps."""
        if source not in self._matchers:
            self._matchers[source] = Matcher(
                [(t.template, t.label, t.reason, t.origin)
                 for t in realtext.load_templates([source])], source=source)
        label, reason, origin = self._matchers[source].label(
            body, level, self._default_alert.get(source, "software"), line=line)
        return {"source": source, "text": text, "label": label, "reason": reason,
                "template_origin": origin, "how": how, "level": level}


def program_source(source: str, msg: str) -> str:
    """A PAM module logs under its program's name (``sshd``, ``cron``): its lines are
    ``pam``'s."""
    return "pam" if message_body("", msg).startswith("pam_") else source


def captured_rows(log_text: str) -> list[dict[str, str]]:
    """Labelled rows for every line of a captured syslog file (markers set ``how``)."""
    labeller = Labeller()
    how = "before any scenario"
    rows: list[dict[str, str]] = []
    for raw in log_text.splitlines():
        m = _LINE.match(raw)
        if m is None:
            continue
        tag, msg = m.group("tag"), m.group("msg").strip()
        level = SYSLOG_LEVEL_NAMES.get(m.group("prio"), "info")
        if tag == "nfcapture":
            how = msg.removeprefix("BEGIN ")
            continue
        if tag == "logger" or not msg:
            continue
        if tag in _SCENARIO_ONLY and m.group("host") != SCENARIO_HOST:
            continue
        source = "postfix" if tag.startswith("postfix/") else _TAG_SOURCE.get(tag)
        if source is None:  # another program on this machine, not one of the scenarios' daemons
            continue
        source = program_source(source, msg)
        text = m.group("tagged")
        if source in _OWN_FILE:
            own = _STAMP[source].match(msg)
            if own is None:  # a logged exception's stack trace: part of the line before it
                continue
            # rsyslog escapes a tab ("Removing file: <date>\t<path>"); the file holds a tab
            msg = msg.replace("#011", "\t")
            text, level = msg, _JAVA_LEVEL.get(own.group("level"), "debug")
        if labeller.seen_too_often(text):
            continue
        rows.append(labeller.row(source, text, message_body(source, msg), msg, level, how))
    return rows


def write_captured(log_text: str, folder: Path = DATA, sources: list[str] | None = None,
                   add: bool = False) -> dict[str, int]:
    """Replace ``captured/<source>.jsonl`` for every source present in the capture (only
    for ``sources`` when given); ``add``: keep the file's rows and add the capture's after
    them, each (text, how) once."""
    rows = captured_rows(log_text)
    if sources is not None:
        rows = [r for r in rows if r["source"] in sources]
    if add:
        kept: list[dict[str, str]] = []
        for source in sorted({r["source"] for r in rows}):
            path = folder / f"{source}.jsonl"
            if path.exists():
                kept.extend(json.loads(line) for line in path.read_text().splitlines() if line)
        seen = {(r["source"], r["text"], r["how"]) for r in kept}
        rows = kept + [r for r in rows if (r["source"], r["text"], r["how"]) not in seen]
    return write_rows_by_source(rows, folder)


def write_rows_by_source(rows: list[dict[str, str]], folder: Path,
                         prune: bool = False) -> dict[str, int]:
    """Replace ``folder/<source>.jsonl`` for every source of ``rows`` (one compact JSON
    object per line); ``prune``: also remove the files of sources ``rows`` no longer has.
    Rows per source written."""
    by_source: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    folder.mkdir(parents=True, exist_ok=True)
    if prune:
        for old in folder.glob("*.jsonl"):
            if old.stem not in by_source:
                old.unlink()
    for source, items in by_source.items():
        with (folder / f"{source}.jsonl").open("w", encoding="utf-8") as fh:
            for row in items:
                fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    return {s: len(v) for s, v in by_source.items()}
