"""The real agent process reading a journal file, for end-to-end tests of what it makes of
journal entries (levels, catalog ids): a real Mosquitto, the shipped model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.agent_proc import AgentProcess, result_batches, write_config
from tests.support.mqtt_client import Collector


@contextmanager
def agent_over_journal(tmp_path: Path, port: int, journal: Path, device: str, extra: str,
                       results: int, source_extra: str = "", trust: bool = True,
                       ) -> Iterator[tuple[AgentProcess, Collector, list[dict[str, Any]]]]:
    """Start an agent whose one source is ``journal`` (read from the beginning, its fields
    trusted as the system journal's), wait for ``results`` published result items and
    yield (agent, a collector of the device's topics, the items); stopped on leaving.
    ``extra``: config text after ``[mqtt]`` (a table of its own, e.g. ``[model...]``);
    ``source_extra``: more keys of the source; ``trust`` False: its fields are not trusted
    (a journal whose writer is not)."""
    state = tmp_path / f"state{len(extra)}"
    source = (f'[[sources]]\nkind = "journald"\nfiles = ["{journal}"]\n'
              f'start_at = "beginning"\ntrust_fields = {str(trust).lower()}\n' + source_extra)
    cfg = write_config(tmp_path / "agent.toml", device, state, port, source, mqtt_extra=extra)
    sub = Collector(port, f"nanofleet/v1/dev/{device}/#")
    agent = AgentProcess(cfg, state).start()
    try:
        items = [i for d in result_batches(sub, results) for i in d["items"]]
        yield agent, sub, items
    finally:
        agent.stop()
        sub.close()
