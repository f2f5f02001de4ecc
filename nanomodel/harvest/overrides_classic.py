"""Reviewed per-template decisions for the classic server daemons that the rules get
wrong, kept with the harvest so every run decides them the same way (registered in
:data:`nanomodel.harvest.overrides.OVERRIDES`): routine lines those daemons log at error
level, and failures that matter which the level-only cap would keep or drop at random."""

from __future__ import annotations

# (source, regex over the template, label, reason): reviewed decisions the rules get
# wrong, kept with the harvest so every run decides them the same way
# (found where the level-only cap would keep or drop them at random)
CLASSIC_OVERRIDE_ROWS: list[tuple[str, str, str, str]] = [
    (
        "named",
        r"^client @%p %\{peer\} \(%s\): query failed \(%s\)",
        "network",
        "a query named could not answer (SERVFAIL from an upstream or internal failure): "
        "clients get no answer",
    ),
    (
        "sendmail",
        r"lost input channel from %s to %s after %s$",
        "normal",
        "an SMTP client went away mid-session (a scanner, a spam bot, a dropped link): routine",
    ),
    (
        "sendmail",
        r"timeout waiting for input from %\.100s during %s$",
        "normal",
        "an SMTP client or server went idle and sendmail hung up: routine",
    ),
    (
        "cups",
        r"^\[Job %d\] Job submission timed out\.$",
        "normal",
        "a client that started sending a job and went away: the client's problem",
    ),
    (
        "xinetd",
        r"^Activating service %s$",
        "normal",
        "a service xinetd had paused for its cps limit is back (logged at error level)",
    ),
    (
        "xinetd",
        r"^removing service %s$",
        "normal",
        "a service dropped from the configuration at a reload (logged at error level)",
    ),
    (
        "xinetd",
        r"^Deactivating service %s due to %s\. Restarting in %d seconds\.$",
        "network",
        "connections came faster than the service's cps limit: xinetd disables the service "
        "for a while, and its clients are refused",
    ),
    (
        "nfs-utils",
        r"refused %s request from %s for %s \(%s\): not exported",
        "normal",
        "a client asking for a path this server does not export: the client's mistake, refused",
    ),
    (
        "nfs-utils",
        r"^POSSIBLE SPOOF/ATTACK ATTEMPT!$",
        "security",
        "rpc.statd got an SM_MON request whose host name is a path ('/' or a leading '.'): "
        "an attack on statd's state directory",
    ),
    (
        "nfs-utils",
        r"^Database health check failed! Database must be fixed manually\.$",
        "software",
        "nfsdcld's client-tracking database is broken: NFSv4 clients cannot reclaim their "
        "state after a reboot until someone fixes it",
    ),
    (
        "nfs-utils",
        r"^RPC service loop terminated unexpectedly\. Exiting\.\.\.$",
        "software",
        "rpc.mountd or rpc.statd stopped: clients cannot mount or recover locks",
    ),
    (
        "autofs",
        '^key "%s" not found in map source\\(s\\)\\.$',
        "normal",
        "a lookup of a name no map has (a user's typo, a file manager probing .hidden or "
        "autorun files under an automount point): logged at crit, routine",
    ),
    (
        "autofs",
        "^mounted %s on %s with timeout",
        "normal",
        "an automount point set up at start or at a map reload",
    ),
    (
        "autofs",
        "^mount\\(nfs\\): no hosts available$",
        "network",
        "no NFS server of the map entry answers: the share cannot be mounted",
    ),
    (
        "autofs",
        "^mount\\(nfs\\): nfs: mount failure %s on %s$",
        "network",
        "mounting an NFS share failed (server down, export refused): the path stays empty "
        "for its users",
    ),
    (
        "autofs",
        "^mount\\(generic\\): failed to mount %s \\(type %s\\) on %s$",
        "storage",
        "a local file system of an automount map cannot be mounted",
    ),
    (
        "autofs",
        "filesystem needs repair, won't mount$",
        "storage",
        "an ext file system of an automount map needs fsck: not mounted",
    ),
    (
        "autofs",
        "^lookup\\(program\\): lookup for %s failed$",
        "normal",
        "a program map declined a key: the name does not exist there, as 'key not found'",
    ),
    (
        "autofs",
        "^couldn't complete expire of %s$",
        "normal",
        "an idle mount still in use at expiry: autofs tries again later",
    ),
    (
        "autofs",
        "^can't shutdown: filesystem %s still busy$",
        "normal",
        "an unmount at stop waits for a busy file system: routine",
    ),
    (
        "autofs",
        "Unable to bind to the LDAP server",
        "network",
        "autofs cannot bind to its LDAP server: maps from LDAP are not read and their mounts fail",
    ),
    (
        "autofs",
        "Unable to download entire LDAP map",
        "network",
        "an automount map could be read from LDAP only in part: some mounts fail",
    ),
    (
        "autofs",
        "failed to find available server$",
        "network",
        "none of the configured LDAP servers answers: maps from LDAP are not read",
    ),
    (
        "autofs",
        "^lookup\\(file\\): file map %s missing or not readable$",
        "software",
        "an automount map file named in the master map is missing: its mounts fail",
    ),
]


__all__ = ["CLASSIC_OVERRIDE_ROWS"]
