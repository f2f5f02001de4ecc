"""Real software's message text with reviewed labels, for training and evaluation.

Two kinds of evidence live in ``nanomodel/data/real/`` (see LABELLING.md and SOURCES.md
there):

* ``templates/<source>.jsonl`` — format strings harvested from the log calls of Debian
  source packages (``nanomodel.harvest.run``), one per line with the package version,
  ``file:line`` of the call, the level the code logs it at, a label and its reason;
* ``captured/<source>.jsonl`` — lines real daemons printed when we ran them here
  (``nanomodel.harvest.capture``), labelled through the same templates;
* ``samples/<source>.jsonl`` — public log samples (fail2ban's test logs,
  ``nanomodel.harvest.samples_fail2ban``), rows as captured ones but each line exactly as
  its log holds it (time and host included); an evaluation set, never trained on
  (:func:`load_samples`);
* ``journal/<source>.jsonl`` — a booted systemd's journal captured here
  (``hil.journal_capture``, labelled by ``nanomodel.harvest.capture_systemd``), each line
  the entry's MESSAGE as the agent's journald source reads it, with its PRIORITY; an
  evaluation set, never trained on (:func:`load_journal`).

:func:`real_lines` renders each template ``per_template`` times with plausible values
(:mod:`nanomodel.realfill`), half of them behind a syslog/journal prefix as real logs
come both ways, and adds the captured lines. ``source`` is the daemon family to hold
out in leave-one-source-out evaluation. Nothing here touches the network or writes.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from nanomodel.realfill import fill
from nanomodel.realframes import MONTHS as _MONTHS
from nanomodel.realframes import OWN_LOG_FILE, apache22_captured, apache22_line, native_prefix
from nanomodel.realreview import jsonl_rows, load_reviews

DATA = Path(__file__).resolve().parent / "data" / "real"
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
# The program name a source's lines carry in syslog (several where a package ships several daemons).
PROGRAMS: dict[str, list[str]] = {
    "openssh": ["sshd"],
    "systemd": ["systemd"],
    "systemd-networkd": ["systemd-networkd"],
    "systemd-resolved": ["systemd-resolved"],
    "systemd-timesyncd": ["systemd-timesyncd"],
    "systemd-journald": ["systemd-journald"],
    "systemd-udevd": ["systemd-udevd"],
    "systemd-coredump": ["systemd-coredump", "systemd-oomd"],
    "networkmanager": ["NetworkManager"],
    "chrony": ["chronyd"],
    "dhcpcd": ["dhcpcd"],
    "isc-dhcp": ["dhclient", "dhcpd"],
    "mosquitto": ["mosquitto"],
    "bluez": ["bluetoothd"],
    "smartmontools": ["smartd"],
    "busybox": ["udhcpc", "syslogd", "init", "crond", "ntpd", "login"],
    "cron": ["CRON", "cron"],
    "rsyslog": ["rsyslogd"],
    "sudo": ["sudo"],
    "util-linux": ["login", "agetty", "su", "fstrim"],
    "pam": ["sshd", "login", "su", "sudo", "cron"],
    "e2fsprogs": ["systemd-fsck", "e2fsck", "e2scrub"],
    "wpa_supplicant": ["wpa_supplicant"],
    "hostapd": ["hostapd"],
    "dnsmasq": ["dnsmasq", "dnsmasq-dhcp"],
    "avahi": ["avahi-daemon"],
    "nginx": ["nginx"],
    "lighttpd": ["lighttpd"],
    "postfix": [
        "postfix/smtpd",
        "postfix/qmgr",
        "postfix/smtp",
        "postfix/cleanup",
        "postfix/master",
    ],
    "proftpd": ["proftpd"],
    "ftpd": ["ftpd", "inetd", "telnetd"],
    "ntpsec": ["ntpd"],
    "openvpn": ["openvpn", "ovpn-server"],
    "apache2": ["apache2", "httpd"],
    "zookeeper": ["zookeeper", "java"],
    "mdadm": ["mdadm"],
    "dropbear": ["dropbear"],
    "watchdog": ["watchdog"],
    "logrotate": ["logrotate"],
    "linux": ["kernel"],
    "slurm": ["slurmctld", "slurmd"],
    "opensm": ["opensm", "OpenSM"],
    "rasdaemon": ["rasdaemon"],
    "mcelog": ["mcelog"],
    "ipmievd": ["ipmievd"],
    "xinetd": ["xinetd"],
    "snmpd": ["snmpd"],
    "nfs-utils": ["rpc.mountd", "rpc.statd", "rpc.idmapd", "nfsdcld"],
    "autofs": ["automount"],
    "cups": ["cupsd"],
    "gpm": ["gpm"],
    "sendmail": ["sm-mta", "sendmail"],
    "mod_jk2": ["httpd", "apache2"],  # Apache 2.0's ErrorLog syslog: its own name
    "named": ["named"],
}


@dataclass(frozen=True)
class Template:
    """One harvested message template and its reviewed label."""

    source: str
    package: str
    origin: str
    template: str
    level: str
    label: str
    reason: str
    # a review said this is not text a device's log shows (realreview): kept out of
    # training and evaluation
    not_log_text: bool = False


@dataclass(frozen=True)
class CapturedLine:
    """One line a real daemon printed here, labelled through the templates."""

    source: str
    text: str
    label: str
    reason: str
    how: str
    # which folder the line comes from: captured, samples or journal
    collection: str = "captured"
    # the level its code logs it at (the template's), as a journal's PRIORITY would say
    level: str = "info"
    # a journal entry's catalog id (MESSAGE_ID, journal/ only), as the agent keeps it
    message_id: str | None = None

    @property
    def as_logged(self) -> bool:
        """A public sample's line (samples/) or a journal entry's (journal/), kept as its log
        or the agent holds it: evaluation only, never returned by load_captured."""
        return self.collection != "captured"

    @property
    def row(self) -> tuple[str, str, str]:
        """``(text, label, source)``: the row the trainer and the evaluations read
        (:data:`nanomodel.realeval.RealLine`)."""
        return self.text, self.label, self.source


def _rows_at(kind: str) -> list[tuple[Path, int, dict[str, str]]]:
    rows: list[tuple[Path, int, dict[str, str]]] = []
    for path, n, row in jsonl_rows(DATA / kind):
        if row.get("label") not in LABELS:
            raise ValueError(f"{path}:{n}: label {row.get('label')!r} is not one of {LABELS}")
        rows.append((path, n, row))
    return rows


def _rows(kind: str) -> list[dict[str, str]]:
    return [row for _, _, row in _rows_at(kind)]


@cache
def _all_templates() -> tuple[Template, ...]:
    reviews = load_reviews()
    out: list[Template] = []
    for r in _rows("templates"):
        review = reviews.get((r["source"], r["template"]))
        out.append(Template(
            r["source"],
            r["package"],
            r["origin"],
            r["template"],
            r.get("level", "info"),
            review.label if review else r["label"],
            review.reason if review else r["reason"],
            review.not_log_text if review else False,
        ))
    present = {(t.source, t.template) for t in out}
    stale = [k for k in reviews if k not in present]
    if stale:
        raise ValueError(
            f"{len(stale)} reviews name templates that no longer exist, e.g. {stale[0]!r}: "
            "re-review them against the new harvest (nanomodel/data/real/review/)"
        )
    return tuple(out)


@cache
def _all_captured() -> tuple[CapturedLine, ...]:
    # A captured line took its template's label when it was captured (``template_origin``
    # names that template; empty when rules, an override or the line's own values
    # decided); a later review of that template decides for the line too.
    by_origin = {
        (t.source, t.origin): t for t in _all_templates() if t.reason.startswith("review:")
    }
    out: list[CapturedLine] = []
    for path, n, r in (_rows_at("captured") + _rows_at("captured_next") + _rows_at("samples")
                       + _rows_at("journal")):
        if "template_origin" not in r:
            raise ValueError(f"{path}:{n}: a captured row without template_origin: label "
                             "the captures again (python -m nanomodel.harvest.capture "
                             "DIR --relabel, or nanomodel.harvest.samples_fail2ban)")
        label, reason = r["label"], r["reason"]
        origin = r["template_origin"]
        reviewed = by_origin.get((r["source"], origin)) if origin else None
        if reviewed is not None and reviewed.label != label:
            label, reason = reviewed.label, f"{reason} → {reviewed.reason}"
        out.append(CapturedLine(r["source"], r["text"], label, reason, r["how"],
                                collection=path.parent.name, level=r.get("level", "info"),
                                message_id=r.get("message_id")))
    return tuple(out)


def load_templates(sources: list[str] | None = None) -> list[Template]:
    """Every harvested template, or those of the given sources."""
    keep = set(sources) if sources is not None else None
    return [t for t in _all_templates() if keep is None or t.source in keep]


def load_captured(sources: list[str] | None = None) -> list[CapturedLine]:
    """Every line real daemons printed here, or those of the given sources (training and
    the held-out evaluation; public samples are not among them: :func:`load_samples`)."""
    return _lines("captured", sources)


def load_captured_next(sources: list[str] | None = None) -> list[CapturedLine]:
    """The December 7 captures (``captured_next/``: site servers and a kernel's boot, named
    for the retrain they waited for, docs/model.md "Site servers captured"). Trained on
    since that retrain (``MixConfig.next_lines``, rule 6 in docs/model.md); kept apart so
    that a recipe without them still draws exactly the lines it drew before."""
    return _lines("captured_next", sources)


def load_samples(sources: list[str] | None = None) -> list[CapturedLine]:
    """Public log samples (fail2ban's test logs), each line as its log holds it: an
    evaluation of other people's logs that no model is trained on (docs/model.md)."""
    return _lines("samples", sources)


def load_journal(sources: list[str] | None = None) -> list[CapturedLine]:
    """A booted systemd's journal, each line as the agent's journald source reads it (the
    MESSAGE; ``level`` from PRIORITY): an evaluation of a device's own journal that no
    model is trained on (docs/model.md)."""
    return _lines("journal", sources)


def _lines(collection: str, sources: list[str] | None) -> list[CapturedLine]:
    keep = set(sources) if sources is not None else None
    return [c for c in _all_captured()
            if c.collection == collection and (keep is None or c.source in keep)]


def sources() -> list[str]:
    """Source names (daemon families) present in templates or captured lines, sorted
    (the training and held-out evaluation's sources; samples may name others)."""
    return sorted({t.source for t in _all_templates()} | {c.source for c in load_captured()})


def render(template: Template, rng: random.Random) -> str:
    """The message as a log would show it (placeholders filled), without a prefix."""
    return fill(template.template, rng, template.source, template.origin).strip()


_HOSTS = ["gw-7", "edge-03", "rpi4", "plc-north", "cam-dock-1", "localhost", "meter42"]


def _when(rng: random.Random) -> tuple[str, int, int, int, int]:
    return (rng.choice(_MONTHS), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59),
            rng.randint(0, 59))


def _head(rng: random.Random, host: str, when: tuple[str, int, int, int, int]) -> str:
    """What a syslog file puts before a program's tag, in one of the forms real logs use
    (``Mar  3 10:15:02 gw-7 ``, RFC 3339 with the host), or nothing (journal output
    shown without it, a forwarder that strips it)."""
    mon, day, hh, mm, ss = when
    style = rng.random()
    if style < 0.5:
        return f"{mon} {day:2d} {hh:02d}:{mm:02d}:{ss:02d} {host} "
    if style < 0.8:
        return (f"2025-{_MONTHS.index(mon) + 1:02d}-{day:02d}T{hh:02d}:{mm:02d}:{ss:02d}."
                f"{rng.randint(0, 999999):06d}+00:00 {host} ")
    return ""


def syslog_prefix(source: str, rng: random.Random) -> str:
    """A prefix such as ``Mar  3 10:15:02 gw-7 sshd[1234]: `` in one of the forms real logs use."""
    prog = rng.choice(PROGRAMS.get(source, [source]))
    host = rng.choice(_HOSTS)
    when = _when(rng)
    tag = f"{prog}:" if prog in ("kernel",) else f"{prog}[{rng.randint(2, 40000)}]:"
    if prog == "systemd" and rng.random() < 0.7:
        tag = "systemd[1]:"
    return f"{_head(rng, host, when)}{tag} "


_SYSLOG_TAG = re.compile(r"[A-Za-z][\w.()/-]*(?:\[\d+\])?: ")


def as_in_a_file(text: str, rng: random.Random, prefix_share: float) -> str:
    """A captured line (kept as its program's tag and message) with the time and host a
    syslog file puts before the tag, as often as rendered templates get them. Why:
    rendered templates are four in ten alerts and captured lines one in eight; if only
    the templates carried a timestamp, a timestamp itself would read as trouble."""
    if _SYSLOG_TAG.match(text) and rng.random() < prefix_share:
        return _head(rng, rng.choice(_HOSTS), _when(rng)) + text
    return text


def real_lines(
    rng: random.Random,
    per_template: int = 3,
    sources: list[str] | None = None,
    prefix_share: float = 0.5,
    captured: bool = True,
    captured_texts: set[str] | None = None,
    own_draws: bool = False,
    with_next: bool = False,
    apache22_share: float = 0.0,
) -> list[tuple[str, str, str]]:
    """(text, label, source): each template rendered ``per_template`` times, and captured lines.

    A share ``prefix_share`` of rendered lines carry a syslog/journal prefix; a daemon that
    writes its own log format (nginx, ZooKeeper, mosquitto, NetworkManager, the kernel ring
    buffer) also shows its native prefix. Captured lines are included once each, as logged,
    those logged through syslog with the same share of time-and-host heads (only those whose
    text is in ``captured_texts``, when given). Public samples are not training text
    (:func:`load_samples`). ``own_draws``: each template's and captured line's values
    come from a generator of its own (:class:`OwnDraws`), so ``rng`` renders a template
    the same way whichever other templates or sources are loaded. ``with_next``: the lines
    of ``captured_next/`` too, after the others (to measure a retrain with them).
    ``apache22_share``: that share of Apache's rendered lines in its own file, and of its
    captured lines, framed as Apache 2.0 and 2.2 wrote them
    (:mod:`nanomodel.realframes`).
    """
    own = OwnDraws(rng.getrandbits(64)) if own_draws else None
    out: list[tuple[str, str, str]] = []
    for t in load_templates(sources):
        if t.not_log_text:
            continue
        draw = own.rng(t.source, t.template) if own else rng
        for _ in range(per_template):
            native = draw.random() < 0.5
            # the draw is taken only when the share is on: off, every line is as before
            if native and t.source == "apache2" and apache22_share and (
                    draw.random() < apache22_share):
                text = apache22_line(render(t, draw), t.level, draw)
            else:
                text = native_prefix(t.source, t.level, draw, t.origin) if native else ""
                text += render(t, draw)
            # Files of their own (nginx, Apache, ZooKeeper) are not also syslog lines.
            own_file = native and t.source in OWN_LOG_FILE
            if not own_file and draw.random() < prefix_share:
                text = syslog_prefix(t.source, draw) + text
            out.append((text, t.label, t.source))
    if captured:
        for c in [*load_captured(sources), *(load_captured_next(sources) if with_next else [])]:
            if captured_texts is not None and c.text not in captured_texts:
                continue
            draw = own.rng(c.source, c.text) if own else rng
            older = None  # Apache's captured 2.4 lines as 2.2 wrote them, in its own file
            if c.source == "apache2" and apache22_share and draw.random() < apache22_share:
                older = apache22_captured(c.text, draw)
            text = older if older is not None else as_in_a_file(c.text, draw, prefix_share)
            out.append((text, c.label, c.source))
    return out


class OwnDraws:
    """One random generator per template (and per captured line), seeded by the caller's
    draw and the line's own source and text. Why: with one generator for all, adding,
    dropping or relabelling one template shifted every later template's values, so a
    ten-template data change moved the held-out figures as much as a new seed did
    (docs/model.md, "How chaotic is training"). Identical texts of one source get
    successive streams, so they are not rendered alike."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.seen: dict[tuple[str, str], int] = {}

    def rng(self, source: str, text: str) -> random.Random:
        n = self.seen.get((source, text), 0)
        self.seen[(source, text)] = n + 1
        # A str seed is hashed with SHA-512 by random.seed: stable across runs and
        # PYTHONHASHSEED, unlike hash().
        return random.Random(f"{self.base}\x00{source}\x00{n}\x00{text}")


def pool_lines(rng: random.Random, prefix_share: float = 0.5) -> list[str]:
    """The unlabelled pool (``pool/<source>.jsonl``, :mod:`nanomodel.harvest.pool`): each
    message rendered once, a share behind a syslog prefix. No labels: a teacher's
    judgement is their only target (:func:`nanomodel.realtrain.train_distilled`)."""
    out: list[str] = []
    for _, _, row in jsonl_rows(DATA / "pool"):
        text = fill(row["template"], rng, row["source"], row["origin"]).strip()
        if rng.random() < prefix_share:
            text = syslog_prefix(row["source"], rng) + text
        out.append(text)
    return out


__all__ = [
    "LABELS",
    "CapturedLine",
    "Template",
    "load_captured",
    "load_templates",
    "native_prefix",
    "real_lines",
    "render",
    "sources",
    "syslog_prefix",
]
