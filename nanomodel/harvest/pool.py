"""Unlabelled real text: the log messages of daemons the labelled data does not cover.

Usage (sources unpacked with ``apt-get source`` into one scratch directory, outside
the repository)::

    python -m nanomodel.harvest.pool /work/scratch/pool_src [--out nanomodel/data/real/pool]

Why: on software it has never seen the model fails on *words* it has never seen
(docs/model.md, "The teacher"). A teacher that reads the LLM-distilled word vectors
knows what such words mean, but what it knows reaches the shipped model only through
lines the shipped model is trained on. These lines are that channel (the transfer set
of :func:`nanomodel.realtrain.train_distilled`): real messages of the :data:`PACKAGES`
the archive served (19 of them; SOURCES.md 1b), which carry no label of ours — the
teachers' judgement is their only target, so no person's decision is needed and none is
invented.

Each package is read with one broad call pattern (``syslog``, ``*log*``, ``*err*``,
``*warn*``, ``g_warning``, ...) instead of a reviewed per-source one: a call that is not
a log call only adds a line of real program text. Debug-level calls are dropped as in the
labelled harvest; a message that is also a labelled template is dropped (the held-out
evaluation must not meet its own text here); at most :data:`PER_SOURCE` per package,
chosen by a hash of the text so reruns keep the same set. Same inputs, same output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from nanomodel.harvest.run import harvest_source
from nanomodel.harvest.source import Source

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "real" / "pool"
PER_SOURCE = 500
# Call names (fullmatch) whose string arguments are log text in most C daemons.
_CALLS = (
    r"v?syslog|[A-Za-z_]*(?:log|LOG|Log)[A-Za-z_0-9]*|[A-Za-z_]*(?:err|ERR|Err|warn|WARN|Warn"
    r"|notice|NOTICE|crit|CRIT|fatal|FATAL|die|panic|alert|msg|MSG|message|report)[A-Za-z_0-9]*"
    r"|g_(?:warning|message|critical|info)"
)
_EXCLUDE = ("test", "/tests/", "fuzz", "example", "contrib/", "/doc/", "/docs/", "/t/",
            "compat/", "/lib/replace")
# (name, Debian source package): edge devices' and small servers' daemons with no
# labelled templates here (mail, proxies, VPN, storage, modems, power, GPS, D-Bus, ...).
PACKAGES: tuple[tuple[str, str], ...] = (
    ("dovecot", "dovecot"), ("exim4", "exim4"), ("vsftpd", "vsftpd"), ("haproxy", "haproxy"),
    ("keepalived", "keepalived"), ("stunnel", "stunnel4"), ("unbound", "unbound"),
    ("nut", "nut"), ("gpsd", "gpsd"), ("modemmanager", "modemmanager"), ("dbus", "dbus"),
    ("polkit", "policykit-1"), ("udisks2", "udisks2"), ("upower", "upower"),
    ("connman", "connman"), ("iwd", "iwd"), ("ppp", "ppp"),
    ("conntrack-tools", "conntrack-tools"), ("irqbalance", "irqbalance"), ("monit", "monit"),
    ("collectd", "collectd"), ("lvm2", "lvm2"), ("cryptsetup", "cryptsetup"),
    ("openldap", "openldap"), ("strongswan", "strongswan"), ("radvd", "radvd"),
    ("acpid", "acpid"), ("usbmuxd", "usbmuxd"), ("open-iscsi", "open-iscsi"),
    ("multipath-tools", "multipath-tools"), ("tinyproxy", "tinyproxy"), ("lldpd", "lldpd"),
    ("rng-tools", "rng-tools-debian"), ("fetchmail", "fetchmail"), ("sssd", "sssd"),
    ("nvme-cli", "nvme-cli"), ("lm-sensors", "lm-sensors"), ("ulogd2", "ulogd2"),
    ("corosync", "corosync"),
)


def pool_source(name: str, package: str) -> Source:
    return Source(name, package, ("**/*.c", "**/*.cc", "**/*.cpp"), _CALLS, "software",
                  exclude=_EXCLUDE)


def _key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def harvest_pool(root: Path, name: str, package: str, labelled: set[str],
                 per_source: int = PER_SOURCE) -> list[dict[str, str]]:
    """One package's unlabelled messages (no label, no reason: only the teachers judge them)."""
    rows = [
        {"source": r["source"], "package": r["package"], "origin": r["origin"],
         "template": r["template"], "level": r["level"]}
        for r in harvest_source(root, pool_source(name, package))
        # a D-Bus name or an identifier alone ("net.connman.Agent.Error.Retry") is not a message
        if r["template"] not in labelled and " " in r["template"]
    ]
    # harvest_source yields each template once, so the template names its row
    keep = set(sorted((r["template"] for r in rows), key=_key)[:per_source])
    return [r for r in rows if r["template"] in keep]


def main(argv: list[str] | None = None) -> int:
    from nanomodel.realtext import load_templates

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src_root", type=Path, help="directory of unpacked Debian source packages")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    labelled = {t.template for t in load_templates()}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, package in PACKAGES:
        try:
            rows = harvest_pool(args.src_root, name, package, labelled)
        except FileNotFoundError as exc:
            print(f"skip {name}: {exc}", file=sys.stderr)
            continue
        with (args.out / f"{name}.jsonl").open("w") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
        print(f"{name}: {len(rows)} messages ({rows[0]['package'] if rows else package})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
