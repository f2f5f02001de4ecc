"""The postfix capture scenario: a "local only" mail server (Debian's default choice).

postfix runs in the server namespace and in a mount namespace of its own where
``/etc/postfix``, ``/var/spool/postfix``, ``/var/lib/postfix``, ``/var/mail`` and
``/etc/resolv.conf`` are scratch copies (nothing of this machine's mail system is used;
the resolver points at nothing, so client name lookups fail at once as on an isolated
gateway). Local programs hand it mail with ``sendmail`` (cron jobs, alerts), hosts of the
client namespace speak SMTP to it: ordinary deliveries to root, mail for unknown local
users, relay attempts, and the scanners that connect and leave.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from nanomodel.harvest.netns import (
    CLI,
    CLIENT_HOSTS,
    SERVER,
    SRV,
    Proc,
    in_mount_ns,
    marker,
    run_in,
)

_MAIN_CF = """smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no
append_dot_mydomain = no
readme_directory = no
compatibility_level = 3.6
smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination
myhostname = gateway.site.lan
alias_maps =
myorigin = gateway.site.lan
mydestination = gateway.site.lan, localhost
relayhost =
mynetworks = 127.0.0.0/8 10.77.0.2/32
mailbox_size_limit = 0
inet_interfaces = all
inet_protocols = ipv4
default_transport = error
relay_transport = error
"""

# One SMTP client session per round, stdlib only, from a chosen source address
_SMTP = """
import random, smtplib, socket, sys, time
server, seed, hosts = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
rng = random.Random(seed)
kinds = ["deliver"] * 6 + ["unknown", "relay", "scan", "scan", "helo_only"]
for i in range(int(hosts.pop(0))):
    kind, src = rng.choice(kinds), rng.choice(hosts)
    try:
        if kind == "scan":
            s = socket.create_connection((server, 25), 5, source_address=(src, 0))
            s.recv(200); s.close(); continue
        c = smtplib.SMTP(server, 25, timeout=8, source_address=(src, 0))
        c.ehlo(rng.choice(["sensor-gw", "mail.example.net", "localhost", "[%s]" % src]))
        if kind == "helo_only":
            c.quit(); continue
        rcpt = {"deliver": "root@gateway.site.lan", "unknown": "admin@gateway.site.lan",
                "relay": "victim%d@example.com" % rng.randint(1, 99)}[kind]
        msg = "Subject: nightly report %d\\r\\n\\r\\nall checks passed\\r\\n" % i
        try:
            c.sendmail("monitor@site.lan", [rcpt], msg)
        except smtplib.SMTPException:
            pass
        c.quit()
    except OSError:
        pass
    time.sleep(rng.uniform(0.05, 0.3))
"""


def postfix(work: Path) -> list[Proc]:
    root = work / "postfix"
    shutil.rmtree(root, ignore_errors=True)
    etc, spool, lib, mail = root / "etc", root / "spool", root / "lib", root / "mail"
    shutil.copytree("/etc/postfix", etc)
    for d in (spool, lib, mail):
        d.mkdir(parents=True)
    mail.chmod(0o2775)
    shutil.chown(lib, "postfix", "postfix")
    shutil.chown(mail, "root", "mail")
    (etc / "main.cf").write_text(_MAIN_CF)
    # no chroot: the chroot would need copies of /etc files the Debian init script makes
    master = (etc / "master.cf").read_text().splitlines()
    fixed = []
    for line in master:
        f = line.split()
        if len(f) >= 8 and not line.startswith((" ", "#")) and f[4] == "y":
            f[4] = "n"
            line = "  ".join(f)
        fixed.append(line)
    (etc / "master.cf").write_text("\n".join(fixed) + "\n")
    (root / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    binds = {
        etc: "/etc/postfix",
        spool: "/var/spool/postfix",
        lib: "/var/lib/postfix",
        mail: "/var/mail",
        root / "resolv.conf": "/etc/resolv.conf",
    }
    def in_ns(command: str, timeout: float = 60) -> None:
        run_in(SRV, *in_mount_ns(binds, command), timeout=timeout)

    marker("postfix in netns: start (local-only mail server)")
    in_ns("postfix start")
    time.sleep(3)
    marker("postfix in netns: local programs mail root with sendmail (cron, alerts)")
    in_ns(
        "for i in 1 2 3 4 5 6 7 8; do printf 'Subject: backup %s\\n\\nbackup done\\n' $i "
        "| /usr/sbin/sendmail root; done"
    )
    time.sleep(3)
    marker("postfix in netns: hosts deliver by SMTP; relay attempts, unknown users, scanners")
    script = work / "smtp_clients.py"
    script.write_text(_SMTP)
    run_in(CLI, "python3", str(script), SERVER, "5", "120", "10.77.0.2", *CLIENT_HOSTS, timeout=300)
    time.sleep(3)
    marker("postfix in netns: reload")
    in_ns("postfix reload")
    time.sleep(2)
    marker("postfix in netns: stop")
    in_ns("postfix stop")
    time.sleep(2)
    return []
