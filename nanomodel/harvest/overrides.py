"""Per-template decisions that the general rules get wrong, and expansions of
messages the code assembles at run time.

``OVERRIDES``: (source, regex over the template) → (label, reason). They win over the
rules; every one is a reviewed decision.

``EXPANSIONS``: some messages are built from pieces (OpenSSH's auth_log writes
``"%s %s%s%s for %s%.100s from %.200s port %d ssh2%s%s"`` with ``Failed``/``Accepted``
as the first word; systemd's job results live in a table). The harvester cannot see
the sentence a log shows, so it is written here once per variant, with the file and a
literal ``anchor`` on the line that produces it; the harvester looks the line up and
fails if the anchor has gone, so an expansion cannot silently drift from the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nanomodel.harvest.expansions_classic import CLASSIC_EXPANSION_ROWS
from nanomodel.harvest.expansions_hpc import HPC_EXPANSION_ROWS, HPC_OVERRIDE_ROWS
from nanomodel.harvest.overrides_classic import CLASSIC_OVERRIDE_ROWS


@dataclass(frozen=True)
class Expansion:
    file: str
    anchor: str
    template: str
    level: str
    label: str
    reason: str


_AUTHLOG = "%s %s%s%s for %s%.100s from %.200s port %d ssh2%s%s"


def _ssh(
    template: str,
    label: str,
    reason: str,
    level: str = "info",
    anchor: str = _AUTHLOG,
    file: str = "auth.c",
) -> Expansion:
    return Expansion(file, anchor, template, level, label, reason)


def _sd(file: str, template: str, level: str, label: str, reason: str) -> Expansion:
    """A job result sentence from systemd's status-message tables ("Started foo.service.")."""
    return Expansion(f"src/core/{file}", f'"{template}"', template, level, label, reason)


EXPANSIONS: dict[str, list[Expansion]] = {
    "openssh": [
        _ssh(
            "Accepted password for %s from %s port %d ssh2", "normal", "a successful password login"
        ),
        _ssh(
            "Accepted publickey for %s from %s port %d ssh2: %s %s",
            "normal",
            "a successful key login",
        ),
        _ssh(
            "Accepted keyboard-interactive/pam for %s from %s port %d ssh2",
            "normal",
            "a successful login",
        ),
        _ssh("Failed password for %s from %s port %d ssh2", "security", "a wrong password"),
        _ssh(
            "Failed password for invalid user %s from %s port %d ssh2",
            "security",
            "a password tried for a user that does not exist",
        ),
        _ssh(
            "Failed publickey for %s from %s port %d ssh2: %s %s",
            "security",
            "a key that was refused",
        ),
        _ssh(
            "Failed none for invalid user %s from %s port %d ssh2",
            "security",
            "a login as an unknown user",
        ),
        _ssh(
            "Failed keyboard-interactive/pam for %s from %s port %d ssh2",
            "security",
            "a wrong password",
        ),
        _ssh(
            "Failed keyboard-interactive/pam for invalid user %s from %s port %d ssh2",
            "security",
            "a password tried for an unknown user",
        ),
        _ssh(
            "Postponed keyboard-interactive for %s from %s port %d ssh2 [preauth]",
            "normal",
            "a step of a normal login",
        ),
        _ssh(
            "Partial publickey for %s from %s port %d ssh2: %s %s",
            "normal",
            "first factor of a login",
        ),
        _ssh(
            "Connection closed by %s port %d [preauth]",
            "normal",
            "a client hung up before logging in: scanners and health checks do it all day",
            level="crit",
            anchor="Connection closed by %s",
            file="packet.c",
        ),
        _ssh(
            "Connection closed by authenticating user %s %s port %d [preauth]",
            "normal",
            "a client hung up during login: routine",
            level="crit",
            anchor="Connection closed by %s",
            file="packet.c",
        ),
        _ssh(
            "Connection closed by invalid user %s %s port %d [preauth]",
            "security",
            "an unknown user name was tried, then the client left",
            level="crit",
            anchor="Connection closed by %s",
            file="packet.c",
        ),
        _ssh(
            "Connection reset by %s port %d [preauth]",
            "normal",
            "a client hung up: routine",
            level="crit",
            anchor="Connection reset by %s",
            file="packet.c",
        ),
        _ssh(
            "Received disconnect from %s port %d:%d: %s [preauth]",
            "normal",
            "the client said goodbye (e.g. 11: Bye Bye)",
            anchor="Received disconnect from %s port %d:",
            file="packet.c",
        ),
        _ssh(
            "Received disconnect from %s port %d:%d: %s",
            "normal",
            "the client said goodbye",
            anchor="Received disconnect from %s port %d:",
            file="packet.c",
        ),
        _ssh(
            "Disconnected from user %s %s port %d",
            "normal",
            "a session ended",
            anchor="Disconnected from %s",
            file="packet.c",
        ),
        _ssh(
            "Disconnected from authenticating user %s %s port %d [preauth]",
            "normal",
            "a login attempt ended",
            anchor="Disconnected from %s",
            file="packet.c",
        ),
        _ssh(
            "Disconnected from invalid user %s %s port %d [preauth]",
            "security",
            "a login as an unknown user ended",
            anchor="Disconnected from %s",
            file="packet.c",
        ),
        _ssh(
            "error: maximum authentication attempts exceeded for %s from %s port %d ssh2 [preauth]",
            "security",
            "too many failed attempts in one connection",
            level="error",
            anchor="maximum authentication attempts exceeded",
            file="auth.c",
        ),
        _ssh(
            "Disconnecting authenticating user %s %s port %d: "
            "Too many authentication failures [preauth]",
            "security",
            "too many failed attempts",
            level="error",
            anchor="Too many authentication failures",
            file="auth.c",
        ),
    ],
    "systemd": [
        _sd("job.c", "Started %s.", "info", "normal", "a unit started"),
        _sd("job.c", "Failed to start %s.", "error", "software", "a service failed to start"),
        _sd(
            "job.c",
            "Dependency failed for %s.",
            "warning",
            "software",
            "a unit could not start because another failed",
        ),
        _sd(
            "job.c", "Timed out starting %s.", "error", "software", "a service hung while starting"
        ),
        _sd("job.c", "Stopped %s.", "info", "normal", "a unit stopped"),
        _sd("job.c", "Stopped %s with error.", "error", "software", "a unit stopped with an error"),
        _sd("job.c", "Reloaded %s.", "info", "normal", "a unit reloaded"),
        _sd("job.c", "Starting %s...", "info", "normal", "a unit starting"),
        _sd("job.c", "Stopping %s...", "info", "normal", "a unit stopping"),
        _sd("target.c", "Reached target %s.", "info", "normal", "boot progress"),
        _sd("socket.c", "Listening on %s.", "info", "normal", "a socket opened"),
        _sd("socket.c", "Closed %s.", "info", "normal", "a socket closed"),
        _sd("mount.c", "Mounted %s.", "info", "normal", "a file system mounted"),
        _sd("mount.c", "Unmounted %s.", "info", "normal", "a file system unmounted"),
        _sd(
            "mount.c",
            "Failed to mount %s.",
            "error",
            "storage",
            "a file system could not be mounted",
        ),
        _sd("service.c", "Finished %s.", "info", "normal", "a oneshot service finished"),
        _sd("slice.c", "Created slice %s.", "info", "normal", "a cgroup slice created"),
        _sd("slice.c", "Removed slice %s.", "info", "normal", "a cgroup slice removed"),
        _sd("swap.c", "Activated swap %s.", "info", "normal", "swap enabled"),
        _sd("automount.c", "Set up automount %s.", "info", "normal", "an automount point set up"),
    ],
}

OVERRIDES: list[tuple[str, re.Pattern[str], str, str]] = [
    (
        "nginx",
        re.compile(r"gracefully shutting down"),
        "normal",
        "a routine stop or reload of nginx (logged at notice; 'down' is not a failure here)",
    ),
    (
        "apache2",
        re.compile(r"caught SIG(?:TERM|WINCH|HUP|USR1)\b[^,]*, shutting down"),
        "normal",
        "a routine stop or graceful restart of Apache",
    ),
    (
        "openvpn",
        re.compile(r"Interrupted system call"),
        "normal",
        "a wait interrupted by the signal that stops or restarts the daemon",
    ),
    (
        "openvpn",
        re.compile(r"^Could not determine IPv4/IPv6 protocol"),
        "normal",
        "a fallback to IPv4 that needs nobody",
    ),
    (
        "dnsmasq",
        re.compile(r"\bHWM\b"),
        "normal",
        "a statistics line (high-water mark of a counter), printed on request",
    ),
    (
        "openssh",
        re.compile(r"beginning MaxStartups throttling"),
        "network",
        "too many unauthenticated connections at once: sshd starts dropping new ones "
        "(as its reviewed siblings 'in MaxStartups throttling' and 'past MaxStartups')",
    ),
    (
        "openssh",
        re.compile(r"^Invalid user"),
        "security",
        "a login attempt for a user that does not exist",
    ),
    (
        "openssh",
        re.compile(r"^User %\S+ from %\S+ not allowed"),
        "security",
        "a login refused by policy",
    ),
    (
        "openssh",
        re.compile(r"^(error: )?Bad packet length|^(error: )?Corrupted MAC"),
        "security",
        "tampered or corrupted traffic on an SSH connection",
    ),
    (
        "openssh",
        re.compile(r"^(fatal: )?Timeout before authentication"),
        "normal",
        "a client that never finished logging in: routine noise",
    ),
    (
        "mosquitto",
        re.compile(r"^Client %s (disconnected\.$|closed its connection|has exceeded timeout)"),
        "normal",
        "a client went away; brokers see this all day",
    ),
    (
        "mosquitto",
        re.compile(r"^Client %s disconnected due to (protocol error|malformed packet)"),
        "normal",
        "a client (or a scanner) spoke bad MQTT and was dropped; the broker is fine",
    ),
    (
        "mosquitto",
        re.compile(r"^Client %s already connected, closing old connection"),
        "normal",
        "a client reconnected before its old connection timed out: routine on flaky links",
    ),
    (
        "mosquitto",
        re.compile(r"^(New connection from|New client connected)"),
        "normal",
        "a client connected",
    ),
    # ZooKeeper 3.8 at INFO echoes its settings at every start; the words "timeout" and
    # "shutdown" in a setting's name are not failures (read on a captured ensemble)
    (
        "zookeeper",
        re.compile(
            r"^[a-z][\w.]*(?: set to|\s*=|\s*:)\s*-?[\w.{}]+(?: ms)?$"
            r"|^Configuring NIO connection handler with "
        ),
        "normal",
        "a setting echoed at start",
    ),
    (
        "zookeeper",
        re.compile(r"^[Ss]hutting down$"),
        "normal",
        "a server leaving its role (election, restart); the cause, if any, is its own line",
    ),
    (
        "zookeeper",
        re.compile(r"^(?:accepted|current)Epoch not found! Creating with a reasonable default"),
        "normal",
        "the first start of a server with an empty data directory",
    ),
    (
        "zookeeper",
        re.compile(r"^Txnlog size: \S+ exceeds sizeLimit: "),
        "normal",
        "the leader sends a lagging follower a snapshot instead of a diff: routine resync",
    ),
    (
        "zookeeper",
        re.compile(r"^Unable to load jetty, not starting JettyAdminServer"),
        "normal",
        "the optional HTTP admin server is off (Debian's class path has no Jetty servlet "
        "jars); the service works",
    ),
    (
        "zookeeper",
        re.compile(r"^Unexpected exception$"),
        "normal",
        "NIOServerCnxn's EndOfStreamException: a client went away without closing its "
        "session; servers see this all day",
    ),
    (
        "zookeeper",
        re.compile(r"^Notification time out: (?:[1-5]?\d{1,3}|6[0-3]\d\d)(?: ms)?$"),
        "normal",
        "an election waiting a few seconds for votes: routine while servers start or rejoin",
    ),
    (
        "zookeeper",
        re.compile(r"^Notification time out: "),
        "network",
        "an election that has waited 6 s or more: this server cannot reach a quorum of peers",
    ),
    (
        "zookeeper",
        re.compile(r"^Exception when following the leader|^Exception when using channel: "),
        "network",
        "a follower lost its leader, or a peer's channel broke: a server went away",
    ),
    # the classic-server capture: lines no harvested template explains
    (
        "pam",
        re.compile(r"^pam_ftp\([^)]*\): conversation failed"),
        "normal",
        "pam_ftp is asked first on every FTP login (Debian's PAM stack for ftpd) and gives way "
        "for a named user: routine",
    ),
    (
        "pam",
        re.compile(r"^pam_listfile\([^)]*\): Refused user"),
        "security",
        "a login refused by an access list (root on FTP): a denied access",
    ),
    (
        "logrotate",
        re.compile(r"^ALERT exited abnormally"),
        "software",
        "Debian's nightly logrotate job failed: some logs were not rotated and keep growing",
    ),
]

# the RAS reporters' assembled event sentences (expansions_hpc.py explains their labels)
EXPANSIONS.update(
    {src: [Expansion(*row) for row in rows] for src, rows in HPC_EXPANSION_ROWS.items()}
)
EXPANSIONS.update(
    {src: [Expansion(*row) for row in rows] for src, rows in CLASSIC_EXPANSION_ROWS.items()}
)

OVERRIDES.extend((src, re.compile(p), label, why) for src, p, label, why in HPC_OVERRIDE_ROWS)
OVERRIDES.extend((src, re.compile(p), label, why) for src, p, label, why in CLASSIC_OVERRIDE_ROWS)


def apply_override(source: str, template: str) -> tuple[str, str] | None:
    """(label, reason) when an override covers this template."""
    for src, pattern, label, reason in OVERRIDES:
        if src == source and pattern.search(template):
            return label, reason
    return None
