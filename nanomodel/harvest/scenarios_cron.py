"""The cron capture scenario: Debian's cron running jobs for the whole capture.

cron runs in the server namespace and in a mount namespace of its own where
``/etc/crontab``, ``/etc/cron.d`` and ``/var/spool/cron/crontabs`` are the scenario's
(nothing of this machine's crontabs is read or run), and ``/etc/pam.d/cron`` lacks
``pam_loginuid`` and ``pam_limits``, which fail only in a container. It starts first and
keeps running while the other scenarios do (every minute its jobs run), and stops at the
end of the capture. Jobs are the ordinary kind (health checks, a sync, a job whose script is
missing; ``MAILTO=""`` as on many devices, so nothing is mailed through this machine) plus
two broken crontab files (a syntax error, a group-writable file) that cron refuses.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from nanomodel.harvest.netns import SRV, Proc, in_mount_ns, marker, start_in

_CRONTAB = """SHELL=/bin/sh
PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly
"""
_JOBS = """MAILTO=""
* * * * * root /usr/bin/test -d /tmp
* * * * * root cat /proc/loadavg >/dev/null
*/2 * * * * root echo "sensor sync done"
* * * * * root /usr/local/sbin/nf-backup-rotate.sh >/dev/null 2>&1
*/3 * * * * root /usr/local/bin/collect-metrics --push
"""
_ROOT_SPOOL = """# m h dom mon dow command
MAILTO=""
* * * * * /bin/true
*/2 * * * * date >/dev/null
"""


def cron(work: Path) -> list[Proc]:
    root = work / "cron"
    shutil.rmtree(root, ignore_errors=True)
    (root / "cron.d").mkdir(parents=True)
    (root / "spool").mkdir()
    (root / "crontab").write_text(_CRONTAB)
    (root / "cron.d" / "nfjobs").write_text(_JOBS)
    (root / "cron.d" / "broken").write_text("*/5 * * root /usr/bin/true\n")  # one field short
    lax = root / "cron.d" / "lax"
    lax.write_text("* * * * * root /bin/true\n")
    lax.chmod(0o664)
    spool = root / "spool" / "root"
    spool.write_text(_ROOT_SPOOL)
    spool.chmod(0o600)
    (root / "spool").chmod(0o1730)
    pam = "\n".join(
        line
        for line in Path("/etc/pam.d/cron").read_text().splitlines()
        if "pam_loginuid.so" not in line and "pam_limits.so" not in line
    )
    (root / "pam-cron").write_text(pam + "\n")
    binds = {
        root / "crontab": "/etc/crontab",
        root / "cron.d": "/etc/cron.d",
        root / "spool": "/var/spool/cron/crontabs",
        root / "pam-cron": "/etc/pam.d/cron",
    }
    marker("cron in netns: start; jobs run every minute while the other scenarios run")
    proc = start_in(SRV, *in_mount_ns(binds, "exec cron -f"))
    time.sleep(1)
    return [proc]
