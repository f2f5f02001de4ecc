"""Run the `nanofleet` CLI in-process and capture what it prints."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

from fleet_server.cli import main


def nf(*argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `nanofleet ARGV...`."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()
