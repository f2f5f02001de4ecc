"""Progress output: frames on a terminal, one plain line per step anywhere else."""

from __future__ import annotations

import io
import os
import select

import pytest

from nanomodel.progress import Progress, is_terminal

pytestmark = pytest.mark.unit


def _run_bar(stream: io.TextIOBase | object, **kw: object) -> None:
    for epoch in (1, 2):
        with Progress(f"epoch {epoch}/2", 1600, stream=stream, **kw) as bar:  # type: ignore[arg-type]
            for _ in range(16):
                bar.update(100, "loss 0.1234")


def test_pipe_or_log_gets_one_line_per_step_and_no_carriage_returns() -> None:
    out = io.StringIO()
    _run_bar(out)
    text = out.getvalue()
    assert "\r" not in text and "[" not in text
    lines = text.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2: 1600/1600 in ") and lines[0].endswith("loss 0.1234")
    assert lines[1].startswith("epoch 2/2: 1600/1600 in ")


def test_terminal_gets_a_bar_redrawn_in_place() -> None:
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert is_terminal(tty)
            _run_bar(tty)
        data = b""
        while select.select([master], [], [], 0.5)[0]:  # a pty hands out data in pieces
            data += os.read(master, 65536)
    finally:
        os.close(master)
        os.close(slave)
    text = data.decode()
    full = "\repoch 2/2 [" + "#" * 30 + "] 1600/1600"
    assert "\repoch 1/2 [" in text and full in text
    assert text.count("\n") == 2  # one newline per finished bar (pty may add \r before it)


def test_disabled_prints_nothing_and_closed_stream_is_not_a_terminal() -> None:
    out = io.StringIO()
    _run_bar(out, enabled=False)
    assert out.getvalue() == ""
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed)
