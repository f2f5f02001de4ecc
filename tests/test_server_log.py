"""The fleet server's log: one record, one line, whatever a device put in it (review,
December 2026: a "\\n" in a device's field name, artifact path or OTA reason started a
forged line, "operator token 'admin' revoked by admin"; escape codes drove the terminal
that tailed the log). `nanofleet server run` against devices: tests/test_operator_output.py.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from fleet_server.logformat import FORMAT, EscapingFormatter, escaped

# The formatter tests are the fast tier; the `server run` one starts a process.

FORGED = "\n1999-12-31 08:12:26,123 INFO nanofleet.server.auth: operator token revoked"
HOSTILE = f"targets/x\r\x1b[2K\x9b31m\u202e\u2028\x85{FORGED}\t"


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError(f"bad path {HOSTILE}")
        except ValueError:
            info = sys.exc_info()
    return logging.LogRecord("nanofleet.server.artifacts", logging.INFO, __file__, 1, msg,
                             args, info)


@pytest.mark.unit
def test_escaped_is_lossless_and_printable() -> None:
    out = escaped(HOSTILE)
    assert out.isprintable()
    assert out.startswith("targets/x\\r\\x1b[2K\\x9b31m\\u202e\\u2028\\x85\\n1999-12-31")
    assert out.endswith("revoked\\t")
    assert escaped("Temperature 91 °C, Größe ok") == "Temperature 91 °C, Größe ok"


@pytest.mark.unit
def test_a_record_is_one_line_whatever_its_arguments() -> None:
    text = EscapingFormatter(FORMAT).format(record("request of %s refused: %s", "pump-07",
                                                   HOSTILE))
    assert "\n" not in text and text.isprintable()
    assert "refused: targets/x\\r\\x1b[2K" in text


@pytest.mark.unit
def test_a_traceback_keeps_its_lines_but_none_at_the_margin() -> None:
    text = EscapingFormatter(FORMAT).format(record("failed", exc=True))
    first, *rest = text.split("\n")
    assert first.endswith("INFO nanofleet.server.artifacts: failed")
    assert rest[0] == "  Traceback (most recent call last):"
    assert all(line.startswith("  ") and line.isprintable() for line in rest), rest
    # The exception's own line break is the traceback's; what follows it stays indented.
    assert rest[-2].startswith("  ValueError: bad path targets/x\\r\\x1b[2K")
    assert rest[-1] == "  " + FORGED.strip() + "\\t"


@pytest.mark.unit
def test_the_servers_logging_escapes() -> None:
    """What `server run` installs (fleet_server.logformat.install), in a fresh process."""
    code = ("import logging; from fleet_server import logformat; logformat.install('info'); "
            "logging.getLogger('nanofleet.server.mqtt').warning('device report refused: %s', "
            f"{HOSTILE!r})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n")
    line = done.stderr.removesuffix("\n")
    assert line.isprintable() and " WARNING nanofleet.server.mqtt: device report refused: " \
        "targets/x\\r\\x1b[2K" in line


SERVER_RUN = """
import logging, sys, uvicorn
import fleet_server.app, fleet_server.service
from fleet_server.cli import main
fleet_server.service.FleetService = lambda config: None  # no database, broker or listener
fleet_server.app.create_app = lambda service: None
uvicorn.Server.run = lambda self: logging.getLogger("nanofleet.server.mqtt").warning(
    "device report refused: %s", sys.argv[2])
sys.exit(main(["server", "run", "--config", sys.argv[1]]))
"""


def test_server_run_logs_through_the_escaping_formatter(tmp_path: Path) -> None:
    """`nanofleet server run` as it starts, with the service and uvicorn's serving stubbed:
    a device's text in a record stays on the record's line."""
    config = tmp_path / "server.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n', encoding="utf-8")
    done = subprocess.run([sys.executable, "-c", SERVER_RUN, str(config), HOSTILE],
                          capture_output=True, text=True, timeout=60, check=True)
    records = done.stderr.split("\n")
    [refused] = [line for line in records if "device report refused" in line]
    assert refused.isprintable() and refused.endswith(
        "WARNING nanofleet.server.mqtt: device report refused: " + escaped(HOSTILE))
    assert not [line for line in records if line.startswith("1999-12-31")]
