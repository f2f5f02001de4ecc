"""Label what a booted systemd logged: the service manager's own text, as a device's
journal holds it.

Usage (root; a cached Debian root file system, :mod:`hil.rootfs`, built on first use;
a manual tool, CI never runs it)::

    python -m hil.journal_capture /work/scratch/systemd-capture     # boot, run, label
    python -m nanomodel.harvest.capture_systemd /work/scratch/systemd-capture  # label again

The booting is the rig's (:mod:`hil.journal_capture`: training code never imports the
rig); this module labels and writes what it exported.

A device's journal is mostly systemd talking about units: started, finished, stopped,
deactivated, a timer's job run again, the CPU a unit consumed; and when something goes
wrong, the same manager's words for it (a unit that fails and is restarted until the
start limit, a watchdog that fires, a start or stop that times out, a device that never
appears). Harvested templates give each of those messages once; here the manager prints
them as it really does, with its unit names and descriptions, at the rate a device
would (at most :data:`~nanomodel.harvest.capture_io.MAX_PER_SHAPE` of one shape).

The container (``systemd-nspawn --boot``, :class:`hil.systemd_target.SystemdTarget`)
boots, runs the scenarios (:mod:`nanomodel.harvest.scenarios_systemd`), powers off, and the
journal files it wrote are read with ``journalctl --directory`` (the shutdown's lines
included). Each scenario first logs ``nfcapture: BEGIN <how>``, so every line records how it
came about. Lines of systemd (PID 1), systemd-journald and sshd (its PAM modules' lines
as ``pam``) are kept, labelled through their harvested templates like every captured line
(:mod:`nanomodel.harvest.match`), as the agent's journald source reads them (the entry's
MESSAGE, its PRIORITY as ``level``); what the scenarios' own programs print is ours, not
the daemons', and is not kept.
``journal.jsonl`` in WORKDIR keeps the raw export.

The lines go to ``nanomodel/data/real/journal/``: an evaluation set no model is trained
on (:func:`nanomodel.realtext.load_journal`). Trained on, as captured lines, they made
the shipped build flag more healthy lines of the corpus's held-out styles on two seeds
(3.5-3.8 % -> 5.3-6.3 %) and moved the public sample by a seed's swing (docs/model.md).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from agent.journal_catalog import parse_message_id, trusted_message_id
from agent.level_evidence import SYSLOG_LEVELS
from nanomodel.harvest.capture_io import (
    DATA,
    Labeller,
    program_source,
    write_rows_by_source,
)
from nanomodel.realframes import SYSLOG_LEVEL_NAMES

JOURNAL = DATA.parent / "journal"
# journal SYSLOG_IDENTIFIER → template source (the manager and the journal daemon: the
# others are not running in a headless container)
# A unit file's syntax warnings start with where the setting is ("/etc/systemd/system/
# x.service:3: "; systemd's log_syntax); the template is the rest
_SYNTAX_AT = re.compile(r"^/\S+:\d+: ")
IDENTIFIER_SOURCE = {"systemd": "systemd", "systemd-journald": "systemd-journald",
                     "sshd": "openssh"}
# journald PRIORITY (a syslog level's number) → the level names the templates and rules use
PRIORITY_LEVEL = {n: SYSLOG_LEVEL_NAMES[name] for n, name in enumerate(SYSLOG_LEVELS)}


def journal_rows(records: list[dict[str, object]]) -> list[dict[str, str]]:
    """Labelled rows for journal records (``journalctl -o json``), in order; markers
    (``nfcapture``) set ``how``. Pure."""
    labeller = Labeller()
    how = "boot"
    rows: list[dict[str, str]] = []
    for rec in records:
        ident = str(rec.get("SYSLOG_IDENTIFIER", ""))
        msg = rec.get("MESSAGE")
        if not isinstance(msg, str) or not msg.strip():
            continue  # binary (an array of bytes) or empty: nothing a daemon's format wrote
        msg = msg.strip()
        if ident == "nfcapture":
            how = msg.removeprefix("BEGIN ")
            continue
        source = IDENTIFIER_SOURCE.get(ident)
        if source is None:
            continue
        source = program_source(source, msg)
        try:
            level = PRIORITY_LEVEL.get(int(str(rec.get("PRIORITY", 6))), "info")
        except ValueError:
            level = "info"
        if labeller.seen_too_often(f"{ident}: {msg}"):
            continue
        row = labeller.row(source, msg, _SYNTAX_AT.sub("", msg, count=1), msg, level, how)
        # As the agent keeps it: an id of the program that owns it only.
        message_id = trusted_message_id(parse_message_id(rec.get("MESSAGE_ID")),
                                        rec.get("_UID"), rec.get("_PID"),
                                        rec.get("_SYSTEMD_UNIT"))
        if message_id is not None:
            row["message_id"] = message_id
        rows.append(row)
    return rows


def read_export(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", type=Path, help="the capture's directory (WORKDIR/journal.jsonl "
                    "from python -m hil.journal_capture WORKDIR)")
    ap.add_argument("--no-write", action="store_true",
                    help="print the label counts only; leave journal/ as it is")
    args = ap.parse_args(argv)
    return label_capture(args.workdir, write=not args.no_write)


def label_capture(workdir: Path, write: bool = True) -> int:
    """Label WORKDIR/journal.jsonl and (``write``) replace ``journal/<source>.jsonl``."""
    rows = journal_rows(read_export(workdir / "journal.jsonl"))
    counts = Counter((r["source"], r["label"]) for r in rows)
    for (source, label), n in sorted(counts.items()):
        print(f"{source:18} {label:10} {n}")
    if write:
        print(write_rows_by_source(rows, JOURNAL))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
