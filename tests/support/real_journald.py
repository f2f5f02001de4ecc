"""Run this machine's real systemd-journald in a private mount namespace, one call per
"boot", writing to a persistent directory (the journald device tests; written by the third
review of the journal source's resume). The boot id is bind-mounted over
/proc/sys/kernel/random/boot_id, /run is a fresh tmpfs per boot (as after a reboot).
``unclean=True`` kills journald with SIGKILL (its files stay ONLINE, as after a power cut
or a watchdog abort); ``lost_after`` also loses what was written after a point (the page
cache writeback a power cut never saw). Needs root, ``unshare`` and systemd-journald."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

JOURNALD = Path("/lib/systemd/systemd-journald")
MACHINE_ID_FILE = Path("/etc/machine-id")
MACHINE_ID = MACHINE_ID_FILE.read_text().strip() if MACHINE_ID_FILE.exists() else ""


def available() -> bool:
    """Whether this machine can run the helper: journald, unshare, a machine id."""
    return JOURNALD.exists() and shutil.which("unshare") is not None and bool(MACHINE_ID)


def log_cmd(message: str, tag: str = "probe", uid: int | None = None,
            priority: str = "info") -> str:
    cmd = f"printf '%s\\n' {shlex.quote(message)} | systemd-cat -t {tag} -p {priority}"
    if uid is not None:
        cmd = (f"printf '%s\\n' {shlex.quote(message)} | setpriv --reuid={uid} --regid={uid} "
               f"--clear-groups systemd-cat -t {tag} -p {priority}")
    return cmd


def boot(var: Path, boot_id: str, commands: Sequence[str], unclean: bool = False,
         flushed: bool = True, between: str = "sleep 0.3",
         lost_after: int | None = None) -> str:
    """Run one boot; returns journald's stderr/stdout. ``lost_after=n``: a power cut that
    loses what was written after the first n commands: system.journal is copied (the
    page cache: what writeback had put on disk) after them, and put back after the kill."""
    var.mkdir(parents=True, exist_ok=True)
    dashed = f"{boot_id[:8]}-{boot_id[8:12]}-{boot_id[12:16]}-{boot_id[16:20]}-{boot_id[20:]}"
    bootfile = var.parent / f".boot-{boot_id}"
    bootfile.write_text(dashed + "\n")
    sysj = f"/var/log/journal/{MACHINE_ID}/system.journal"
    cmds = list(commands)
    if lost_after is not None:
        cmds.insert(lost_after, f"sleep 0.5; cp {sysj} /run/on-disk.journal")
    body = f"\n{between}\n".join(cmds)
    script = f"""
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal /run/log/journal /var/log/journal
mount --bind {shlex.quote(str(var))} /var/log/journal
mount --bind {shlex.quote(str(bootfile))} /proc/sys/kernel/random/boot_id
{"touch /run/systemd/journal/flushed" if flushed else ""}
{JOURNALD} > {shlex.quote(str(var.parent / 'journald.log'))} 2>&1 &
JP=$!
for i in $(seq 100); do echo up | systemd-cat -t journald-up 2>/dev/null && break; sleep 0.1; done
sleep 0.3
{body}
sleep 0.5
kill -{"KILL" if unclean else "TERM"} $JP
wait $JP || true
{f"cp /run/on-disk.journal {sysj}" if lost_after is not None else ""}
"""
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "bash", "-c", script],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return proc.stdout + proc.stderr


def entries(var: Path) -> list[dict[str, str]]:
    """Every entry (journalctl -o json order) with its cursor."""
    out = subprocess.run(["journalctl", "-D", str(var / MACHINE_ID), "-o", "json",
                          "--no-pager", "--output-fields=MESSAGE,_BOOT_ID,_UID,SYSLOG_IDENTIFIER"],
                         capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]
