"""Label what Debian's kernel logged in the capture's virtual machine
(:mod:`hil.kernel_capture` boots it; :mod:`nanomodel.harvest.scenarios_kernel` says what
runs there).

Usage (a manual tool, CI never runs it)::

    python -m hil.kernel_capture /work/scratch/kernel-capture           # boot, label
    python -m nanomodel.harvest.capture_kernel /work/scratch/kernel-capture/dmesg.txt

The input is ``dmesg -r``: each record as ``<priority>[seconds] message``, the priority's
low three bits the level, the rest the facility (0 for the kernel). Records of the kernel
are labelled through the harvested ``linux`` templates like every captured line
(:class:`~nanomodel.harvest.capture_io.Labeller`: the template with the most literal text,
its review, the rules otherwise; at most ``MAX_PER_SHAPE`` of one shape) and kept as
syslog shows them, ``kernel: <message>``; the scenario's markers (facility user,
``nfcapture: BEGIN <how>``) set ``how``. The rows go to ``captured_next/linux.jsonl``: not
trained on until the next retrain (docs/model.md, "Site servers captured").
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

from nanomodel.harvest.capture_io import Labeller, write_rows_by_source

NEXT = Path(__file__).resolve().parents[1] / "data" / "real" / "captured_next"
_RECORD = re.compile(r"^<(?P<pri>\d+)>\[\s*\d+\.\d+\] ?(?P<msg>.*)$")
_LEVELS = ("crit", "crit", "crit", "error", "warning", "notice", "info", "debug")
_MARKER = "nfcapture: BEGIN "


def dmesg_rows(text: str) -> list[dict[str, str]]:
    """Labelled rows of the kernel's records in a ``dmesg -r`` dump."""
    labeller = Labeller()
    how = "boot"
    rows: list[dict[str, str]] = []
    for raw in text.splitlines():
        m = _RECORD.match(raw.rstrip("\r"))
        if m is None:
            continue
        pri, msg = int(m.group("pri")), m.group("msg").strip()
        if pri >> 3 != 0:  # not the kernel's: the scenario's markers
            if msg.startswith(_MARKER):
                how = msg.removeprefix(_MARKER)
            continue
        if not msg:
            continue
        text_ = f"kernel: {msg}"
        if labeller.seen_too_often(text_):
            continue
        rows.append(labeller.row("linux", text_, msg, msg, _LEVELS[pri & 7], how))
    return rows


def label_dmesg(text: str, write: bool = True, folder: Path = NEXT) -> Counter[str]:
    """Label a dump; with ``write``, replace ``folder/linux.jsonl``. Rows per label."""
    rows = dmesg_rows(text)
    if write:
        write_rows_by_source(rows, folder)
    return Counter(r["label"] for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dmesg", type=Path, help="the dmesg.txt of an earlier boot")
    ap.add_argument("--no-write", action="store_true", help="print the label counts only")
    args = ap.parse_args(argv)
    counts = label_dmesg(args.dmesg.read_text(errors="replace"), write=not args.no_write)
    print(", ".join(f"{label}: {n}" for label, n in sorted(counts.items())), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
