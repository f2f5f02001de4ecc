"""Boot a real systemd in the rig's container and export what it logs, for the model's
device-journal evaluation (:mod:`nanomodel.harvest.capture_systemd` labels it).

Usage (root; the cached Debian root file system of :mod:`hil.rootfs`; a manual tool, CI
never runs it)::

    python -m hil.journal_capture /work/scratch/systemd-capture

:class:`hil.systemd_target.SystemdTarget` boots the container; the units and scenario
scripts of :mod:`nanomodel.harvest.scenarios_systemd` run in it, each after a marker line
(``nfcapture: BEGIN <how>``); it powers off, and the journal files it wrote are exported
with ``journalctl --directory -o json`` to ``WORKDIR/journal.jsonl`` (boot and shutdown
included), then labelled into ``nanomodel/data/real/journal/``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from hil.systemd_target import SystemdTarget
from nanomodel.harvest.capture_systemd import label_capture
from nanomodel.harvest.scenarios_systemd import SCENARIOS, UNITS


def capture(workdir: Path) -> Path:
    """Boot, run every scenario, power off; the journal's export in WORKDIR."""
    target = SystemdTarget(workdir / "target", name="nfcapture-systemd")
    export = workdir / "journal.jsonl"
    with target:
        units = target.path("/etc/systemd/system")
        for name, text in UNITS.items():
            (units / name).write_text(text)
        target.run("systemctl daemon-reload")
        for how, script, timeout in SCENARIOS:
            target.run(f"logger -t nfcapture {shlex.quote('BEGIN ' + how)}")
            proc = target.run(script, check=False, timeout=timeout)
            if proc.returncode != 0:
                print(f"scenario {how!r} exited {proc.returncode}: {proc.stderr[-500:]}",
                      file=sys.stderr)
        target.run("logger -t nfcapture 'BEGIN power off'")
    journal = target.path("/var/log/journal")
    out = subprocess.run(["journalctl", "--directory", str(journal), "-o", "json",
                          "--no-pager"], check=True, capture_output=True, text=True)
    export.write_text(out.stdout)
    return export


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir", type=Path, help="scratch directory outside the repository")
    ap.add_argument("--no-write", action="store_true",
                    help="print the label counts only; leave the journal evaluation set as it is")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("root is needed (systemd-nspawn)", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    capture(args.workdir)
    return label_capture(args.workdir, write=not args.no_write)


if __name__ == "__main__":
    raise SystemExit(main())
