"""The agent's one way to make an MQTT v5 client (paho-mqtt 2.x, VERSION2 callbacks).

Every connection the agent opens (its link to the fleet's broker, MQTT sources on
other brokers) is built here from the one broker settings model,
:class:`agent.config.MqttConfig`: TLS, credentials, reconnect back-off, a bounded
outgoing queue, and the MQTT v5 Maximum Packet Size announced in CONNECT, so that the
broker never hands us a message larger than we accept (it drops it instead).
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.artifacts import set_tcp_nodelay
from contract.limits import AGENT_RECEIVE_MAX_BYTES

if TYPE_CHECKING:  # agent.config imports the sources, which import this module
    from agent.config import MqttConfig


def tls_kwargs(cfg: MqttConfig) -> dict[str, Any] | None:
    """paho ``tls_set`` keyword arguments for ``cfg.tls`` (None: plain TCP)."""
    if cfg.tls is None:
        return None
    return {"ca_certs": str(cfg.tls.ca_file),
            "certfile": str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
            "keyfile": str(cfg.tls.key_file) if cfg.tls.key_file else None,
            "cert_reqs": ssl.CERT_REQUIRED, "tls_version": ssl.PROTOCOL_TLS_CLIENT}


def build_client(cfg: MqttConfig, client_id: str, *, max_queued: int,
                 max_inflight: int | None = None, manual_ack: bool = False) -> mqtt.Client:
    """A configured, unconnected client; the caller sets its callbacks, then :func:`connect`.

    ``max_queued`` bounds paho's outgoing queue (0 would be unbounded: never);
    ``manual_ack``: a QoS 1 message is acknowledged by ``client.ack`` only, not when
    ``on_message`` returns."""
    if max_queued < 1:
        raise ValueError("max_queued must be >= 1: paho's queue must be bounded")
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                    manual_ack=manual_ack)
    # An exception escaping a callback would end paho's network thread (and with it the
    # connection, for good): log it and carry on.
    c.suppress_exceptions = True
    c.on_socket_open = set_tcp_nodelay  # queries and artifact chunks are request/response
    c.max_inflight_messages_set(max_inflight or cfg.max_inflight)
    c.max_queued_messages_set(max_queued)
    c.reconnect_delay_set(1, cfg.reconnect_max_s)
    if cfg.username:
        c.username_pw_set(cfg.username,
                          cfg.password.get_secret_value() if cfg.password else None)
    tls = tls_kwargs(cfg)
    if tls:
        c.tls_set(**tls)
    return c


def connect_properties(max_packet_bytes: int = AGENT_RECEIVE_MAX_BYTES,
                       session_expiry_s: int = 0,
                       receive_maximum: int | None = None) -> Properties:
    """CONNECT properties: the largest packet we accept (the broker withholds larger
    ones), how long the broker keeps our session after a disconnect, and how many QoS
    1/2 messages it may send us that we have not acknowledged yet."""
    props = Properties(PacketTypes.CONNECT)
    props.MaximumPacketSize = max_packet_bytes
    if session_expiry_s:
        props.SessionExpiryInterval = session_expiry_s
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props


def connect(client: mqtt.Client, cfg: MqttConfig, *,
            max_packet_bytes: int = AGENT_RECEIVE_MAX_BYTES, session_expiry_s: int = 0,
            clean_start: bool | Literal[3] = mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            receive_maximum: int | None = None) -> None:
    """Connect in the background (paho retries with back-off, the first attempt too)."""
    client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s,
                         clean_start=clean_start,
                         properties=connect_properties(max_packet_bytes, session_expiry_s,
                                                       receive_maximum))
    client.loop_start()
