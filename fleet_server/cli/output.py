"""What ``nanofleet`` prints, made printable in one place.

Devices choose much of what the commands show (agent version, model names, OTA reasons
and details, alert texts and sources; rollout logs and error messages quote them). Left
to each command, one forgot: ``devices list|show`` and ``rollout status`` printed them
raw, so one device could write the operator's clipboard (OSC 52), hide links in a model
name (OSC 8) or erase its "failed" row and print "committed" over it (review, December
2026). So ``main`` writes every command's stdout and stderr through
:class:`PrintableStream`, which applies :func:`contract.display.printable` to all but
the line breaks: a command added later is covered without thinking of it. ``--json``
output is ``json.dumps`` with ``ensure_ascii``: printable ASCII, passed unchanged. The
only control codes that reach the terminal are the CLI's own, through :func:`control`.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from contract.display import printable_lines


class PrintableStream(io.TextIOBase):
    """A text stream that writes ``printable(text)`` to ``stream``, line breaks kept.
    ``printable`` works character by character, so a line written in pieces (``print``
    writes the text, then the newline) comes out the same as written whole."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(printable_lines(text))
        return len(text)

    def write_control(self, codes: str) -> None:
        """Terminal control codes the CLI itself chose, written unchanged."""
        self.stream.write(codes)

    @property
    def encoding(self) -> str:  # type: ignore[override]  # io.TextIOBase's is read-only too
        return getattr(self.stream, "encoding", None) or "utf-8"

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()


def control(codes: str) -> None:
    """Write the CLI's own terminal control ``codes`` (``rollout status --watch``'s
    redraw) to stdout, past the :class:`PrintableStream` that would show them as ``?``."""
    write = getattr(sys.stdout, "write_control", sys.stdout.write)
    write(codes)


@contextmanager
def printable_output() -> Iterator[None]:
    """stdout and stderr through :class:`PrintableStream` for the block, then as they
    were (a test's capture, or the next ``main`` call in the same process)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = PrintableStream(out), PrintableStream(err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
