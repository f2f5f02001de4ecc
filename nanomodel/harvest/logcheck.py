"""Store logcheck's healthy-line rules as training rows (``data/real/logcheck/``).

Usage (``apt-get download logcheck-database`` and ``dpkg-deb -x`` it into a scratch
directory outside the repository)::

    python -m nanomodel.harvest.logcheck SCRATCH/etc/logcheck

Reads ``ignore.d.paranoid`` and ``ignore.d.server`` (the lines logcheck leaves out of a
server's report), strips the time-and-host head each rule starts with, keeps the rules
that spell out at least two words and that Python's parser reads, and names the sources of
ours each rule belongs to — by its file, its program tag and a PAM module in its text — so
the held-out evaluation can keep a held-out source's rules out of that source's model
(docs/model.md, "logcheck's healthy lines"; LABELLING.md, "logcheck's rules").
"""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

from nanomodel.harvest.match import Matcher
from nanomodel.harvest.ruleset import ALERTS
from nanomodel.logcheck import expression_template, literal_words, strip_head
from nanomodel.realfill import fill
from nanomodel.realtext import DATA, PROGRAMS, load_templates

PACKAGE = "logcheck-database 1.4.2+deb12u1"
LEVELS = ("ignore.d.paranoid", "ignore.d.server")
# logcheck's rule files that hold our evaluation sources' messages (by the daemon, not the
# program tag: ``ssh`` also holds sshd's PAM lines, which the tag below adds)
FILE_SOURCES: dict[str, str] = {
    "apache": "apache2", "apcupsd": "apcupsd", "automount": "autofs", "bind": "named",
    "bluez-utils": "bluez", "cron": "cron", "cups-lpd": "cups", "dhclient": "isc-dhcp",
    "dhcp": "isc-dhcp", "dnsmasq": "dnsmasq", "dropbear": "dropbear", "ftpd": "ftpd",
    "kernel": "linux", "login": "util-linux", "mountd": "nfs-utils", "nfs": "nfs-utils",
    "openvpn": "openvpn", "postfix": "postfix", "proftpd": "proftpd", "rpc_statd": "nfs-utils",
    "smartd": "smartmontools", "snmpd": "snmpd", "ssh": "openssh", "su": "util-linux",
    "sudo": "sudo", "syslogd": "rsyslog", "systemd": "systemd", "systemd-logind": "systemd",
    "systemd-timesyncd": "systemd-timesyncd", "telnetd": "ftpd", "ucd-snmp": "snmpd",
    "watchdog": "watchdog", "xinetd": "xinetd",
}
_MESSAGE = re.compile(r"^[^\s:]+(?:\[\d+\])?: ")  # the program's tag before the message
_TAG = re.compile(r"^\(?([A-Za-z][\w.-]*(?:/[\w.-]+)?)")
# Our meaning rules, but the sensor one: it reads status words of sensor text, and the
# filler's host names (``sensor-07``) set it off in any line.
_MEANINGS = [rule for rule in ALERTS if rule.name != "sensor"]
# LABELLING.md, "Decisions worth knowing", mail servers: a client refused as a sender, relay
# or login is security. logcheck's mail files ignore many such refusals (postfix's
# ``reject: RCPT ... Relay access denied``): our policy overrules them, not the anti-spam
# machinery's everyday rejections, which both call routine.
REFUSALS = re.compile(
    r"Relay(ing)? (access )?denied|User unknown in (local|virtual) (recipient|mailbox|alias)"
    r"|Recipient address rejected: User unknown|Sender address rejected|Client host rejected"
    r"|authenticat\w* failed|auth(entication)? failure|LOGIN FAILED|login failed|Refused user"
    r"|possible SMTP attack|POSSIBLE (BREAK-?IN )?ATTACK", re.I)
REASON = ("logcheck-database {level}/{file}: Debian's logcheck leaves lines of this shape out "
          "of a server's report (an administrator need not read them): normal")


def rule_sources(file: str, expression: str) -> list[str]:
    """Our evaluation sources a rule speaks for: its file's, its program tag's, PAM's."""
    found = [FILE_SOURCES[file]] if file in FILE_SOURCES else []
    tag = _TAG.match(expression)
    if tag:
        prog = tag.group(1).replace("\\", "")
        found += [s for s, progs in PROGRAMS.items() if prog in progs and s not in found]
    if "pam_" in expression and "pam" not in found:
        found.append("pam")
    return found


class Overruler:
    """Our labels' say over logcheck's. A rule is overruled when one of its renderings
    carries a meaning our rules alert on at any level (``ALERTS``: a refused login, an
    I/O error...), refuses a mail client as a sender, relay or login (:data:`REFUSALS`),
    or matches one of its sources' templates reviewed as an alert (``openvpn``'s ``TLS
    key negotiation failed`` is a tunnel that did not come up, whatever a server's report
    leaves out). logcheck leaves single failed logins out of a
    server's report on purpose — its separate attack report and fail2ban count them — but
    for us a refused login is security (LABELLING.md), and the public sample's alerts are
    mostly such lines: trained as normal, they cost it 155 of its 640 alerts."""

    def __init__(self) -> None:
        self.matchers: dict[str, Matcher] = {}

    def _matcher(self, source: str) -> Matcher:
        if source not in self.matchers:
            rows = [(t.template, t.label, t.reason, t.origin)
                    for t in load_templates([source]) if not t.not_log_text]
            self.matchers[source] = Matcher(rows, source=source)
        return self.matchers[source]

    def verdict(self, expression: str, sources: list[str], renderings: int = 16) -> str | None:
        """Why the rule is overruled, or None (every alternation is likely drawn in
        ``renderings``: one alerting branch overrules the whole rule)."""
        rng = random.Random(expression)
        for _ in range(renderings):
            line = fill(expression_template(expression, rng), rng,
                        sources[0] if sources else "").strip()
            message = _MESSAGE.sub("", line, count=1)
            meaning = next((rule for rule in _MEANINGS if rule.pattern.search(line)), None)
            if meaning is not None:
                return f"overruled: our rule {meaning.name} ({meaning.label}) on {line[:80]!r}"
            refusal = REFUSALS.search(line)
            if refusal is not None:
                return (f"overruled: a client refused as a sender, relay or login is security "
                        f"(LABELLING.md, mail servers): {refusal.group(0)!r} in {line[:80]!r}")
            for source in sources:
                hit = self._matcher(source).match(message)
                if hit is not None and hit.label != "normal":
                    return (f"overruled: {source}'s template {hit.origin} "
                            f"({hit.template[:60]}) is reviewed {hit.label}")
        return None


def harvest(root: Path) -> dict[str, list[dict[str, object]]]:
    """Rows per rule file of an unpacked ``etc/logcheck``; prints what was left out."""
    out: dict[str, list[dict[str, object]]] = {}
    skipped: dict[str, int] = {"unreadable": 0, "too few words": 0, "overruled": 0}
    overruler = Overruler()
    for level in LEVELS:
        for path in sorted((root / level).iterdir()):
            for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if not raw.strip() or raw.lstrip().startswith("#"):
                    continue
                expression = strip_head(raw.strip())
                try:
                    expression_template(expression, random.Random(0))
                except Exception:  # the parser's errors vary; the count says
                    skipped["unreadable"] += 1
                    continue
                if len(literal_words(expression)) < 2:
                    skipped["too few words"] += 1
                    continue
                sources = rule_sources(path.name, expression)
                row: dict[str, object] = {
                    "file": path.name, "level": level, "package": PACKAGE,
                    "expression": expression, "label": "normal", "sources": sources,
                    "reason": REASON.format(level=level, file=path.name),
                }
                overruled = overruler.verdict(expression, sources)
                if overruled:
                    row["overruled"] = overruled
                    skipped["overruled"] += 1
                out.setdefault(path.name, []).append(row)
    print(f"stored {sum(map(len, out.values()))} rules of {len(out)} files; left out {skipped}",
          file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    rows = harvest(Path(args[0]))
    folder = DATA / "logcheck"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.jsonl"):
        old.unlink()
    for name, file_rows in rows.items():
        (folder / f"{name}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in file_rows), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
