"""The agent's broker session: the MQTT link with the outbox sender on it, every
subscription the agent makes (queries, the mute list, the fleet's desired state, OTA
artifacts) and what the agent publishes of its own (status, metrics, OTA events).

A mixin of :class:`agent.daemon.Agent` rather than a part of its own: a reload that
changes ``[mqtt]`` builds a new link on the same agent, and the daemon's set-up, main
loop, reload and shutdown all reach the link through the agent's attributes. The
attributes it works on are the agent's, declared below for the type checker."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.mqtt_link import MqttLink
from agent.sender import REPORT_BURST, OutboxSender
from agent.token_bucket import TokenBucket
from contract import topics
from contract.messages import Metrics, OtaEvent, Status
from contract.mutes import mutes_topic

if TYPE_CHECKING:  # annotations only; OTA is imported when [ota] is configured
    from agent.config import AgentConfig
    from agent.metrics import Counters
    from agent.mute_inbox import MuteInbox
    from agent.mutes import MuteSet
    from agent.ota.engine import OtaEngine
    from agent.ota.mqtt_transport import MqttTransport
    from agent.query_service import QueryService
    from agent.spool import Spool


class BrokerSession:
    # Set by Agent.__init__ and Agent.setup (a reload replaces cfg).
    cfg: AgentConfig
    started_at: float
    counters: Counters
    spool: Spool
    queries: QueryService
    mutes: MuteSet
    mute_inbox: MuteInbox
    ota: OtaEngine | None
    _ota_attached: bool
    _artifacts: MqttTransport | None
    # Built here, by _setup_link (again by a reload that changes [mqtt]).
    link: MqttLink
    sender: OutboxSender

    # --- the link and its subscriptions --------------------------------------------------
    def _setup_link(self, first_connection: int = 1) -> None:
        """The broker link; ``first_connection``: a reload's new link numbers its
        connections on from the old one's (one agent run, one numbering)."""
        cfg = self.cfg

        def will(connection: int) -> tuple[str, bytes]:
            offline = Status(seq=0, device_id=cfg.device_id, state="offline",
                             agent_version=__version__, started_at=self.started_at,
                             connection=connection)
            return topics.status(cfg.device_id), offline.model_dump_json().encode()

        self.link = MqttLink(cfg.mqtt, cfg.mqtt.client_id or f"nanofleet-{cfg.device_id}",
                             will=will, first_connection=first_connection)
        rate = cfg.spool.report_rate_per_s
        self.sender = OutboxSender(
            self.spool, self.link, self.counters, window=cfg.mqtt.max_inflight,
            paced=frozenset({topics.alerts(cfg.device_id), topics.ota(cfg.device_id)}),
            pacer=TokenBucket(rate, burst=min(2 * rate, REPORT_BURST)))
        # Every subscription is set up here, on each link built (a reload that changes
        # [mqtt] builds a new one): whatever the old link had is gone with it.
        self.link.handle(topics.query(cfg.device_id), self.queries.on_query_message)
        self._follow_mutes()
        self._follow_desired()
        if self._artifacts is not None:  # a reload replaced the link: follow it
            self._artifacts.use_link(self.link)
        elif self.ota is not None and self.ota.cfg.transport == "mqtt":
            # Artifacts over MQTT ride on this link: the device's one broker session. The
            # engine's settings decide (a reload does not change [ota]).
            from agent.ota.mqtt_transport import MqttTransport

            self._artifacts = MqttTransport.for_agent(cfg, self.link)
            self.ota.use_transport(self._artifacts)
        self.link.on_up(lambda: self.publish_status("online"))
        self.link.start()
        self.sender.start()
        # READY=1 means "set up", not "connected": store-and-forward covers an absent broker.
        self.link.connected.wait(3.0)

    def _follow_mutes(self) -> None:
        """Subscribe to the fleet server's mute list, or, with ``[alerts] mutes = false``,
        not at all (and forget a list held: turned on again, the retained one applies)."""
        topic = mutes_topic(self.cfg.device_id)
        if self.cfg.alerts.mutes:
            self.link.handle(topic, self.mute_inbox.on_message)
        else:
            self.link.unhandle(topic)
            self.mutes.clear()

    def _follow_desired(self) -> None:
        """Route the fleet's desired state to the OTA engine, once it is attached: the
        retained state arrives as soon as we subscribe, and an engine without a slot
        must not get it (the set-up's first link subscribes after the attach)."""
        if self.ota is not None and self._ota_attached:
            self.link.handle(topics.desired(self.cfg.device_id), self.ota.on_desired)

    # --- publishing --------------------------------------------------------------------
    def publish_status(self, state: str) -> Any:
        doc = self.queries.status_doc(state, publish=True)
        return self.link.publish(topics.status(self.cfg.device_id),
                                 json.dumps(doc).encode(), qos=1, retain=True)

    def publish_metrics(self) -> None:
        if not self.link.connected.is_set():
            return  # counters are cumulative: the next report covers the gap
        doc = self.queries.metrics_doc()
        msg = Metrics(seq=self.spool.next_seq("metrics"), device_id=self.cfg.device_id,
                      uptime_s=doc["uptime_s"], counters=doc["counters"], gauges=doc["gauges"])
        self.link.publish(topics.metrics(self.cfg.device_id), msg.model_dump_json().encode())

    # --- OTA (agent/ota) ------------------------------------------------------------------
    def _publish_ota(self, fields: dict[str, Any]) -> None:
        """OTA state changes go through the durable outbox, like results."""
        event = OtaEvent(seq=self.spool.next_seq("ota"), device_id=self.cfg.device_id, **fields)
        self.spool.commit([(topics.ota(self.cfg.device_id), event.model_dump_json().encode())],
                          {})
        self.sender.wake()
        if event.state in ("committed", "rolled_back") and self.link.connected.is_set():
            self.publish_status("online")  # the live model changed
