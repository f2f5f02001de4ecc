"""Capture a real kernel ring buffer (``dmesg -r``) as labelled ``linux`` lines.

The kernel is the one source every device has, and its boot and driver chatter is most
of what a healthy device's log shows after a start. Format strings alone under-represent
it (most harvested kernel templates are error paths), so the ring buffer of a machine
that booted is captured too. Each message is labelled as captured daemon lines are
(LABELLING.md "Captured lines"): the kernel template it matches decides, else the rules
on its own text at the priority the kernel gave it (``<N>`` of ``dmesg -r``).

    python -m nanomodel.harvest.kernel_capture            # this machine's dmesg -r
    python -m nanomodel.harvest.kernel_capture FILE ...   # saved ``dmesg -r`` outputs
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from nanomodel import realtext
from nanomodel.harvest.capture_io import DATA, MAX_PER_SHAPE
from nanomodel.harvest.match import Matcher

# <prio>[  seconds.micro] message   (dmesg -r: the facility is folded into prio)
_DMESG = re.compile(r"^<(?P<prio>\d+)>\[\s*(?P<ts>\d+\.\d+)\]\s?(?P<msg>.*)$")
_LEVELS = ["emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"]


# Read and decided by a person (the rules fire on the wrong sense of a word here): boot
# parameters name `panic=1` without anything panicking; a machine without DMI tables, a
# kernel locked down by its configuration, a PMU hidden by virtualization are how this
# machine is built, not faults.
_REVIEWED_NORMAL = [
    (re.compile(r"^(Kernel )?[Cc]ommand line: "), "review: the boot parameters, not an event"),
    (re.compile(r"^DMI not present or invalid"), "review: no DMI tables (a VM or a board "
     "without them); nothing to act on"),
    (re.compile(r"^Kernel is locked down from "), "review: lockdown chosen by the kernel's "
     "configuration; nothing failed"),
    (re.compile(r"^Performance Events: .* not available"), "review: no hardware PMU here; "
     "the kernel uses software events"),
]


def _shape(text: str) -> str:
    return re.sub(r"[0-9a-f]{2,}|\d+", "0", text)


def kernel_rows(dmesg_r: str, how: str) -> list[dict[str, str]]:
    """Labelled rows for the messages of one ``dmesg -r`` output (debug level dropped)."""
    matcher = Matcher(
        [(t.template, t.label, t.reason, t.origin) for t in realtext.load_templates(["linux"])],
        source="linux",
    )
    shapes: Counter[str] = Counter()
    rows: list[dict[str, str]] = []
    for raw in dmesg_r.splitlines():
        m = _DMESG.match(raw)
        if m is None or not m.group("msg").strip():
            continue
        level = _LEVELS[int(m.group("prio")) & 7]
        if level == "debug":
            continue
        msg = m.group("msg").rstrip()
        shapes[_shape(msg)] += 1
        if shapes[_shape(msg)] > MAX_PER_SHAPE:
            continue
        label, reason = matcher.label(msg, level, "hardware")
        for pattern, why in _REVIEWED_NORMAL:
            if pattern.search(msg):
                label, reason = "normal", why
        rows.append({"source": "linux", "text": f"[{float(m.group('ts')):12.6f}] {msg}",
                     "label": label, "reason": reason, "how": how, "level": level})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="saved `dmesg -r` outputs")
    parser.add_argument("--out", type=Path, default=DATA / "linux.jsonl")
    args = parser.parse_args(argv)
    rows: list[dict[str, str]] = []
    if args.files:
        for path in args.files:
            rows += kernel_rows(path.read_text(errors="replace"), f"dmesg -r of {path.name}")
    else:
        text = subprocess.run(["dmesg", "-r"], check=True, capture_output=True, text=True).stdout
        rows += kernel_rows(text, "dmesg -r of the capture machine after boot")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    counts = Counter(r["label"] for r in rows)
    print(f"{len(rows)} kernel lines -> {args.out}: {dict(counts)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
