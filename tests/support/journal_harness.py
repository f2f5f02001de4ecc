"""A journald source over real journal files (systemd-journal-remote), for tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.metrics import Counters
from agent.sources.journald import JournaldSource, JournaldSourceConfig
from tests.support.journal import JournalWriter
from tests.support.line_sink import ListSink

POLL = 0.02


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.writer = JournalWriter(tmp_path / "fixture.journal")
        self.counters = Counters()
        self.sources: list[JournaldSource] = []

    def start(self, checkpoint: str | None = None, max_line_bytes: int = 4096,
              current_boot: str | None = None, **cfg: Any) -> tuple[JournaldSource, ListSink]:
        cfg.setdefault("files", [self.writer.path])
        # The fixture files stand in for the system journal, whose fields journald sets.
        cfg.setdefault("trust_fields", True)
        config = JournaldSourceConfig.model_validate(
            {"kind": "journald", "start_at": "beginning", "poll_interval_s": POLL, **cfg})
        sink = ListSink()
        src = JournaldSource("journald", config, sink, self.counters, max_line_bytes)
        if current_boot is not None:  # the kernel's boot id, as on the system journal
            src.kernel_boot = src.current_boot = current_boot
        src.start(checkpoint)
        self.sources.append(src)
        return src, sink


def running_harness(tmp_path: Path) -> Iterator[Harness]:
    """A test's harness; its sources are stopped afterwards (``yield from`` it in a
    fixture)."""
    harness = Harness(tmp_path)
    yield harness
    for s in harness.sources:
        s.stop()
