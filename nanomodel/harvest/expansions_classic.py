"""Sentences the classic server daemons assemble at run time, written out once per variant.

xinetd writes its per-connection records piecewise (``log.c``: ``"%s: %s"`` with
``START``/``FAIL``/``EXIT`` and the service id, then `` pid=%d``, `` from=%s``, the
failure's name from ``access_code_names``, `` status=%d``, `` duration=%ld(sec)`` as the
service's ``log_on_success``/``log_on_failure`` flags ask), and its start banner from
``#ifdef``'d literals; the harvester sees neither as one format string. Each row is
(file, anchor, template, level, label, reason) as
:class:`nanomodel.harvest.overrides.Expansion` takes them: the anchor is a literal on the
producing line, and the harvest fails if it has gone. The records are written at the
service log's level (Debian's ``log_type = SYSLOG daemon info``): info.

The labels are a technician's: a connection served (``START``, ``EXIT``, ``USERID``) is
routine whatever its status; a connection refused by access control (TCP wrappers,
``only_from``/``no_access``, ``access_times``, a host over its ``per_source`` limit, a
client without the identification the service requires) is ``security``, as tcpd's
``refused connect from`` is; a service refusing clients because it is at its limits
(``instances``, ``cps``, ``max_load``) is ``network``; one that cannot fork is
``software``.
"""

from __future__ import annotations

Row = tuple[str, str, str, str, str, str]

_ROUTINE_START = "a connection accepted and its server started: the super-server's routine"
_ROUTINE_EXIT = "a service's server ended after a connection; routine whatever its status"


def _xinetd_rows() -> list[Row]:
    rows: list[Row] = [
        (
            "src/log.c",
            "START_ENTRY",
            "START: %{inetsvc} pid=%d from=%s",
            "info",
            "normal",
            _ROUTINE_START,
        ),
        ("src/log.c", "START_ENTRY", "START: %{inetsvc} from=%s", "info", "normal", _ROUTINE_START),
        ("src/log.c", "START_ENTRY", "START: %{inetsvc} pid=%d", "info", "normal", _ROUTINE_START),
        (
            "src/log.c",
            "EXIT_ENTRY",
            "EXIT: %{inetsvc} status=%d pid=%d duration=%ld(sec)",
            "info",
            "normal",
            _ROUTINE_EXIT,
        ),
        (
            "src/log.c",
            "EXIT_ENTRY",
            "EXIT: %{inetsvc} status=%d pid=%d",
            "info",
            "normal",
            _ROUTINE_EXIT,
        ),
        (
            "src/log.c",
            "EXIT_ENTRY",
            "EXIT: %{inetsvc} status=%d duration=%ld(sec)",
            "info",
            "normal",
            _ROUTINE_EXIT,
        ),
        (
            "src/log.c",
            "EXIT_ENTRY",
            "EXIT: %{inetsvc} pid=%d duration=%ld(sec)",
            "info",
            "normal",
            _ROUTINE_EXIT,
        ),
        (
            "src/log.c",
            "EXIT_ENTRY",
            "EXIT: %{inetsvc} signal=%d pid=%d duration=%ld(sec)",
            "info",
            "normal",
            "a service's server ended by a signal, mostly the client hanging up (SIGPIPE, "
            "SIGHUP) or a stop; a crash of the server shows in its own log",
        ),
        (
            "src/ident.c",
            "USERID_ENTRY",
            "USERID: %{inetsvc} %s",
            "info",
            "normal",
            "the identd reply of a connecting client, recorded by log_on_success USERID",
        ),
        (
            "src/child.c",
            "NOID_ENTRY",
            "NOID: %{inetsvc} %s %s",
            "info",
            "security",
            "a client refused because it could not be identified and the service requires it",
        ),
        (
            "src/main.c",
            '"%s started with "',
            "2.3.15.3 started with libwrap loadavg labeled-networking options compiled in.",
            "notice",
            "normal",
            "xinetd's start banner",
        ),
        (
            "src/main.c",
            '"%s started with "',
            "2.3.15.3 started with no options compiled in.",
            "notice",
            "normal",
            "xinetd's start banner",
        ),
    ]
    refused = {
        "address": (
            "security",
            "a connection refused by the service's only_from/no_access lists: a host that "
            "is not allowed tried to connect",
        ),
        "time": ("security", "a connection refused outside the service's access_times"),
        "libwrap": (
            "security",
            "a connection refused by TCP wrappers (hosts.deny), as tcpd's 'refused connect from'",
        ),
        "per_source_limit": (
            "security",
            "one host holds more connections than its per_source limit: a flood or a "
            "misbehaving client, refused",
        ),
        "service_limit": (
            "network",
            "the service is at its instances limit and refuses further clients",
        ),
        "connections per second": (
            "network",
            "connections came faster than the service's cps limit: xinetd refuses them and "
            "disables the service for a while",
        ),
        "load": ("network", "the machine's load is over max_load: xinetd refuses clients"),
        "process_limit": (
            "software",
            "xinetd could not start the service's server: the process limit is reached",
        ),
        "fork": ("software", "xinetd could not fork the service's server: clients refused"),
    }
    for name, (label, why) in refused.items():
        for tail in (" from=%s", ""):
            rows.append(
                (
                    "src/access.c",
                    f'"{name}"',
                    f"FAIL: %{{inetsvc}} {name}{tail}",
                    "info",
                    label,
                    why,
                )
            )
    return rows


def _cups_rows() -> list[Row]:
    """cupsdSetJobState() logs the job's new state message as ``[Job N] <message>``: at
    error for a stopped or aborted job, at info otherwise (``scheduler/job.c``); the
    messages are literals assigned elsewhere, some with the ErrorLog path (Debian's
    ``/var/log/cups/error_log``) written in."""
    consult = "please consult the /var/log/cups/error_log file for details."
    backend = "the printer's backend failed (printer unreachable, refused or broken connection): "
    return [
        (
            "scheduler/job.c",
            '"Job completed."',
            "[Job %d] Job completed.",
            "info",
            "normal",
            "a print job finished",
        ),
        (
            "scheduler/job.c",
            '"Job canceled."',
            "[Job %d] Job canceled.",
            "info",
            "normal",
            "a print job canceled by its user or an administrator",
        ),
        (
            "scheduler/job.c",
            '"Job held."',
            "[Job %d] Job held.",
            "info",
            "normal",
            "a print job held as its user asked",
        ),
        (
            "scheduler/job.c",
            '"Job paused."',
            "[Job %d] Job paused.",
            "info",
            "normal",
            "a print job paused",
        ),
        (
            "scheduler/job.c",
            '"Job canceled at printer."',
            "[Job %d] Job canceled at printer.",
            "info",
            "normal",
            "a print job canceled on the printer's panel",
        ),
        (
            "scheduler/job.c",
            '"Job held for authentication."',
            "[Job %d] Job held for authentication.",
            "info",
            "normal",
            "a job waiting for its user's credentials for the printer",
        ),
        (
            "scheduler/job.c",
            '"Retrying job on same printer."',
            "[Job %d] Retrying job on same printer.",
            "info",
            "normal",
            "a job retried after a printer hiccup (ErrorPolicy retry-job); a printer that keeps "
            "failing is reported by its stop",
        ),
        (
            "scheduler/job.c",
            '"Printer stopped due to backend errors; please consult',
            f"[Job %d] Printer stopped due to backend errors; {consult}",
            "error",
            "network",
            backend + "CUPS stops the queue and nothing prints until someone restarts it",
        ),
        (
            "scheduler/job.c",
            '"Job aborted due to backend errors; please consult',
            f"[Job %d] Job aborted due to backend errors; {consult}",
            "error",
            "network",
            backend + "the job is lost",
        ),
        (
            "scheduler/job.c",
            '"Job held indefinitely due to backend errors; please consult',
            f"[Job %d] Job held indefinitely due to backend errors; {consult}",
            "info",
            "network",
            backend + "the job waits until someone releases it",
        ),
        (
            "scheduler/job.c",
            '"Job stopped due to filter errors; please consult',
            f"[Job %d] Job stopped due to filter errors; {consult}",
            "error",
            "software",
            "the printer driver's filter failed on the job: nothing of it prints",
        ),
        (
            "scheduler/job.c",
            '"Aborting job because it cannot be printed."',
            "[Job %d] Aborting job because it cannot be printed.",
            "error",
            "software",
            "no filter chain converts the document for this printer (a driver missing): the job "
            "is lost",
        ),
        (
            "scheduler/job.c",
            '"Stopping job because the scheduler ran out of memory."',
            "[Job %d] Stopping job because the scheduler ran out of memory.",
            "error",
            "software",
            "cupsd ran out of memory",
        ),
    ]


# gpm's report.c logs a header line of its own before every message: the level's text
# and the reporting file and line (``GPM_TEXT_* FLS``), then the message on the next line.
_GPM_HEADERS: list[Row] = [
    (
        "src/headers/message.h",
        '"*** info "',
        "*** info [%s(%d)]:",
        "info",
        "normal",
        "gpm's header line before an informational message",
    ),
    (
        "src/headers/message.h",
        '"*** warning "',
        "*** warning [%s(%d)]:",
        "warning",
        "normal",
        "gpm's header line before a warning (a resize, a stale pid file, an odd packet)",
    ),
    (
        "src/headers/message.h",
        '"*** err "',
        "*** err [%s(%d)]:",
        "error",
        "hardware",
        "gpm's header line before an error, which the next line names (mostly the mouse "
        "device or the console not answering)",
    ),
    (
        "src/headers/message.h",
        '"O0o.oops(): "',
        "O0o.oops(): [%s(%d)]:",
        "error",
        "software",
        "gpm's header line before a fatal error: gpm exits and the console mouse stops",
    ),
]


def _sendmail_rows() -> list[Row]:
    """sendmail's per-message lines: logsender() writes ``from=..., size=..., nrcpts=...,
    msgid=..., proto=..., daemon=..., relay=...`` and logdelivery() ``to=..., delay=...,
    mailer=..., pri=..., relay=..., dsn=..., stat=...`` from pieces (``headers.c``,
    ``deliver.c``); each variant here is one a queue file's life writes."""
    head = "%{qid}: "
    to_smtp = "to=<%s>, delay=%s, xdelay=%s, mailer=esmtp, pri=%ld, relay=%s. [%s], "
    routine = "a message delivered or taken in: the mail server's routine"
    rows: list[Row] = [
        (
            "sendmail/headers.c",
            '"from=%.200s, size=%ld, class=%d, nrcpts=%d"',
            head + "from=<%s>, size=%ld, class=%d, nrcpts=%d, msgid=<%s>, proto=ESMTP, "
            "daemon=MTA-v4, relay=%s [%s]",
            "info",
            "normal",
            routine,
        ),
        (
            "sendmail/headers.c",
            '"from=%.200s, size=%ld, class=%d, nrcpts=%d"',
            head + "from=<%s>, size=%ld, class=%d, nrcpts=%d, msgid=<%s>, relay=%s@localhost",
            "info",
            "normal",
            routine,
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + to_smtp + "dsn=2.0.0, stat=Sent (%s)",
            "info",
            "normal",
            routine,
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + "to=<%s>, ctladdr=<%s> (%d/%d), delay=%s, xdelay=%s, mailer=local, pri=%ld, "
            "dsn=2.0.0, stat=Sent",
            "info",
            "normal",
            routine,
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + "to=<%s>, delay=%s, xdelay=%s, mailer=esmtp, pri=%ld, relay=%s., dsn=4.0.0, "
            "stat=Deferred: Connection refused by %s.",
            "info",
            "normal",
            "a remote mail server refuses connections: the message stays queued and is retried; "
            "routine on a mail server",
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + "to=<%s>, delay=%s, xdelay=%s, mailer=esmtp, pri=%ld, relay=%s. [%s], "
            "dsn=4.0.0, stat=Deferred: Connection timed out with %s.",
            "info",
            "normal",
            "a remote mail server does not answer: the message stays queued and is retried; "
            "routine on a mail server",
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + "to=<%s>, delay=%s, mailer=esmtp, pri=%ld, dsn=5.1.1, stat=User unknown",
            "info",
            "normal",
            "mail for an address that does not exist bounces: routine",
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + "to=<%s>, delay=%s, mailer=esmtp, pri=%ld, dsn=4.4.3, stat=Deferred: Name "
            "server: %s: host name lookup failure",
            "info",
            "network",
            "this server cannot resolve mail hosts' names: outgoing mail stalls in the queue",
        ),
        (
            "sendmail/deliver.c",
            '", stat="',
            head + "to=<%s>, delay=%s, xdelay=%s, mailer=local, pri=%ld, dsn=4.0.0, "
            "stat=Deferred: local mailer (%s) exited with EX_TEMPFAIL",
            "info",
            "software",
            "local delivery fails (the local mailer cannot write the mailbox): mail waits in "
            "the queue",
        ),
    ]
    return rows


CLASSIC_EXPANSION_ROWS: dict[str, list[Row]] = {
    "sendmail": _sendmail_rows(),
    "gpm": _GPM_HEADERS,
    "cups": _cups_rows(),
    "xinetd": _xinetd_rows(),
    # rpc.statd's and rpc.mountd's start line: "Version " VERSION " starting" (VERSION
    # comes from the build's config.h, which the harvester does not read)
    "nfs-utils": [
        (
            "utils/statd/statd.c",
            '"Version " VERSION " starting"',
            "Version 2.6.2 starting",
            "notice",
            "normal",
            "rpc.statd or rpc.mountd starting",
        ),
    ],
}

# (source, regex over the template, label, reason): reviewed decisions the rules get
# wrong, kept with the harvest so every run decides them the same way
# (found where the level-only cap would keep or drop them at random)
CLASSIC_OVERRIDE_ROWS: list[tuple[str, str, str, str]] = [
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

__all__ = ["CLASSIC_EXPANSION_ROWS", "CLASSIC_OVERRIDE_ROWS"]
