"""The classic server daemons' sources: how their loggers' text is written and how their
messages are labelled."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from nanomodel import realtext
from nanomodel.harvest import run
from nanomodel.harvest.source import Source
from nanomodel.harvest.sources import SOURCES

CLASSIC = ("xinetd", "snmpd", "nfs-utils", "autofs", "cups", "gpm", "sendmail", "named")


def _package(tmp_path: Path, name: str, files: dict[str, str]) -> None:
    (tmp_path / f"{name}_1.0.upstream").write_text("Version: 1.0\n")
    for rel, text in files.items():
        path = tmp_path / f"{name}-1.0" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _registered(name: str) -> Source:
    (src,) = [s for s in SOURCES if s.source == name]
    return src


def test_xinetd_messages_are_written_as_its_logger_writes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """msg(level, func, fmt): the format is the third argument even when the function
    name is a literal; parsemsg appends the file and line; LOG_CRIT adds pid and func."""
    monkeypatch.setitem(run.EXPANSIONS, "xinetd", [])  # they cite the real tree's files
    _package(
        tmp_path,
        "xinetd",
        {
            "src/defs.h": '#define ES_NOMEM "out of memory"\n',
            "src/svc.c": (
                "static void tcpmux_handler(void)\n{\n"
                '   msg(LOG_ERR, "tcpmux_handler", "read failed");\n'
                '   msg(LOG_DEBUG, "tcpmux_handler", "Input %d as service name.", n);\n'
                "}\n"
                "int init_services(void)\n{\n"
                '   const char *func = "init_services";\n'
                '   msg( LOG_CRIT, func, "no services. Exiting..." );\n'
                '   parsemsg( LOG_ERR, func, "Bad socket type: %s", s );\n'
                "   msg( LOG_ERR, func, ES_NOMEM );\n"
                "}\n"
            ),
        },
    )
    src = Source(
        "xinetd",
        "xinetd",
        ("src/*.c",),
        r"msg|parsemsg",
        "software",
        format_index=2,
    )
    got = {r["template"]: r["level"] for r in run.harvest_source(tmp_path, src)}
    assert "read failed" in got and "tcpmux_handler" not in got
    assert got["%d {init_services} no services. Exiting..."] == "crit"
    assert "Bad socket type: %s [file=%s] [line=%d]" in got
    assert "out of memory" in got  # a format given as one string macro
    assert not [t for t in got if "service name" in t]  # LOG_DEBUG dropped


def test_debug_facilities_level_arguments_and_prefixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nfs-utils' xlog(D_*) is debug output; gpm's GPM_PR_OOPS and autofs's logmsg() log
    at a level their names do not say; autofs's logerr() writes function and line;
    sendmail's sm_syslog() writes the queue id or NOQUEUE."""
    _package(
        tmp_path,
        "daemons",
        {
            "nfs.c": (
                'void f(void) { xlog(D_GENERAL, "Caught signal %d", s);\n'
                ' xlog(L_ERROR, "failed to create RPC listeners, exiting"); }\n'
            ),
            "auto.c": (
                "static int do_mount(void)\n{\n"
                '\tlogerr("failed to strdup arg");\n'
                '\tlogmsg("key \\"%s\\" not found in map source(s).", name);\n'
                "}\n"
            ),
            "mail.c": (
                "void smtp(void) {\n"
                '\tsm_syslog(LOG_INFO, NOQID, "connect from %s", host);\n'
                '\tsm_syslog(LOG_INFO, NULL, "lost connection from %s", host);\n'
                '\tsm_syslog(LOG_NOTICE, e->e_id, "collect: premature EOM: %s", err);\n'
                "}\n"
            ),
        },
    )
    for name in ("autofs", "sendmail"):  # their expansions cite the real trees' files
        monkeypatch.setitem(run.EXPANSIONS, name, [])
    nfs = Source("daemons", "daemons", ("nfs.c",), r"xlog", "network", debug_words=r"D_\w+")
    assert [r["template"] for r in run.harvest_source(tmp_path, nfs)] == [
        "failed to create RPC listeners, exiting"
    ]
    autofs = _registered("autofs")
    auto = Source(
        "autofs",
        "daemons",
        ("auto.c",),
        autofs.calls,
        "storage",
        call_levels=autofs.call_levels,
    )
    rows = {r["template"]: r["level"] for r in run.harvest_source(tmp_path, auto)}
    assert rows == {
        "do_mount:%d: failed to strdup arg": "crit",
        'key "%s" not found in map source(s).': "crit",
    }
    mail = Source("sendmail", "daemons", ("mail.c",), r"sm_syslog", "network")
    assert [r["template"] for r in run.harvest_source(tmp_path, mail)] == [
        "connect from %s",
        "NOQUEUE: lost connection from %s",
        "%{qid}: collect: premature EOM: %s",
    ]


def test_every_classic_source_is_harvested_reviewed_and_renders() -> None:
    by_source: dict[str, int] = {}
    for t in realtext.load_templates(list(CLASSIC)):
        by_source[t.source] = by_source.get(t.source, 0) + 1
    assert set(by_source) == set(CLASSIC)
    review_dir = realtext.DATA / "review"
    assert all((review_dir / f"{s}.jsonl").exists() for s in CLASSIC)
    lines = realtext.real_lines(
        random.Random(4), per_template=1, sources=list(CLASSIC), captured=False
    )
    assert not [t for t, _, _ in lines if "%{" in t]  # named placeholders filled
    tags = {"xinetd": "xinetd", "sendmail": "sm-mta", "nfs-utils": "rpc.mountd", "named": "named"}
    for source, tag in tags.items():
        assert any(
            re.search(rf"\b{re.escape(tag)}\[\d+\]: ", t) for t, _, s in lines if s == source
        )


@pytest.mark.parametrize(
    ("source", "template", "label"),
    [
        # the super-server's routine and its refusals
        ("xinetd", "START: %{inetsvc} pid=%d from=%s", "normal"),
        ("xinetd", "EXIT: %{inetsvc} status=%d pid=%d duration=%ld(sec)", "normal"),
        ("xinetd", "FAIL: %{inetsvc} libwrap from=%s", "security"),
        ("xinetd", "FAIL: %{inetsvc} connections per second from=%s", "network"),
        ("xinetd", "Deactivating service %s due to %s. Restarting in %d seconds.", "network"),
        ("xinetd", "Activating service %s", "normal"),
        (
            "xinetd",
            "Error parsing attribute %s - DISABLING SERVICE [file=%s] [line=%d]",
            "software",
        ),
        # the SNMP agent
        ("snmpd", "Connection from %s", "normal"),
        ("snmpd", "Connection from %s REFUSED", "security"),
        ("snmpd", "Authentication failed for %s", "security"),
        ("snmpd", "Received SNMP packet(s) from %s", "normal"),
        ("snmpd", "Warning: no access control information configured.", "software"),
        # the NFS server's helpers
        ("nfs-utils", "authenticated %s request from %s:%u for %s (%s)", "normal"),
        ("nfs-utils", "refused %s request from %s for %s (%s): unmatched host", "security"),
        ("nfs-utils", "refused %s request from %s for %s (%s): no export entry", "normal"),
        ("nfs-utils", "SM_MON/SM_UNMON call from non-local host %s", "security"),
        # the automounter
        ("autofs", 'key "%s" not found in map source(s).', "normal"),
        ("autofs", "mount(nfs): no hosts available", "network"),
        ("autofs", "attempting to mount entry %s", "normal"),
        # the print scheduler
        ("cups", "[Job %d] Job completed.", "normal"),
        (
            "cups",
            "[Job %d] Printer stopped due to backend errors; please consult the "
            "/var/log/cups/error_log file for details.",
            "network",
        ),
        ("cups", '[Client %d] Authentication failed for user "%s".', "security"),
        ("cups", "[Client %d] Missing Host: field in request.", "normal"),
        # the console mouse server
        ("gpm", "Started gpm successfully. Entered daemon mode.", "normal"),
        ("gpm", "Error in read()ing first: %s", "hardware"),
        # the MTA
        (
            "sendmail",
            "%{qid}: to=<%s>, delay=%s, xdelay=%s, mailer=esmtp, pri=%ld, relay=%s. [%s], "
            "dsn=2.0.0, stat=Sent (%s)",
            "normal",
        ),
        # refused as a sender or relay (relaying denied, no such user): security, as
        # postfix's; refused by the anti-spam machinery's content checks: routine
        ("sendmail", "%{qid}: ruleset=%s, arg1=%s%s, reject=%s", "security"),
        ("sendmail", "%{qid}: %s: possible SMTP attack: command=%.40s, count=%u", "security"),
        ("sendmail", "%{qid}: milter=%s, reject=%s", "normal"),
        ("sendmail", "%{qid}: lost input channel from %s to %s after %s", "normal"),
        ("sendmail", "%{qid}: SYSERR(%s): Out of disk space for temp file", "storage"),
        # the DNS server
        ("named", "zone %s: loaded serial %u%s", "normal"),
        ("named", "client @%p %{peer} (%s): %s denied", "normal"),
        ("named", "client @%p %{peer} (%s): zone transfer '%s/%s' denied", "security"),
        ("named", "lame server resolving '%s' (in '%s'?): %s", "normal"),
        ("named", "zone %s: expired", "network"),
    ],
)
def test_classic_messages_carry_a_technicians_label(source: str, template: str, label: str) -> None:
    by_template = {t.template: t for t in realtext.load_templates([source])}
    assert template in by_template, f"{source} lost {template!r}: re-harvest or fix the test"
    assert by_template[template].label == label, by_template[template].reason


def test_code_of_other_platforms_is_kept_out() -> None:
    """cupsd's macOS/Upstart branches are not compiled in Debian's build."""
    cups = {t.template: t for t in realtext.load_templates(["cups"])}
    assert cups["service_checkin: We did not get started via Upstart."].not_log_text
    assert not cups["[Job %d] Job completed."].not_log_text
