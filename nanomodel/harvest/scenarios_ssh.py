"""The sshd capture scenario: a busy internet-facing SSH gateway.

sshd runs in the server namespace and in a mount namespace of its own where
``/etc/passwd``, ``/etc/shadow`` and ``/etc/group`` are copies with two extra users
(``deploy`` with a password and a key, ``bkpuser`` with a key; ``/home`` is a scratch
directory), and PAM's session stack
lacks the two modules that fail only in a container (``pam_systemd`` without a system
bus, ``pam_limits`` without the right to raise limits), so real password logins
happen without touching this machine's accounts. Scanners, brute-forcers, old clients,
admins and sftp users come from the 50 client-side addresses, several at a time; the
repetition is the point (real gateways print the same few lines all day).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from nanomodel.harvest.netns import (
    CLI,
    CLIENT_HOSTS,
    CLIENT_HOSTS6,
    SERVER,
    SERVER6,
    SRV,
    Proc,
    _stop_pidfile,
    marker,
    private_mounts,
    run_in,
    run_many,
)

USERS = {"deploy": 1500, "bkpuser": 1501}
PASSWORD = "Depl0y-2026!"
# Names brute-forcers try; deploy and root exist here, the rest do not
GUESSES = [
    "admin",
    "oracle",
    "test",
    "ubuntu",
    "pi",
    "user",
    "guest",
    "postgres",
    "git",
    "ftpuser",
    "support",
    "root",
    "root",
    "root",
    "deploy",
    "ubnt",
    "hadoop",
    "mysql",
]
SCANNER = Path(__file__).with_name("ssh_scanner.py")


# PAM modules that fail only in a container (no system bus, no right to raise limits)
CONTAINER_PAM = ("pam_systemd.so", "pam_limits.so")


def pam_copy(work: Path, name: str, drop: tuple[str, ...] = CONTAINER_PAM) -> None:
    """``work/pam-<name>``: /etc/pam.d/<name> without the modules in ``drop``."""
    kept = [
        line
        for line in Path(f"/etc/pam.d/{name}").read_text().splitlines()
        if not any(module in line for module in drop)
    ]
    (work / f"pam-{name}").write_text("\n".join(kept) + "\n")


def _accounts(
    work: Path, users: Mapping[str, int] = USERS, passwords: Mapping[str, str] | None = None
) -> None:
    """passwd/shadow/group copies with the scenario's users, bind-mounted for sshd only
    (``passwords``: the users who have one, by default deploy; the others have none)."""
    passwords = {"deploy": PASSWORD} if passwords is None else passwords
    hashes = {
        user: subprocess.run(
            ["openssl", "passwd", "-6", pw], check=True, capture_output=True, text=True
        ).stdout.strip()
        for user, pw in passwords.items()
    }
    passwd = Path("/etc/passwd").read_text()
    shadow = Path("/etc/shadow").read_text()
    group = Path("/etc/group").read_text()
    for user, uid in users.items():
        home = work / "home" / user
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, uid, uid)
        passwd += f"{user}:x:{uid}:{uid}::/home/{user}:/bin/sh\n"  # work/home is /home
        shadow += f"{user}:{hashes.get(user, '*')}:20000:0:99999:7:::\n"
        group += f"{user}:x:{uid}:\n"
    for name, text in (("passwd", passwd), ("shadow", shadow), ("group", group)):
        (work / f"etc-{name}").write_text(text)
    for name in ("sshd", "common-session"):
        pam_copy(work, name)
    (work / "etc-shadow").chmod(0o640)


def _start(work: Path, cfg: Path) -> None:
    binds = " && ".join(
        [f"mount --bind {work}/etc-{n} /etc/{n}" for n in ("passwd", "shadow", "group")]
        + [f"mount --bind {work}/pam-{n} /etc/pam.d/{n}" for n in ("sshd", "common-session")]
        + [f"mount --bind {work}/home /home"]
    )
    run_in(SRV, *private_mounts(binds, f"exec /usr/sbin/sshd -f {cfg}"))


def sshd(work: Path) -> list[Proc]:
    keys = work / "sshkeys"
    shutil.rmtree(keys, ignore_errors=True)
    keys.mkdir()
    for name, kind in (
        ("host_ed25519", "ed25519"),
        ("host_rsa", "rsa"),
        ("user", "ed25519"),
        ("bkpuser", "ed25519"),
        ("other", "ed25519"),
    ):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(keys / name)], check=True
        )
    auth = keys / "authorized"
    auth.mkdir()
    (auth / "root").write_text((keys / "user.pub").read_text())
    (auth / "deploy").write_text((keys / "user.pub").read_text())
    (auth / "bkpuser").write_text((keys / "bkpuser.pub").read_text())
    _accounts(work)
    askpass, goodpass = work / "askpass.sh", work / "goodpass.sh"
    askpass.write_text("#!/bin/sh\necho wrong-password\n")
    goodpass.write_text(f"#!/bin/sh\necho '{PASSWORD}'\n")
    for f in (askpass, goodpass):
        f.chmod(0o755)
    cfg = work / "sshd_config"
    cfg.write_text(f"""Port 22
ListenAddress {SERVER}
ListenAddress {SERVER6}
HostKey {keys}/host_ed25519
HostKey {keys}/host_rsa
PidFile {work}/sshd.pid
UsePAM yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
MaxAuthTries 3
MaxStartups 10:30:24
LoginGraceTime 12
StrictModes no
AuthorizedKeysFile {auth}/%u
Subsystem sftp internal-sftp -l INFO
LogLevel INFO
""")
    Path("/run/sshd").mkdir(exist_ok=True)
    marker("sshd gateway in netns: start")
    _start(work, cfg)
    time.sleep(1)
    rng = random.Random(22)
    base = (
        "ssh",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=quiet",
    )
    ask = {
        **os.environ,
        "SSH_ASKPASS": str(askpass),
        "SSH_ASKPASS_REQUIRE": "force",
        "DISPLAY": ":0",
    }
    good = {**ask, "SSH_ASKPASS": str(goodpass)}
    pw = ("-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no")
    admins = CLIENT_HOSTS[:4]
    commands = [
        "uptime",
        "df -h /",
        "systemctl is-active nanofleet-agent || true",
        "cat /proc/loadavg",
        "true",
        "journalctl -n 20 || true",
    ]

    def key_login(user: str, key: str) -> tuple[str, ...]:
        return (
            CLI,
            *base,
            "-b",
            rng.choice(admins),
            "-o",
            "BatchMode=yes",
            "-i",
            str(keys / key),
            f"{user}@{SERVER}",
            rng.choice(commands),
        )

    marker("sshd gateway in netns: admins and automation log in with keys and run commands")
    run_many(
        [key_login(rng.choice(["root", "deploy"]), "user") for _ in range(40)]
        + [key_login("bkpuser", "bkpuser") for _ in range(15)],
        workers=4,
    )
    marker("sshd gateway in netns: internet scanners, banner grabbers and old clients")
    run_in(
        CLI,
        sys.executable,
        str(SCANNER),
        SERVER,
        "260",
        "7",
        *CLIENT_HOSTS[10:],
        *CLIENT_HOSTS6,
        timeout=300,
    )
    marker("sshd gateway in netns: password guessing from many hosts")
    jobs = []
    for _ in range(70):
        user, tries = rng.choice(GUESSES), rng.choice(["1", "1", "2", "3", "4"])
        src = rng.choice(CLIENT_HOSTS[10:] + CLIENT_HOSTS6)
        target = SERVER6 if ":" in src else SERVER
        jobs.append(
            (
                CLI,
                *base,
                *pw,
                "-b",
                src,
                "-o",
                f"NumberOfPasswordPrompts={tries}",
                f"{user}@{target}",
                "true",
            )
        )
    run_many(jobs, workers=8, env=ask)
    marker("sshd gateway in netns: one host guessing root's password, one connection at a time")
    for _ in range(6):  # alone on the line, rsyslog folds the repeats: "message repeated"
        run_in(
            CLI,
            *base,
            *pw,
            "-b",
            CLIENT_HOSTS[33],
            "-o",
            "NumberOfPasswordPrompts=3",
            f"root@{SERVER}",
            "true",
            env=ask,
        )
    marker("sshd gateway in netns: a user logs in with the right password")
    run_many(
        [
            (CLI, *base, *pw, "-b", rng.choice(admins), f"deploy@{SERVER}", "uptime")
            for _ in range(8)
        ],
        workers=2,
        env=good,
    )
    marker("sshd gateway in netns: a user mistypes the password once, then gets it right")
    run_in(
        CLI,
        *base,
        *pw,
        "-b",
        admins[1],
        "-o",
        "NumberOfPasswordPrompts=1",
        f"deploy@{SERVER}",
        "true",
        env=ask,
    )
    run_in(CLI, *base, *pw, "-b", admins[1], f"deploy@{SERVER}", "true", env=good)
    marker("sshd gateway in netns: sftp uploads and listings")
    batch = work / "sftp.batch"
    (work / "report.csv").write_text("t,v\n" * 200)
    batch.write_text(
        f"ls\nput {work}/report.csv\nget report.csv {work}/back.csv\n"
        "rename report.csv old.csv\nrm old.csv\nls -l\n"
    )
    run_many(
        [
            (
                CLI,
                "sftp",
                "-q",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                f"BindAddress={rng.choice(admins)}",
                "-i",
                str(keys / ("bkpuser" if i % 2 else "user")),
                "-b",
                str(batch),
                f"{'bkpuser' if i % 2 else 'deploy'}@{SERVER}",
            )
            for i in range(12)
        ],
        workers=3,
    )
    marker("sshd gateway in netns: interactive shell sessions")
    for i in range(4):
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                CLI,
                *base,
                "-tt",
                "-b",
                admins[i],
                "-o",
                "BatchMode=yes",
                "-i",
                str(keys / "user"),
                f"deploy@{SERVER}",
            ],
            input=b"echo hello\nexit\n",
            capture_output=True,
            timeout=20,
            check=False,
        )
    marker("sshd gateway in netns: key that is not authorised, and root with a password")
    run_many(
        [
            (
                CLI,
                *base,
                "-b",
                rng.choice(CLIENT_HOSTS[10:]),
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-i",
                str(keys / "other"),
                f"deploy@{SERVER}",
                "true",
            )
            for _ in range(6)
        ],
        workers=3,
    )
    marker("sshd gateway in netns: a burst of connections (MaxStartups throttling)")
    run_in(
        CLI,
        "python3",
        "-c",
        f"import socket,time;c=[socket.create_connection(('{SERVER}',22),5) "
        "for _ in range(30)];time.sleep(2);[s.close() for s in c]",
        timeout=30,
    )
    marker("sshd gateway in netns: more scanners while admins keep working")
    run_in(
        CLI,
        sys.executable,
        str(SCANNER),
        SERVER,
        "120",
        "8",
        *CLIENT_HOSTS[10:],
        *CLIENT_HOSTS6,
        timeout=300,
    )
    run_many([key_login("deploy", "user") for _ in range(15)], workers=3)
    marker("sshd gateway in netns: reload (SIGHUP)")
    _stop_pidfile(work / "sshd.pid", signal.SIGHUP)
    time.sleep(1.5)
    run_many([key_login("root", "user") for _ in range(3)], workers=1)
    marker("sshd gateway in netns: stop (SIGTERM)")
    _stop_pidfile(work / "sshd.pid")
    time.sleep(0.5)
    return []
