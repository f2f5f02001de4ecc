"""Logging setup: stderr formats, handler selection under systemd, secret redaction, and a
real journald (run in a private mount namespace) receiving our structured fields."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.logsetup import (
    JOURNAL_SOCKET,
    REDACTED,
    JsonFormatter,
    is_secret_name,
    journal_field_name,
    log_event,
    parse_level,
    redact_text,
    redact_value,
    setup_logging,
    stderr_is_journal,
)

ROOT = Path(__file__).resolve().parents[1]
JOURNALD = Path("/lib/systemd/systemd-journald")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


def test_stderr_text_with_key_value_extras() -> None:
    out = io.StringIO()
    handler = setup_logging("info", environ={}, stream=out)
    assert isinstance(handler, logging.StreamHandler)
    log = logging.getLogger("agent.test")
    log.debug("hidden")
    log.info("source %s rotated", "pump-log", extra={"device_id": "pump-07", "slot": "main",
                                                      "note": "two words", "n": 3})
    line = out.getvalue().strip()
    assert "hidden" not in line
    assert line.endswith(
        'INFO agent.test: source pump-log rotated device_id=pump-07 slot=main '
        'note="two words" n=3')
    assert line[:4].isdigit() and line[10] == "T"  # local ISO timestamp first


def test_json_stderr_lines() -> None:
    out = io.StringIO()
    handler = setup_logging("debug", json_stderr=True, environ={}, stream=out)
    assert isinstance(handler.formatter, JsonFormatter)
    log = logging.getLogger("agent.test")
    log_event(log, "warning", "spool near bound", depth=9000, name="clash")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed", extra={"source": "s1"})
    first, second = (json.loads(x) for x in out.getvalue().splitlines() if x.startswith("{"))
    assert first["level"] == "warning" and first["msg"] == "spool near bound"
    assert first["depth"] == 9000 and first["name_field"] == "clash"
    assert first["logger"] == "agent.test"
    assert second["source"] == "s1" and "RuntimeError: boom" in second["exc"]


def test_setup_twice_replaces_our_handler_and_level() -> None:
    root = logging.getLogger()
    h1 = setup_logging("info", environ={}, stream=io.StringIO())
    h2 = setup_logging("error", environ={}, stream=io.StringIO())
    assert h2 in root.handlers and h1 not in root.handlers
    assert root.level == logging.ERROR


def test_journal_handler_selected_when_journal_stream_matches(tmp_path: Path) -> None:
    journal = pytest.importorskip("systemd.journal")
    with open(tmp_path / "stderr", "w") as stream:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(env, stream)
        handler = setup_logging("info", environ=env, stream=stream)
        assert isinstance(handler, journal.JournalHandler)
        # Another stream (inode) is not the journal: plain stderr formatting.
        other = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}
        assert not stderr_is_journal(other, stream)
        assert not isinstance(setup_logging("info", environ=other, stream=stream),
                              journal.JournalHandler)
    for bad in ("", "garbage", "1:x"):
        assert not stderr_is_journal({"JOURNAL_STREAM": bad}, sys.stderr)


def test_invocation_id_selects_the_journal_only_when_journald_listens() -> None:
    journal = pytest.importorskip("systemd.journal")
    handler = setup_logging("info", environ={"INVOCATION_ID": "0123abcd"}, stream=io.StringIO())
    # With journald: the test below (private journald) sees the journal path taken.
    assert isinstance(handler, journal.JournalHandler) == os.path.exists(JOURNAL_SOCKET)


def test_secrets_are_redacted_from_extras_messages_and_urls() -> None:
    out = io.StringIO()
    setup_logging("info", environ={}, stream=out)
    log = logging.getLogger("agent.test")
    log.info("connecting to %s with password=%s token: %s",
             "mqtts://dev:hunter2@broker:8883", "s3cr3t", "tok123",
             extra={"mqtt_password": "pw1", "api_key": "k1", "key_file": "/etc/nf/dev.key",
                    "tls": {"keyfile_password": "pw2", "ca": "/etc/nf/ca.pem"},
                    "username": "dev"})
    text = out.getvalue()
    for secret in ("hunter2", "s3cr3t", "tok123", "pw1", "k1", "pw2"):
        assert secret not in text, secret
    assert "mqtts://dev:***@broker:8883" in text
    assert f"password={REDACTED}" in text and f"token: {REDACTED}" in text
    assert f"mqtt_password={REDACTED}" in text and f"api_key={REDACTED}" in text
    assert "key_file=/etc/nf/dev.key" in text and "username=dev" in text
    assert '"ca":"/etc/nf/ca.pem"' in text


def test_secret_name_rules() -> None:
    for name in ("password", "MQTT_PASSWORD", "api-key", "apiKey", "token", "refresh_token",
                 "client_secret", "Authorization", "key", "passphrase", "credentials"):
        assert is_secret_name(name), name
    for name in ("key_file", "token_path", "device_id", "source", "slot", "monkey", "keyword",
                 "tokenizer_dir", "username"):
        assert not is_secret_name(name), name
    assert redact_value("labels", ["ok", "password=x"]) == ["ok", f"password={REDACTED}"]
    assert redact_text("error=timeout secret='a b' next=1") == (
        f"error=timeout secret={REDACTED} next=1")


def test_bad_format_args_do_not_break_the_caller() -> None:
    out = io.StringIO()
    setup_logging("info", environ={}, stream=out)
    logging.raiseExceptions = False
    try:
        logging.getLogger("agent.test").info("%d lines", "not-a-number")
    finally:
        logging.raiseExceptions = True


def test_journal_field_names() -> None:
    assert journal_field_name("device_id") == "DEVICE_ID"
    assert journal_field_name("model.version") == "MODEL_VERSION"
    assert journal_field_name("_hidden") == "HIDDEN"
    assert journal_field_name("9lives") == "F_9LIVES"
    assert journal_field_name("priority") == "EXTRA_PRIORITY"
    assert len(journal_field_name("x" * 100)) == 64


def test_parse_level() -> None:
    assert parse_level("INFO") == logging.INFO and parse_level("warn") == logging.WARNING
    assert parse_level(15) == 15
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        parse_level("loud")


# A helper run inside a private mount namespace: a fresh tmpfs /run, a real
# systemd-journald writing volatile journal files into a directory the test sees,
# then a process logging through setup_logging() under INVOCATION_ID.
_NAMESPACE_SCRIPT = textwrap.dedent(
    """
    import os, subprocess, sys, time
    journal_dir, root, journald = sys.argv[1], sys.argv[2], sys.argv[3]
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
    if os.path.isdir("/var/log/journal"):  # never touch the host's persistent journal
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/var/log/journal"], check=True)
    os.makedirs("/run/log/journal")
    subprocess.run(["mount", "--bind", journal_dir, "/run/log/journal"], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_FDS")}
    jd = subprocess.Popen([journald], env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists("/run/systemd/journal/socket"):
            if time.monotonic() > deadline:
                sys.exit("journald did not start")
            time.sleep(0.05)
        code = (
            "import logging\\n"
            "from agent.logsetup import setup_logging, log_event\\n"
            "setup_logging('info', environ={'INVOCATION_ID': 'feedbeef'},"
            " fields={'device_id': 'pump-07', 'agent_version': '0.1.0'})\\n"
            "log = logging.getLogger('agent.pipeline')\\n"
            "log.info('result published', extra={'device_id': 'pump-07', 'slot': 'main',"
            " 'source': 'pump-log', 'mqtt_password': 'hunter2', 'seq': 41})\\n"
            "log_event(log, 'error', 'journal probe done', source='s2')\\n"
        )
        subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": root},
                       check=True, timeout=60)
        from systemd import journal
        deadline = time.monotonic() + 10
        while True:
            reader = journal.Reader(path="/run/log/journal")
            reader.add_match(SYSLOG_IDENTIFIER="nanofleet-agent")
            entries = list(reader)
            reader.close()
            if len(entries) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        import json
        print(json.dumps([{k: str(v) for k, v in e.items()} for e in entries]))
    finally:
        jd.terminate()
        jd.wait(10)
    """
)


def test_real_journald_gets_structured_fields(tmp_path: Path) -> None:
    pytest.importorskip("systemd.journal")
    if os.geteuid() != 0 or not JOURNALD.exists() or not shutil.which("unshare"):
        pytest.skip("needs root, unshare and systemd-journald for a private journald")
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a mount namespace: {probe.stderr.decode().strip()}")
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", _NAMESPACE_SCRIPT,
         str(journal_dir), str(ROOT), str(JOURNALD)],
        capture_output=True, text=True, timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    entries = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(entries) == 2, entries
    published, probe_entry = entries
    assert published["MESSAGE"] == "result published"
    assert published["PRIORITY"] == "6"
    assert published["DEVICE_ID"] == "pump-07"
    assert published["SLOT"] == "main" and published["SOURCE"] == "pump-log"
    assert published["SEQ"] == "41"
    assert published["MQTT_PASSWORD"] == REDACTED
    assert "hunter2" not in json.dumps([{k: v for k, v in e.items() if k != "_CMDLINE"}
                                        for e in entries])  # the command line has it
    assert published["LOGGER"] == "agent.pipeline"
    assert published["CODE_FUNC"] == "<module>" and published["CODE_LINE"] == "5"
    # Only well-formed fields: no lower-case LogRecord attributes forwarded.
    assert "MSG" not in published and "ARGS" not in published
    assert probe_entry["PRIORITY"] == "3" and probe_entry["MESSAGE"] == "journal probe done"
    # Static fields from setup_logging(fields=...) are on every entry.
    assert probe_entry["DEVICE_ID"] == "pump-07" and probe_entry["SOURCE"] == "s2"
    assert published["AGENT_VERSION"] == probe_entry["AGENT_VERSION"] == "0.1.0"


def test_redacting_is_linear_in_the_text() -> None:
    """`\\b` before the name made every word of `a.a.a...` a new start scanning to the
    run's end: 64 KB of it (a query's reply topic, logged) took ~24 s with the GIL held
    (review, December 2026). Now milliseconds; the secrets are still found."""
    import time

    for text in ("a." * 32000 + "/x: y", "a-" * 32000 + "=x", "a+" * 32000 + "://u:p@h"):
        started = time.perf_counter()
        redact_text(text)
        assert time.perf_counter() - started < 2.0
    assert redact_text("run --password=hunter2 -v") == "run --password=*** -v"
    assert redact_text("cfg x.api-key=zz, user=bob") == "cfg x.api-key=***, user=bob"
    assert redact_text("a.a.a.token: 5") == "a.a.a.token: ***"


def test_every_logger_of_the_product_is_under_nanofleet() -> None:
    """`journalctl LOGGER=nanofleet.agent.ota` (docs/operations.md) finds every line of a
    component only if each module names its logger in the product's tree, not by its module
    path (`agent.ota.tuf_client` was outside it until December 2026)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    outside = []
    for package in ("agent", "fleet_server", "hil", "contract", "nanomodel"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "getLogger" and node.args):
                    arg = node.args[0]
                    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                            and arg.value.split(".")[0] == "nanofleet"):
                        outside.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not outside, outside
