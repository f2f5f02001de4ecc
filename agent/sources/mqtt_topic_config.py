"""The configuration of MQTT topics followed as sensor text (``[[sources]] kind = "mqtt"``),
the filters it refuses, and the broker settings a source takes from the agent's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import paho.mqtt.client as mqtt
from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent.sources.file_config import TEXT_LEVELS_DESCRIPTION
from contract import topics
from contract.topics import DEVICE_WRITES, device_root

if TYPE_CHECKING:  # agent.config imports this module
    from agent.config import MqttConfig


def own_topics(device_id: str) -> list[str]:
    """Examples of every topic the agent publishes on (one per kind)."""
    root = device_root(device_id)
    return [f"{root}/{t.replace('+', 'x')}" for t in DEVICE_WRITES]


def reads_own_output(topic_filter: str, device_id: str) -> bool:
    """Whether ``topic_filter`` matches a topic the agent itself publishes on: a source
    reading it classifies the agent's own results, publishes new ones and reads those,
    for ever (review, December 2026: ``nanofleet/#`` looped on one line)."""
    return any(mqtt.topic_matches_sub(topic_filter, t) for t in own_topics(device_id))


def agent_inputs(device_id: str) -> list[str]:
    """Every topic the agent subscribes to on its own connection (one per kind)."""
    from contract.mutes import mutes_topic  # contract.mutes imports pydantic models

    return [topics.query(device_id), topics.desired(device_id), mutes_topic(device_id),
            topics.artifact_chunks(device_id, "x")]


def reads_agent_input(topic_filter: str, device_id: str) -> bool:
    """Whether ``topic_filter`` matches a topic the agent itself subscribes to: on the
    agent's connection a filter has one handler, so such a source took the agent's own
    messages — its mute list was never applied, and nothing said so (review, December
    2026)."""
    return any(mqtt.topic_matches_sub(topic_filter, t) for t in agent_inputs(device_id))


def check_topic_filter(topic: str) -> str:
    """Raise ValueError naming what is wrong with an MQTT subscription filter."""
    if not topic:
        raise ValueError("topic filter is empty")
    if "\x00" in topic or len(topic.encode()) > 65535:
        raise ValueError(f"topic filter {topic!r} has a NUL character or is too long")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"topic filter {topic!r}: '#' must be a whole last level")
        if "+" in level and level != "+":
            raise ValueError(f"topic filter {topic!r}: '+' must be a whole level")
    return topic


class MqttTopicSourceConfig(BaseModel):
    """Sensor text published on MQTT topics."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["mqtt"] = Field(description="Source type: MQTT topics.")
    topics: list[str] = Field(min_length=1, description="Subscription filters; + and # "
                              "wildcards allowed (e.g. sensors/+/text, plant/#).")
    name: str | None = Field(default=None,
                             description="Name in results and queries; default mqtt:<topics>.")
    host: str | None = Field(default=None, description="Broker host; default: the agent's "
                             "own broker (with its TLS settings).")
    port: int | None = Field(default=None, ge=1, le=65535,
                             description="Broker port; default: the agent's broker port "
                             "when host is unset, else 1883.")
    keyword_evidence: bool = Field(
        default=False, description="Weigh in the keywords of [model.keyword_evidence] (by "
        "default the grep fatal|fail|error|panic|critical): for software the model has "
        "never read, such as your own application, a line with a keyword needs less of the "
        "model's confidence to be flagged and one without needs more (docs/agent.md).")
    text_levels: bool = Field(default=False, description=TEXT_LEVELS_DESCRIPTION)
    qos: Literal[0, 1, 2] = Field(default=1, description="Subscription QoS.")
    include_topic: bool = Field(
        default=True, description="Prefix each line with '<topic>: ' so the model sees "
        "which sensor spoke (at most 200 characters of it, then '…').")
    use_agent_tls: bool | None = Field(
        default=None, description="Use the agent's TLS settings (CA, client certificate). "
        "Default: yes for the agent's own broker, no for a broker named by host.")
    max_payload_bytes: int = Field(
        default=256 * 1024, ge=1024, le=16 * 1024 * 1024,
        description="Largest message accepted; the broker withholds larger ones (MQTT v5 "
        "Maximum Packet Size), so memory stays bounded.")
    session_expiry_s: int = Field(
        default=300, ge=0, le=86400, description="How long the broker keeps our subscription "
        "and queues QoS 1/2 messages while we are disconnected (s).")
    receive_maximum: int = Field(
        default=32, ge=1, le=1024,
        description="On a broker named by host, at QoS 1: how many messages the broker may "
        "send ahead before we acknowledge one (MQTT v5 Receive Maximum). Each is "
        "acknowledged once its lines are committed, so a crash loses none.")
    max_lines_per_message: int = Field(
        default=256, ge=1, le=65536,
        description="Lines taken from one message (split at newlines); the rest are "
        "dropped and counted, so one publisher cannot fill the shared line queue.")

    @field_validator("topics")
    @classmethod
    def _valid_filters(cls, v: list[str]) -> list[str]:
        return [check_topic_filter(t) for t in v]


def source_broker(cfg: MqttTopicSourceConfig, agent: MqttConfig) -> MqttConfig:
    """The broker settings of a source: the agent's (its broker, TLS and credentials) when
    it names no host; else that host (port default 1883), without the agent's
    credentials, with the agent's TLS only if ``use_agent_tls``."""
    own_broker = cfg.host is None
    use_tls = own_broker if cfg.use_agent_tls is None else cfg.use_agent_tls
    update: dict[str, Any] = {} if use_tls else {"tls": None}
    if not own_broker:
        update.update(host=str(cfg.host), port=cfg.port or 1883, username=None,
                      password=None, password_file=None, client_id=None)
    elif cfg.port is not None:
        update["port"] = cfg.port
    return agent.model_copy(update=update)
