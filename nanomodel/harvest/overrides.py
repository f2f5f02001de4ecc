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
from collections.abc import Iterable
from dataclasses import dataclass

from nanomodel.harvest.expansions_classic import CLASSIC_EXPANSION_ROWS
from nanomodel.harvest.expansions_hpc import HPC_EXPANSION_ROWS, HPC_OVERRIDE_ROWS
from nanomodel.harvest.overrides_classic import CLASSIC_OVERRIDE_ROWS
from nanomodel.harvest.overrides_core import CORE_OVERRIDE_ROWS


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
        # Older OpenSSH releases (canohost.c's get_remote_hostname, logit) ended both
        # reverse-DNS sentences with a warning 9.2 no longer writes; servers of those
        # releases still fill public logs. The anchor is the sentence 9.2 writes for the
        # same check (canohost.c); the labels are the review of 9.2's sentence. Added
        # to templates/openssh.jsonl as the harvest writes expansion rows (no re-run:
        # tests/test_harvest_expansions.py checks the file holds them).
        _ssh(
            "Address %.100s maps to %.600s, but this does not map back to the address - "
            "POSSIBLE BREAK-IN ATTEMPT!",
            "normal",
            "older OpenSSH: a client's reverse DNS does not map back (a misconfigured DNS, "
            "not an attack; sshd goes on to authenticate it as any client)",
            anchor='"Address %.100s maps to %.600s',
            file="canohost.c",
        ),
        _ssh(
            "reverse mapping checking getaddrinfo for %.700s [%s] failed - "
            "POSSIBLE BREAK-IN ATTEMPT!",
            "normal",
            "older OpenSSH: the name a client's address reverse-resolves to does not "
            "resolve (a misconfigured DNS, not an attack; sshd goes on as for any client)",
            anchor='"Address %.100s maps to %.600s',
            file="canohost.c",
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

Decision = tuple[str, re.Pattern[str], str, str]


def _compiled(rows: Iterable[tuple[str, str, str, str]]) -> list[Decision]:
    return [(src, re.compile(p), label, why) for src, p, label, why in rows]


def _first(table: list[Decision], source: str, text: str) -> tuple[str, str] | None:
    """(label, reason) of the first row of ``source`` whose pattern is found in ``text``."""
    for src, pattern, label, reason in table:
        if src == source and pattern.search(text):
            return label, reason
    return None


OVERRIDES = _compiled((*CORE_OVERRIDE_ROWS, *HPC_OVERRIDE_ROWS, *CLASSIC_OVERRIDE_ROWS))

# the RAS reporters' assembled event sentences (expansions_hpc.py explains their labels)
EXPANSIONS.update(
    {src: [Expansion(*row) for row in rows] for src, rows in HPC_EXPANSION_ROWS.items()}
)
EXPANSIONS.update(
    {src: [Expansion(*row) for row in rows] for src, rows in CLASSIC_EXPANSION_ROWS.items()}
)

# (source, regex over a logged message, label, reason): messages a generic template of the
# same source also matches, told apart by their own words. BIND logs a zone transfer's
# start, end and failure through one ``xfrout_log(..., "%s: %s")``-like call family; the
# harvested ``transfer of '%s/%s': %s: %s`` (the failure, at error) matches the success
# line ``transfer of 'plant.lan/IN': AXFR ended: 1 messages, ...`` logged at info too.
# Reviewed when a capture showed them (LABELLING.md, "Captured lines").
LINE_DECISIONS = _compiled(
    (
        (
            "named",
            r"transfer of '[^']+': (?:AXFR|IXFR|AXFR-style IXFR) (?:started|ended)\b",
            "normal",
            "a zone transfer to a secondary starting or ending with its counts: routine",
        ),
        (
            "named",
            r"^\S+:\d+: unknown option '[^']*'$",
            "software",
            "named.conf holds an option named does not know: named refuses the whole "
            "configuration (\"loading configuration: failure\" follows), so it does not "
            "start or keeps its old configuration",
        ),
        # The kernel's boot (captured in QEMU, hil.kernel_capture): lines of files the
        # harvest did not select, which the rules read as failures by a word
        (
            "linux",
            r"^(?:Kernel )?[Cc]ommand line: ",
            "normal",
            "the boot parameters echoed at every boot (\"panic=10\" is a setting, not a "
            "panic)",
        ),
        (
            "linux",
            r"^Performance Events: PMU not available due to virtualization",
            "normal",
            "a virtual machine has no hardware performance counters: the kernel uses "
            "software events, every boot",
        ),
        (
            "linux",
            r"^acpi \S+: _OSC: OS now controls \[",
            "normal",
            "the firmware hands PCIe features (hot plug, power management, error "
            "reporting) to the OS: a boot step",
        ),
        (
            "linux",
            r"^EDAC MC: Ver: ",
            "normal",
            "the memory error reporting core loaded: a boot step, no error",
        ),
        (
            "linux",
            r"functionality not available on this system - This is not a bug\.$",
            "normal",
            "the IOMMU driver says what the machine lacks, and says it is not a bug",
        ),
        (
            "linux",
            r"^acpi \S+: fail to add MMCONFIG information, can't access extended PCI "
            r"configuration space under this bridge\.$",
            "normal",
            "the firmware describes no MMCONFIG area for a PCI (not PCIe) host bridge, as "
            "on older chipsets and QEMU's i440FX: every boot, nothing to do",
        ),
        (
            "linux",
            r"^ata\d+: SATA link down \(SStatus 0 SControl 300\)$",
            "normal",
            "a SATA port with nothing plugged in, probed at boot (SStatus 0: no device; "
            "SControl 300: the port's usual setting); a disk that drops out is told by the "
            "exception and reset lines before this one (the harvested template, network by a "
            "rule, is reviewed normal since: review/linux.jsonl)",
        ),
        (
            "linux",
            r"^\S+: attempt to access beyond end of device$",
            "storage",
            "I/O past the end of a block device: the device vanished or shrank (a pulled "
            "disk reads as size 0, \"limit=0\" on the next line) or a file system is bigger "
            "than its device; printed at info, so the level rule made it normal (its "
            "harvested template is reviewed storage since: review/linux.jsonl)",
        ),
        (
            # a macro in service.h, which the harvest (C files only) did not see
            "xinetd",
            r"^Service \S+: server exit with 0 running servers$",
            "normal",
            "a server of a service xinetd paused for its cps limit exits after the pause "
            "reset the service's count (seen in the capture after every such pause): "
            "xinetd's bookkeeping, harmless; the pause has its own alert",
        ),
    )
)


def line_decision(source: str, message: str) -> tuple[str, str] | None:
    """(label, reason) when a reviewed decision covers this logged message whatever
    template matches it."""
    return _first(LINE_DECISIONS, source, message)


def apply_override(source: str, template: str) -> tuple[str, str] | None:
    """(label, reason) when an override covers this template."""
    return _first(OVERRIDES, source, template)
