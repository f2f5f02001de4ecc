"""The classic-server capture scenario: an FTP daemon run from inetd, people at terminals
using su, sudo and login, and the nightly logrotate job.

Everything runs in a private mount namespace where the accounts (the sshd scenario's
users plus ``intern``, who is not in sudoers, and ``ftp`` for anonymous FTP), the PAM
files (without the modules that fail only in a container, see
:func:`scenarios_ssh.pam_copy`), ``/etc/sudoers``, ``/etc/ftpusers``, ``/etc/hosts.deny``,
the logrotate configuration and state, ``/var/log`` and ``/run`` are scratch copies:
nothing of this machine's accounts, logs or runtime state is read or changed.

- FTP: Debian's ``inetutils-inetd`` in the server namespace starts ``tcpd`` →
  ``inetutils-ftpd -l -a pam`` per connection (the classic ``/etc/inetd.conf`` line);
  ``ftp_client.py`` in the client namespace plays the users and the internet (anonymous
  downloads, uploads, listings, a mistyped password, unknown users, root refused by
  ``ftpusers``, port scans, a name guesser, an idle client timed out); one host is
  refused by TCP wrappers.
- Terminals: ``tty_user.py`` types at su, sudo and login on pseudo-terminals (:func:`tty_plan`):
  mostly routine (a script su-ing to a service user, an admin su-ing to root, sudo with
  and without a password, console logins), some trouble (a wrong su password, sudo's three
  wrong passwords, a user not in sudoers, a command sudoers does not allow, a login
  with an unknown name).
- logrotate: Debian's own ``/etc/cron.daily/logrotate`` (which logs ``ALERT exited
  abnormally`` itself) run as cron would, its output forwarded to syslog as systemd's
  journal forwards a service's output; healthy nights rotate and HUP the capture's
  rsyslogd, then a night with a broken configuration file and one with a log directory
  everyone may write to (logrotate refuses to rotate there).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from nanomodel.harvest.netns import (
    CLI,
    CLIENT_HOSTS,
    SERVER,
    SRV,
    Proc,
    _stop_pidfile,
    marker,
    private_mounts,
    run_in,
)
from nanomodel.harvest.scenarios_ssh import PASSWORD, USERS, _accounts, pam_copy

FTP_CLIENT = Path(__file__).with_name("ftp_client.py")
TTY_USER = Path(__file__).with_name("tty_user.py")
CLASSIC_USERS = {**USERS, "intern": 1502, "ftp": 1503}
INTERN_PASSWORD = "Summer2026"
ROOT_PASSWORD = "R00t-console!"
# The host TCP wrappers refuse (the last client address)
DENIED_HOST = CLIENT_HOSTS[-1]
PAM_FILES = (
    "su",
    "su-l",
    "sudo",
    "login",
    "ftp",
    "common-session",
    "common-session-noninteractive",
)
# login's pam_loginuid needs a right the container lacks, as cron's does
PAM_DROP = ("pam_systemd.so", "pam_limits.so", "pam_loginuid.so")

SUDOERS = """Defaults\tenv_reset
Defaults\tsecure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
Defaults\ttimestamp_timeout=0
Defaults\t!mail_badpass, !mail_no_user
root\tALL=(ALL:ALL) ALL
deploy\tALL=(ALL:ALL) ALL
bkpuser\tALL=(root) NOPASSWD: /usr/bin/du, /usr/bin/rsync, /bin/true
"""
INETD_CONF = "ftp\tstream\ttcp\tnowait\troot\t/usr/sbin/tcpd\t/usr/sbin/ftpd -l -a pam -t 6\n"
HOSTS = "".join(f"{h}\tws-{i:02d}.plant.lan ws-{i:02d}\n" for i, h in enumerate(CLIENT_HOSTS[:12]))
LOG_FILES = ("messages", "secure", "xferlog", "cron", "maillog")
LOGROTATE_CONF = """weekly
rotate 4
create
include /etc/logrotate.d
/var/log/wtmp {{
    missingok
    monthly
    create 0664 root utmp
    rotate 1
}}
"""
LOGROTATE_SYSLOG = """/var/log/messages /var/log/secure /var/log/cron /var/log/maillog {{
    daily
    rotate 4
    missingok
    notifempty
    compress
    delaycompress
    sharedscripts
    postrotate
        kill -HUP $(cat {pidfile}) 2>/dev/null || true
    endscript
}}
/var/log/xferlog {{
    daily
    rotate 7
    missingok
    compress
}}
"""
# A package's file with a typo and a log that is gone: logrotate skips both and fails
LOGROTATE_BROKEN = """/var/log/app/ingest.log {
    rotat 7
    daily
    compress
}
/var/log/app/worker.log {
    daily
    rotate 7
}
"""


def logrotate_state(paths: list[str], day: str) -> str:
    """logrotate's state file saying every log was last rotated on ``day`` (2026-12-1)."""
    rows = "".join(f'"{p}" {day}-4:0:0\n' for p in paths)
    return "logrotate state -- version 2\n" + rows


def _su(uid: int, user: str, target: str, password: str, cmd: str) -> dict[str, object]:
    argv = ["su", "-", target, "-c", cmd] if uid == 0 else ["su", "-c", cmd, "-", target]
    script = [] if uid == 0 else [["assword", password + "\n"]]
    return {"user": user, "uid": uid, "argv": argv, "script": script}


def _su_no_tty(target: str) -> dict[str, object]:
    """root's script switching to a service account, no terminal on its input (``on none``)."""
    cmd = f"su -s /bin/sh -c true {target} </dev/null >/dev/null 2>&1"
    return {"user": "root", "uid": 0, "argv": ["setsid", "-w", "sh", "-c", cmd], "script": []}


def _sudo(uid: int, user: str, answers: list[str], *cmd: str) -> dict[str, object]:
    return {
        "user": user,
        "uid": uid,
        "argv": ["sudo", *cmd],
        "script": [["assword", a + "\n"] for a in answers],
    }


def _login(*typed: tuple[str, str]) -> dict[str, object]:
    """``login`` on a terminal; each pair is a name and a password typed at its prompts."""
    script = [
        step for name, pw in typed for step in (["login: ", name + "\n"], ["assword", pw + "\n"])
    ]
    return {"user": "root", "uid": 0, "argv": ["login"], "script": [*script, ["", "exit\n"]]}


def tty_plan(rng: random.Random, sessions: int) -> list[dict[str, object]]:
    """Terminal sessions for :mod:`tty_user`: mostly routine, some trouble (weights)."""
    deploy, bkp, intern = USERS["deploy"], USERS["bkpuser"], CLASSIC_USERS["intern"]
    kinds: list[tuple[int, dict[str, object]]] = [
        (5, _su(0, "root", "bkpuser", "", "true")),
        (3, _su(0, "root", "deploy", "", "true")),
        (6, _su_no_tty("nobody")),
        (5, _su(deploy, "deploy", "root", ROOT_PASSWORD, "uptime")),
        (8, _sudo(deploy, "deploy", [PASSWORD], "systemctl", "--version")),
        (4, _sudo(deploy, "deploy", [PASSWORD], "cat", "/var/log/messages")),
        (6, _sudo(bkp, "bkpuser", [], "-n", "/usr/bin/du", "-sh", "/home")),
        (4, _login(("deploy", PASSWORD))),
        (1, _login(("root", ROOT_PASSWORD))),
        (2, _login(("deploy", PASSWORD[:-1]), ("deploy", PASSWORD))),
        (2, _su(deploy, "deploy", "root", "r00t", "id")),
        (1, _su(intern, "intern", "root", "admin", "id")),
        (1, _sudo(deploy, "deploy", ["Deploy2026", "deploy", "Depl0y-2025!"], "id")),
        (1, _sudo(intern, "intern", [INTERN_PASSWORD], "cat", "/etc/shadow")),
        (1, _login(("admin", "admin"), ("guest", "guest"))),
    ]
    weights, items = zip(*kinds, strict=True)
    return [json.loads(json.dumps(s)) for s in rng.choices(items, weights, k=sessions)]


def _prepare(work: Path, root: Path) -> str:
    """Scratch accounts, PAM, sudoers, FTP and logrotate files; the mounts as shell.

    ``/etc`` is an overlay whose upper layer holds the scenario's files (``/etc/ftpusers``
    does not exist on this machine, so it cannot be a bind-mount target)."""
    _accounts(work, CLASSIC_USERS, {"deploy": PASSWORD, "intern": INTERN_PASSWORD})
    etc = root / "etc"
    (etc / "pam.d").mkdir(parents=True)
    root_hash = subprocess.run(
        ["openssl", "passwd", "-6", ROOT_PASSWORD], check=True, capture_output=True, text=True
    ).stdout.strip()
    for name in ("passwd", "shadow", "group"):
        lines = (work / f"etc-{name}").read_text().splitlines()
        if name == "shadow":  # root gets a password: admins su to root, log in on the console
            lines = [
                f"root:{root_hash}:20000:0:99999:7:::" if x.startswith("root:") else x
                for x in lines
            ]
        (etc / name).write_text("\n".join(lines) + "\n")
    (etc / "shadow").chmod(0o640)
    for name in PAM_FILES:
        pam_copy(work, name, PAM_DROP)
        shutil.copy(work / f"pam-{name}", etc / "pam.d" / name)
    (etc / "ftpusers").write_text("root\ndaemon\nbin\nsys\n")
    (etc / "hosts.deny").write_text(f"ftpd: {DENIED_HOST}\n")
    # names for the admins' workstations, no DNS (the namespaces have none to ask)
    (etc / "hosts").write_text(Path("/etc/hosts").read_text() + HOSTS)
    nsswitch = Path("/etc/nsswitch.conf").read_text().splitlines()
    (etc / "nsswitch.conf").write_text(
        "".join("hosts: files\n" if x.startswith("hosts:") else x + "\n" for x in nsswitch)
    )
    (etc / "sudoers").write_text(SUDOERS)
    (etc / "sudoers").chmod(0o440)
    (etc / "logrotate.conf").write_text(LOGROTATE_CONF.format())
    (root / "inetd.conf").write_text(INETD_CONF)
    (work / "home" / "ftp" / "README").write_text("Mirror of the plant's firmware images.\n")
    for d in ("overlay-work", "varlog", "run", "logrotate.d", "state"):
        (root / d).mkdir()
    (root / "run" / "utmp").touch()
    (root / "varlog" / "wtmp").touch()
    (root / "logrotate.d" / "rsyslog").write_text(
        LOGROTATE_SYSLOG.format(pidfile=work / "rsyslogd.pid")
    )
    overlay = f"lowerdir=/etc,upperdir={etc},workdir={root}/overlay-work"
    binds = [
        (f"{work}/home", "/home"),
        (f"{root}/logrotate.d", "/etc/logrotate.d"),
        (f"{root}/state", "/var/lib/logrotate"),
        (f"{root}/varlog", "/var/log"),
        (f"{root}/run", "/run"),
        (f"{work}/scenario-log.sock", "/dev/log"),  # see capture_io.SCENARIO_HOST
    ]
    return " && ".join(
        [f"mount -t overlay overlay -o {overlay} /etc"]
        + [f"mount --bind {src} {dst}" for src, dst in binds]
    )


def _night(binds: str, root: Path, day: str) -> None:
    """One night's logrotate job, as cron runs it; its output goes to syslog."""
    for name in LOG_FILES:
        (root / "varlog" / name).write_text(f"{day} a day of {name}\n" * 50)
    paths = [f"/var/log/{n}" for n in LOG_FILES]
    state = root / "state" / "status"
    state.write_text(logrotate_state(paths, day))
    state.chmod(0o640)  # as logrotate writes it
    job = "sh /etc/cron.daily/logrotate 2>&1 | logger -t logrotate"
    subprocess.run(list(private_mounts(binds, job)), capture_output=True, timeout=60, check=False)
    time.sleep(3)  # rsyslogd reports a HUP that comes right after another only once


def classic(work: Path) -> list[Proc]:
    root = work / "classic"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    binds = _prepare(work, root)
    rng = random.Random(1977)
    marker("classic server: inetd starts (ftp through tcpd)")
    inetd = f"exec /usr/sbin/inetutils-inetd -p {work}/inetd.pid {root}/inetd.conf"
    run_in(SRV, *private_mounts(binds, inetd))
    time.sleep(1)
    marker("classic server: FTP users and the internet (anonymous, uploads, typos, scanners)")
    run_in(
        CLI,
        sys.executable,
        str(FTP_CLIENT),
        SERVER,
        "150",
        "21",
        PASSWORD,
        *CLIENT_HOSTS[:-1],
        timeout=600,
    )
    marker("classic server: a host TCP wrappers refuse")
    run_in(CLI, sys.executable, str(FTP_CLIENT), SERVER, "4", "5", PASSWORD, DENIED_HOST)
    marker("classic server: people at terminals (su, sudo, login)")
    plan = root / "tty-plan.json"
    plan.write_text(json.dumps(tty_plan(rng, 180)))
    subprocess.run(
        list(private_mounts(binds, f"exec python3 {TTY_USER} {plan}")),
        capture_output=True,
        timeout=900,
        check=False,
    )
    for day in ("2026-11-28", "2026-11-29", "2026-11-30"):
        marker(f"classic server: nightly logrotate (logs of {day})")
        _night(binds, root, day)
    marker("classic server: nightly logrotate with a broken configuration file")
    (root / "logrotate.d" / "ingest").write_text(LOGROTATE_BROKEN)
    (root / "varlog" / "app").mkdir()
    (root / "varlog" / "app" / "ingest.log").write_text("ok\n")
    _night(binds, root, "2026-12-01")
    marker("classic server: nightly logrotate, a log directory everyone may write to")
    (root / "logrotate.d" / "ingest").write_text(LOGROTATE_BROKEN.replace("rotat ", "rotate "))
    (root / "varlog" / "app" / "worker.log").write_text("ok\n")
    (root / "varlog" / "app").chmod(0o777)
    _night(binds, root, "2026-12-02")
    marker("classic server: inetd stops (SIGTERM)")
    _stop_pidfile(work / "inetd.pid")
    time.sleep(0.5)
    return []
