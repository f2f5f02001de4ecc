"""What a reload (SIGHUP) may leave running: a pure decision on the old and new config.

A source restarted by a reload is stopped, its queued lines are processed, and it
starts again from its checkpoint. Files and the journal lose nothing that way, but an
MQTT source cannot re-read: between its stop and its new start (the drain may take
seconds) the agent is not subscribed, and what the broker delivers then is gone. So
a source whose settings did not change keeps running through the reload, whatever
else changed (an alert rule, another source, the model).
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.config import AgentConfig
from agent.sources.base import Source


def sources_to_keep(old: AgentConfig, new: AgentConfig) -> frozenset[str]:
    """Names of the running sources a reload from ``old`` to ``new`` leaves running:
    same name, same settings, and nothing they were built from changed — the line
    bound every source cuts at, and for MQTT sources the agent's ``[mqtt]`` (those
    without a broker of their own ride on the agent's connection, which a new
    ``[mqtt]`` replaces; those with one take its TLS and defaults from it)."""
    if new.pipeline.max_line_bytes != old.pipeline.max_line_bytes:
        return frozenset()
    before = {old.source_name(i): source for i, source in enumerate(old.sources)}
    kept = set()
    for i, source in enumerate(new.sources):
        name = new.source_name(i)
        if before.get(name) != source:
            continue
        if source.kind == "mqtt" and new.mqtt != old.mqtt:
            continue
        kept.add(name)
    return frozenset(kept)


def sources_kept_running(sources: Iterable[Source], keep: frozenset[str]) -> dict[str, Source]:
    """The running sources to take over by name: those ``keep`` names whose thread is
    alive. One whose thread died (``last_error`` says why) is built and started again,
    as every reload used to do."""
    return {src.name: src for src in sources if src.name in keep and src.alive()}
