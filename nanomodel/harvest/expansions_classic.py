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

from nanomodel.harvest.expansions_spool import cups_rows, sendmail_rows

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


CLASSIC_EXPANSION_ROWS: dict[str, list[Row]] = {
    "sendmail": sendmail_rows(),
    "gpm": _GPM_HEADERS,
    "cups": cups_rows(),
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


__all__ = ["CLASSIC_EXPANSION_ROWS"]
