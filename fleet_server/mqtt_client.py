"""The fleet server's one way to make an MQTT v5 client (paho-mqtt 2.x, VERSION2 callbacks).

Both of its connections (the report bridge and the artifact stream) are built here
from the one broker settings model, :class:`fleet_server.config.MqttSettings`: TLS
with the server's identity, credentials, reconnect back-off, bounded queues, and the
MQTT v5 Maximum Packet Size announced in CONNECT, so that the broker never hands the
server a message larger than the connection accepts (it drops it instead): a device
cannot make the server read a 256 MB report before refusing it.
"""

from __future__ import annotations

import ssl
from typing import Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.artifacts import set_tcp_nodelay
from fleet_server.config import MqttSettings

RECONNECT_MAX_S = 30


def build_client(settings: MqttSettings, client_id: str, *, max_queued: int,
                 max_inflight: int = 20, manual_ack: bool = False) -> mqtt.Client:
    """A configured, unconnected client; the caller sets its callbacks, then :func:`connect`."""
    if max_queued < 1:
        raise ValueError("max_queued must be >= 1: paho's queue must be bounded")
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                    manual_ack=manual_ack)
    # An exception escaping a callback would end paho's network thread (and with it the
    # connection, for good): log it and carry on.
    c.suppress_exceptions = True
    c.on_socket_open = set_tcp_nodelay  # artifact requests and chunks are request/response
    c.max_inflight_messages_set(max_inflight)
    c.max_queued_messages_set(max_queued)
    c.reconnect_delay_set(1, RECONNECT_MAX_S)
    if settings.username:
        c.username_pw_set(settings.username, settings.password.get_secret_value()
                          if settings.password else None)
    if settings.tls is not None:
        t = settings.tls
        c.tls_set(ca_certs=str(t.ca_file), certfile=str(t.cert_file) if t.cert_file else None,
                  keyfile=str(t.key_file) if t.key_file else None,
                  cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    return c


def connect_properties(max_packet_bytes: int, session_expiry_s: int = 0,
                       receive_maximum: int | None = None) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.MaximumPacketSize = max_packet_bytes
    props.SessionExpiryInterval = session_expiry_s
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props


def connect(client: mqtt.Client, settings: MqttSettings, *, max_packet_bytes: int,
            clean_start: bool | Literal[3], session_expiry_s: int = 0,
            receive_maximum: int | None = None) -> None:
    """Connect in the background (paho retries with back-off, the first attempt too)."""
    client.connect_async(settings.host, settings.port, keepalive=settings.keepalive_s,
                         clean_start=clean_start, properties=connect_properties(
                             max_packet_bytes, session_expiry_s, receive_maximum))
    client.loop_start()
