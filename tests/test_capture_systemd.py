"""Labelling of a booted systemd's journal (nanomodel/harvest/capture_systemd.py): which
records are kept, how they are written, the reviewed decisions for the manager's own
lines (overrides_core, review/systemd.jsonl), and that the lines are evaluation only."""

from __future__ import annotations

import json

from nanomodel import realtext
from nanomodel.harvest.capture_io import MAX_PER_SHAPE
from nanomodel.harvest.capture_systemd import JOURNAL, journal_rows


def _rec(ident: str, msg: object, prio: int = 6, pid: str = "1") -> dict[str, object]:
    return {"SYSLOG_IDENTIFIER": ident, "MESSAGE": msg, "PRIORITY": str(prio), "_PID": pid}


def _labels(*records: dict[str, object]) -> list[tuple[str, str]]:
    return [(r["text"], r["label"]) for r in journal_rows(list(records))]


def test_markers_name_the_scenario_and_only_systemd_and_journald_are_kept() -> None:
    rows = journal_rows([
        _rec("systemd", "Started sensor-poller.service - Sensor poller."),
        _rec("nfcapture", "BEGIN a watchdog is not fed", pid="77"),
        _rec("sh", "debug tick 4 failed", pid="80"),  # the scenario's own program
        _rec("systemd", [104, 105]),  # a binary MESSAGE: bytes, not a format's text
        _rec("systemd", "plc-link.service: Watchdog timeout (limit 2s)!", prio=3),
        _rec("systemd-journald", "Journal stopped", pid="18"),
    ])
    assert [(r["how"], r["text"], r["level"]) for r in rows] == [
        # the MESSAGE, as the agent's journald source reads it
        ("boot", "Started sensor-poller.service - Sensor poller.", "info"),
        ("a watchdog is not fed", "plc-link.service: Watchdog timeout (limit 2s)!", "error"),
        ("a watchdog is not fed", "Journal stopped", "info"),
    ]
    assert [r["label"] for r in rows] == ["normal", "software", "normal"]
    assert rows[1]["template_origin"].startswith("src/core/service.c:")


def test_a_failing_unit_is_an_alert_and_its_restart_bookkeeping_is_not() -> None:
    assert _labels(
        _rec("systemd", "meter-reader.service: Main process exited, code=exited, "
             "status=3/NOTIMPLEMENTED", prio=5),
        _rec("systemd", "meter-reader.service: Scheduled restart job, restart counter is at 1."),
        _rec("systemd", "meter-reader.service: Start request repeated too quickly.", prio=4),
        _rec("systemd", "Failed to start meter-reader.service - Energy meter reader.", prio=3),
        _rec("systemd", "stubborn-logger.service: State 'stop-sigterm' timed out. Killing.",
             prio=4),
    ) == [
        ("meter-reader.service: Main process exited, code=exited, "
         "status=3/NOTIMPLEMENTED", "software"),
        ("meter-reader.service: Scheduled restart job, restart counter is at 1.",
         "normal"),
        ("meter-reader.service: Start request repeated too quickly.", "software"),
        ("Failed to start meter-reader.service - Energy meter reader.", "software"),
        ("stubborn-logger.service: State 'stop-sigterm' timed out. Killing.",
         "software"),
    ]


def test_a_system_users_catalog_id_is_kept_as_the_agent_keeps_it() -> None:
    failed = "be02cf6855d2428ba40df7e9d022f03d"
    text = "Failed to start meter-reader.service - Energy meter reader."
    rows = journal_rows([
        {**_rec("systemd", text, prio=3), "MESSAGE_ID": failed.upper(), "_UID": "0"},
        {**_rec("systemd", text + " ", prio=3), "MESSAGE_ID": failed, "_UID": "1000"},
        {**_rec("systemd", "Journal started"), "MESSAGE_ID": "not an id", "_UID": "0"},
        # root, but not PID 1: any root process may tag its entries
        {**_rec("systemd", text + "  ", prio=3, pid="77"), "MESSAGE_ID": failed, "_UID": "0"},
    ])
    assert [r.get("message_id") for r in rows] == [failed, None, None, None]


def test_reviewed_routine_lines_stay_normal_whatever_their_values_say() -> None:
    # words of the values ("broken", "not available", SIGKILL) must not make an alert of
    # the manager's routine: the overrides and the review decide on the message
    assert {label for _, label in _labels(
        _rec("systemd", "broken-unit.service: Deactivated successfully."),
        _rec("systemd", "getty-static.service - getty on tty2-tty6 if dbus and logind are not "
             "available was skipped because of an unmet condition check "
             "(ConditionPathExists=/dev/tty0)."),
        _rec("systemd", "camera-stream.service: Killing process 59 (sleep) with signal "
             "SIGKILL.", prio=5),
        _rec("systemd", "Shutting down.", prio=5),
        # a unit file's syntax warning: the file and line in front, the template after
        _rec("systemd", "/etc/systemd/system/broken-unit.service:3: Unknown key 'Afterr' in "
             "section [Unit], ignoring.", prio=4),
        _rec("systemd", "/etc/systemd/system/broken-unit.service:8: Invalid memory limit "
             "'lots', ignoring: Invalid argument", prio=4),
    )} == {"normal"}


def test_sshd_lines_go_to_openssh_and_its_pam_lines_to_pam() -> None:
    rows = journal_rows([
        _rec("nfcapture", "BEGIN scanners", pid="9"),
        _rec("sshd", "Invalid user admin from 127.0.0.1 port 40070", pid="300"),
        _rec("sshd", "pam_unix(sshd:session): session opened for user root(uid=0) by (uid=0)",
             pid="301"),
        _rec("sshd", 'error: kex_exchange_identification: client sent invalid protocol '
             'identifier "GET / HTTP/1.1"', prio=3, pid="302"),
    ])
    assert [(r["source"], r["label"]) for r in rows] == [
        ("openssh", "security"), ("pam", "normal"), ("openssh", "normal")]


def test_one_shape_is_kept_at_most_max_per_shape_times() -> None:
    records = [_rec("systemd", f"data-uploader.service: Scheduled restart job, restart counter "
                    f"is at {i}.") for i in range(MAX_PER_SHAPE + 25)]
    assert len(journal_rows(records)) == MAX_PER_SHAPE


def test_the_shipped_journal_is_evaluation_only_with_healthy_lines_and_failures() -> None:
    journal = realtext.load_journal()
    assert {c.source for c in journal} == {"systemd", "systemd-journald", "openssh", "pam"}
    assert all(c.collection == "journal" and c.as_logged for c in journal)
    assert sum(c.label != "normal" for c in journal) >= 30
    assert sum(c.label == "normal" for c in journal) >= 200
    assert {c.level for c in journal} >= {"info", "notice", "warning", "error"}
    # never trained on: not among the captured lines training and the held-out evaluation
    # read (a message without values, "Received SIGHUP; restarting.", may still equal a
    # rendered template's text)
    assert not [c for c in realtext.load_captured() if c.collection != "captured"]
    # the files are this module's output: one row per line, as the agent reads it
    for source in ("systemd", "systemd-journald", "openssh", "pam"):
        rows = [json.loads(line) for line in (JOURNAL / f"{source}.jsonl").read_text()
                .splitlines()]
        assert rows and all(r["source"] == source and not r["text"].startswith(f"{source}[")
                            for r in rows)
