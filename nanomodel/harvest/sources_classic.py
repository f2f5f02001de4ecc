"""The daemons of a classic Linux server or gateway: the super-server (xinetd), the SNMP
agent (net-snmp's snmpd), the NFS server's helpers (nfs-utils), the automounter
(autofs), the print scheduler (cupsd), the console mouse server (gpm), the MTA
(sendmail), the name server (named) and Apache 2.0's Tomcat connector (mod_jk2).

Only the daemons' own code paths are read, never their command-line tools or test
programs: snmpd's agent (``agent/``, the AgentX master, the VACM and USM access checks),
not the ``snmpget``/``snmpwalk`` tools or the library's printing helpers; rpc.statd,
rpc.mountd (with the export and client-authentication code in ``support/export`` it
calls), rpc.idmapd and nfsdcld, not ``exportfs``/``mount.nfs``/``showmount``.

Some of these daemons' loggers add text of their own around the format, which the
harvest writes as the log shows it (:data:`DECORATORS`): xinetd's ``parsemsg`` appends
``[file=...] [line=...]`` and its ``msg`` puts ``<pid> {<function>} `` before a LOG_CRIT
message; net-snmp's ``config_perror``/``config_pwarn`` put ``<file>: line <n>: Error: ``
before theirs. ``debug_words`` names the level arguments that mean a debug facility
(nfs-utils' ``xlog(D_GENERAL, ...)``): those calls are dropped like other debug output.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from nanomodel.harvest import clex
from nanomodel.harvest.source import Source

CLASSIC_SOURCES: list[Source] = [
    Source(
        "xinetd",
        "xinetd",
        ("src/*.c",),
        r"msg|parsemsg",
        "software",
        exclude=("test", "/tests/", "itox.c"),
        format_index=2,
    ),
    Source(
        "snmpd",
        "net-snmp",
        (
            "agent/snmpd.c",
            "agent/snmp_agent.c",
            "agent/agent_read_config.c",
            "agent/agent_trap.c",
            "agent/agent_registry.c",
            "agent/agent_handler.c",
            "agent/mib_modules.c",
            "agent/mibgroup/agentx/master*.c",
            "agent/mibgroup/agentx/protocol.c",
            "agent/mibgroup/mibII/vacm_conf.c",
            "agent/mibgroup/snmpv3/*.c",
            "agent/mibgroup/smux/smux.c",
            "snmplib/snmpusm.c",
        ),
        r"snmp_log|snmp_log_perror|config_perror|config_pwarn|netsnmp_config_error|"
        r"netsnmp_config_warn",
        "network",
        prefixes={
            r"config_perror|netsnmp_config_error": "%s: line %d: Error: ",
            r"config_pwarn|netsnmp_config_warn": "%s: line %d: Warning: ",
        },
    ),
    Source(
        "nfs-utils",
        "nfs-utils",
        (
            "utils/statd/statd.c",
            "utils/statd/monitor.c",
            "utils/statd/callback.c",
            "utils/statd/notlist.c",
            "utils/statd/rmtcall.c",
            "utils/statd/stat.c",
            "utils/statd/svc_run.c",
            "utils/statd/hostname.c",
            "utils/statd/misc.c",
            "utils/mountd/*.c",
            "utils/idmapd/idmapd.c",
            "utils/nfsdcld/*.c",
            "support/export/*.c",
            "support/nsm/*.c",
        ),
        r"xlog|xlog_warn|xlog_err|xlog_errno",
        "network",
        debug_words=r"D_\w+",
    ),
    Source(
        "autofs",
        "autofs",
        ("daemon/*.c", "lib/*.c", "modules/*.c"),
        r"error|crit|warn|info|notice|logerr|logmsg|log_error|log_crit|log_warn|log_info|"
        r"log_notice",
        "storage",
        func_prefix=r"error|crit",
        call_levels={r"logerr|logmsg": "crit"},
    ),
    Source(
        "cups",
        "cups",
        ("scheduler/*.c",),
        r"cupsdLogMessage|cupsdLogJob|cupsdLogClient|cupsdLogPrinter",
        "software",
        exclude=(
            "test",
            "cups-deviced",
            "cups-driverd",
            "cups-exec",
            "cups-lpd",
            "cupsfilter",
        ),
        prefixes={r"cupsdLogJob": "[Job %d] ", r"cupsdLogClient": "[Client %d] "},
    ),
    Source(
        "gpm",
        "gpm",
        ("src/daemon/*.c", "src/mice.c", "src/synaptics.c", "src/twiddler.c"),
        r"gpm_report",
        "hardware",
        exclude=("test", "usage.c"),
        call_levels={r"GPM_PR_OOPS": "crit"},
        format_index=1,
    ),
    Source(
        "sendmail",
        "sendmail",
        ("sendmail/*.c",),
        r"sm_syslog|syserr",
        "network",
        exclude=("test", "/tests/", "sendmail/trace.c"),
        call_levels={r"syserr": "crit"},
    ),
    Source(
        "named",
        "bind9",
        (
            "bin/named/server.c",
            "bin/named/main.c",
            "lib/ns/query.c",
            "lib/ns/client.c",
            "lib/ns/xfrout.c",
            "lib/ns/update.c",
            "lib/ns/notify.c",
            "lib/dns/xfrin.c",
            "lib/dns/zone.c",
            "lib/dns/resolver.c",
        ),
        r"isc_log_write|ns_client_log|dns_zone_log|dns_zone_logc|notify_log|xfrin_log|"
        r"xfrout_log|xfrout_log1|update_log|named_main_earlywarning|named_main_earlyfatal",
        "network",
        prefixes={
            r"dns_zone_log|dns_zone_logc|notify_log": "zone %s: ",
            r"ns_client_log": "client @%p %{peer} (%s): ",
            r"xfrin_log": "transfer of '%s' from %s: ",
            r"xfrout_log|xfrout_log1": "client @%p %{peer} (%s): transfer of '%s/%s': ",
            r"update_log": "client @%p %{peer} (%s): updating zone '%s/%s': ",
        },
        # the ISC_LOG_* argument decides: category and module names (NS_LOGMODULE_CLIENT)
        # would otherwise be read as levels before it
        call_levels={
            r"named_main_earlyfatal|ISC_LOG_CRITICAL": "crit",
            r"ISC_LOG_ERROR": "error",
            r"named_main_earlywarning|ISC_LOG_WARNING": "warning",
            r"ISC_LOG_NOTICE": "notice",
            r"ISC_LOG_INFO": "info",
        },
        debug_words=r"ISC_LOG_DEBUG",
    ),
    Source(
        "mod_jk2",
        "mod_jk2",
        ("jk/native2/server/apache2/*.c", "jk/native2/common/*.c"),
        r"jkLog|ap_log_error|ap_log_perror",
        "network",
        # the in-process JVM (JNI channel/worker, vm loader) and the Windows/NetWare
        # loggers are not what an Apache 2.0 server talking AJP to Tomcat runs
        exclude=(
            "test",
            "jk_channel_jni.c",
            "jk_worker_jni.c",
            "jk_vm_default.c",
            "jk_logger_win32.c",
            "jk_nwmain.c",
        ),
        # jk_logger_apache2.c hands JK_LOG_INFO to Apache at APLOG_NOTICE and JK_LOG_ERROR
        # and JK_LOG_EMERG at APLOG_ERR; APLOG_STARTUP's level bits are APLOG_EMERG
        call_levels={
            r"JK_LOG_INFO": "notice",
            r"JK_LOG_ERROR|JK_LOG_EMERG": "error",
            r"APLOG_STARTUP": "crit",
        },
        debug_words=r"JK_LOG_DEBUG|APLOG_DEBUG",
    ),
]


def _autofs(name: str, level: str, msg: str, text: str, line: int) -> str:
    """autofs's logerr() writes the calling function and line first (``log.h``)."""
    if name == "logerr":
        return f"{clex.enclosing_function(text, line) or '%{func}'}:%d: {msg}"
    return msg


def _sendmail(name: str, level: str, msg: str, text: str, line: int) -> str:
    """sm_syslog() writes ``<queue id>: `` first, ``NOQUEUE: `` for a NULL id and nothing
    for NOQID (``conf.c``); syserr() logs ``SYSERR(<user>): `` and the text after its
    '!'/'@' flag and SMTP reply codes (``err.c`` fmtmsg)."""
    call = text.split("\n")[line - 1]
    if name == "syserr":
        body = re.sub(r"^\d{3}(?: \d\.\d{1,3}\.\d{1,3})? ", "", msg.lstrip("!@"))
        return f"%{{qid}}: SYSERR(%s): {body}"
    head = re.search(r"sm_syslog\([^,]+,\s*([^,]+?)\s*,", call)
    arg = head.group(1) if head else ""
    if arg == "NOQID":
        return msg
    if re.fullmatch(r"NULL|\(char \*\) ?(0|NULL)", arg):
        return f"NOQUEUE: {msg}"
    return f"%{{qid}}: {msg}"


def _xinetd(name: str, level: str, msg: str, text: str, line: int) -> str:
    """xinetd's parser messages end with the file and line; LOG_CRIT ones start with the
    pid and the ``func`` name the calling function declares (``msg.c`` prepare_buffer)."""
    if name == "parsemsg":
        msg += " [file=%s] [line=%d]"
    if level == "crit":
        msg = f"%d {{{_func_variable(text, line) or '%{func}'}}} {msg}"
    return msg


def _func_variable(text: str, line: int) -> str | None:
    """The value of ``const char *func = "..."`` in the function holding ``line`` (xinetd
    names its functions for the log by hand): searched upwards until the previous
    function's closing brace."""
    lines = text.split("\n")
    for i in range(min(line - 1, len(lines) - 1), -1, -1):
        if lines[i].startswith("}"):
            return None
        m = re.search(r'\bfunc\s*=\s*"([^"]+)"', lines[i])
        if m:
            return m.group(1)
    return None


# source → (call name, level, message, file text, line) → the message as the log shows it
DECORATORS: dict[str, Callable[[str, str, str, str, int], str]] = {
    "xinetd": _xinetd,
    "autofs": _autofs,
    "sendmail": _sendmail,
}

__all__ = ["CLASSIC_SOURCES", "DECORATORS"]
