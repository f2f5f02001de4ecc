"""Source configs as one discriminated union, default names, and construction."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agent.metrics import Counters
from agent.sources.base import LineSink, Source
from agent.sources.file import FileSource, FileSourceConfig
from agent.sources.journald import JournaldSource, JournaldSourceConfig
from agent.sources.mqtt_topic import AgentBroker, MqttTopicSource
from agent.sources.mqtt_topic_config import MqttTopicSourceConfig

__all__ = ["AgentBroker", "SourceConfig", "build_source", "default_source_name",
           "source_name"]

SourceConfig = Annotated[
    FileSourceConfig | JournaldSourceConfig | MqttTopicSourceConfig,
    Field(discriminator="kind"),
]


def default_source_name(cfg: FileSourceConfig | JournaldSourceConfig
                        | MqttTopicSourceConfig) -> str:
    """The name a source gets when its config sets none (ignores ``cfg.name``):
    ``file:/var/log/pump.log``, ``journald`` (``journald:a.service,b.service`` with
    units), ``mqtt:sensors/#`` (topics joined by commas)."""
    if isinstance(cfg, FileSourceConfig):
        return f"file:{cfg.path}"
    if isinstance(cfg, JournaldSourceConfig):
        units = [u if "." in u else f"{u}.service" for u in cfg.units]
        return f"journald:{','.join(units)}" if units else "journald"
    return f"mqtt:{','.join(cfg.topics)}"


def source_name(cfg: FileSourceConfig | JournaldSourceConfig | MqttTopicSourceConfig) -> str:
    return cfg.name or default_source_name(cfg)


def build_source(cfg: FileSourceConfig | JournaldSourceConfig | MqttTopicSourceConfig,
                 sink: LineSink, counters: Counters, max_line_bytes: int,
                 agent_broker: AgentBroker) -> Source:
    """A stopped source for ``cfg``; call ``start(checkpoint)`` on it."""
    name = source_name(cfg)
    if isinstance(cfg, FileSourceConfig):
        return FileSource(name, cfg, sink, counters, max_line_bytes)
    if isinstance(cfg, JournaldSourceConfig):
        return JournaldSource(name, cfg, sink, counters, max_line_bytes)
    return MqttTopicSource(name, cfg, sink, counters, max_line_bytes, agent_broker)
