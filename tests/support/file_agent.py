"""The real agent process following two log files with the same lines, one of them with a
source switch on (``keyword_evidence``, ``text_levels``), for end-to-end tests of what the
switch changes: a real Mosquitto, the shipped model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.agent_proc import AgentProcess, result_batches, write_config
from tests.support.mqtt_client import Collector

Seen = dict[tuple[str, str], float]  # (source, text) -> published anomaly


@contextmanager
def agent_over_two_files(tmp_path: Path, port: int, device: str, lines: list[str],
                         switch: str, results: int,
                         ) -> Iterator[tuple[AgentProcess, Collector, Seen]]:
    """Start an agent following ``app`` (``switch = true``) and ``plain`` (without), both
    holding ``lines`` and read from the beginning; wait for ``results`` published result
    items and yield (agent, a collector of the device's topics, each (source, text)'s
    published anomaly); stopped on leaving. Alerts carry no explanation."""
    app, plain = tmp_path / "app.log", tmp_path / "plain.log"
    for path in (app, plain):
        path.write_text("".join(f"{line}\n" for line in lines))
    sources = (f'[[sources]]\nkind = "file"\nname = "app"\npath = "{app}"\n'
               f'start_at = "beginning"\n{switch} = true\n'
               f'[[sources]]\nkind = "file"\nname = "plain"\npath = "{plain}"\n'
               'start_at = "beginning"\n')
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "agent.toml", device, state, port, sources,
                       mqtt_extra="[alerts]\nexplain = false\n")
    sub = Collector(port, f"nanofleet/v1/dev/{device}/#")
    agent = AgentProcess(cfg, state).start()
    try:
        seen = {(i["source"], i["text"]): i["anomaly"]
                for d in result_batches(sub, results) for i in d["items"]}
        yield agent, sub, seen
    finally:
        agent.stop()
        sub.close()
