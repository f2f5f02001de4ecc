"""The Mosquitto configuration and ACLs for a fleet (pure text; the CLI writes the files).

Two TLS listeners, both requiring a client certificate whose CN becomes the MQTT
username (``use_identity_as_username``):

- the **device listener** trusts the device CA. ``use_username_as_clientid``: a
  device's client id is its id, whatever it asked for, so no device can take over
  another's session (Mosquitto disconnects the older of two clients with one id;
  checked: without it, device A kicks device B and the fleet server at will). So a
  device has exactly one session: the agent's artifact stream and MQTT sources ride on
  its one connection. ACL: each device reads ``nanofleet/v1/dev/<its CN>/#`` only
  (``pattern ... %u``) and writes only the topics a device publishes
  (:data:`contract.topics.DEVICE_WRITES`: not its ``desired`` state, ``query`` or
  artifact chunks); a revoked or quarantined device nothing at all (``user <id>`` +
  ``topic deny #``; fleet_server.identity.quarantine).
  Mosquitto applies a re-read ACL to sessions that are already open (checked with
  2.0.11), so after a reload (SIGHUP) a revoked device still connected can neither
  publish nor receive,
  while the re-read CRL refuses its next TLS handshake;
- the **server listener** (loopback by default) trusts only the service CA, so only
  the fleet server's identity (CN ``fleet-server``) gets a session there; its ACL gives
  it all of ``nanofleet/v1/#``. The fleet server keeps its own client ids here (one per
  connection and replica), which ``use_username_as_clientid`` would collapse.

Sizes: ``max_packet_size`` (:data:`contract.limits.BROKER_MAX_PACKET_BYTES`) disconnects
any client that sends a larger packet. Mosquitto 2.0.11 has no per-client quota of
retained messages (only ``retain_available`` on/off and the global ``memory_limit``):
a device can keep a retained message on each topic it may write, each at most that
size, and ``results/+`` and ``reply/+`` match any number of topics (review, December
2026: one device certificate kept 150 MB of retained messages, held after it left). So
the configuration sets ``memory_limit`` (by default half of the memory of the machine
that runs ``broker-config``): past it Mosquitto refuses the publish and disconnects its
client, instead of growing until the host kills it.

What the broker holds *for* a client (outgoing QoS 1 messages it has not acknowledged,
and those queued behind them, also while it is away) is bounded per client:
``max_inflight_bytes`` + ``max_queued_bytes`` (:data:`MAX_INFLIGHT_BYTES`,
:data:`MAX_QUEUED_BYTES`: 8 MiB, plus at most one message over each) and
``max_queued_messages``; beyond that Mosquitto drops the message for that client only
(the publisher still gets its PUBACK). Without them (Mosquitto's defaults: 1,000
messages, no byte limit) one device identity that subscribed to its own artifact chunks
with Receive Maximum 1 and never acknowledged made the broker hold 1,000 x 256 KiB (RSS
9 MB -> 261 MB). A client announcing Receive Maximum 65535 has everything "in flight":
only ``max_inflight_bytes`` bounds its bytes (the queue limits count what is not in
flight), and nothing in Mosquitto 2.0.11 their number: 65,535 empty messages a device
sent itself held ~25 MB (measured). That and retained messages are left to
``memory_limit``, which depends on the host (docs/scaling.md, "Broker memory").
``persistent_client_expiration`` caps every session's expiry (MQTT v5 Session Expiry, or
"never" for MQTT 3.1.1 clean_session false) at :data:`SESSION_EXPIRATION`, so what a
vanished client left queued is freed. Mosquitto 2.0.11 applies all four globally (the
man page: "This option applies globally"; ``per_listener_settings`` only moves the
authentication and ACL options into the listeners), so they hold for the fleet server's
clients too; they are sized for both (see the constants).

The device ACL and the CRL live in the server's CA directory and the server rewrites
both on every revocation; the broker configuration points at them.

Not covered by an ACL file: Mosquitto's default ACL check does not look at
subscriptions, and a client in a shared-subscription group that may not read a
message still takes its turn in the group, so the message is lost for the group.
Give ``$share`` groups names devices cannot guess (see docs/enrollment.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from contract.limits import BROKER_MAX_PACKET_BYTES
from contract.topics import DEVICE_WRITES, PREFIX, check_device_id
from fleet_server.identity.device_ca import FLEET_SERVER_CN

ACL_FILE = "acl"

MAX_INFLIGHT_BYTES = 4 * 1024 * 1024
"""``max_inflight_bytes``: unacknowledged QoS 1/2 bytes the broker sends one client before it
queues the rest (at least one message always goes). An agent's artifact window
(``ota.mqtt_window_chunks`` x ``ota.mqtt_chunk_bytes``: 16 x 32 KiB = 512 KiB by default,
one request at most :data:`contract.artifacts.MAX_REQUEST_BYTES` = 1 MiB) fits 8 times;
the fleet server's report bridge lets the broker send it 1,000 reports (its Receive
Maximum) of a few KiB each. It is also what bounds the bytes of a client that announces
a large Receive Maximum and never acknowledges."""

MAX_QUEUED_BYTES = 4 * 1024 * 1024
"""``max_queued_bytes``: QoS 1/2 bytes queued for one client beyond those in flight (the
whole bound while it is away). With :data:`MAX_INFLIGHT_BYTES`: 8 MiB per client, so an
artifact window of up to 8 MiB (32 chunks of 256 KiB) is never cut; a larger window
loses chunks here, which the agent asks for again after ``retry_s``."""

MAX_QUEUED_MESSAGES = 1000
"""``max_queued_messages``: Mosquitto's default, made explicit. It bounds many small messages
(payloads too small for the byte limits to bite; each costs the broker a few hundred
bytes of bookkeeping). Up to this many reports wait for the fleet server's session while
it restarts (beyond that, or beyond :data:`MAX_QUEUED_BYTES`, the broker drops them)."""

SESSION_EXPIRATION = "1d"
"""``persistent_client_expiration``: no session outlives this after its client went away,
whatever Session Expiry the client asked for. Above every expiry nanofleet asks for: the
fleet server's report bridge 1 h (``fleet_server.report_lanes.SESSION_EXPIRY_S``; 0 in a
shared group), the artifact stream and the agent's link 0 (clean), an agent MQTT source
at most 86,400 s (``session_expiry_s``), so none of them is shortened."""


def render_acl(revoked_device_ids: Iterable[str],
               quarantined_device_ids: Iterable[str] = ()) -> str:
    lines = ["# nanofleet broker ACL: written by the fleet server (nanofleet broker-config, and",
             "# again on every revocation and quarantine). Do not edit: the next one",
             "# overwrites it.", ""]
    revoked = sorted(set(revoked_device_ids))
    quarantined = sorted(set(quarantined_device_ids) - set(revoked))
    if revoked:
        lines.append("# revoked devices: no topic at all (open sessions too, once reloaded)")
    for device_id in revoked:
        lines += [f"user {check_device_id(device_id)}", "topic deny #", ""]
    if quarantined:
        lines.append("# quarantined devices (a flood, or an operator's choice): no topic at "
                     "all until the quarantine ends (nanofleet devices quarantined)")
    for device_id in quarantined:
        lines += [f"user {check_device_id(device_id)}", "topic deny #", ""]
    lines += ["# every device: reads its own tree only (%u = the CN of its certificate)...",
              f"pattern read {PREFIX}/dev/%u/#",
              "# ...and writes only what a device publishes: never its desired state, its",
              "# queries or artifact chunks (which would plant a retained desired state or",
              "# forge the fleet server's answers)",
              *(f"pattern write {PREFIX}/dev/%u/{t}" for t in DEVICE_WRITES), ""]
    return "\n".join(lines)


SERVICE_ACL = (f"# the server listener: the fleet server reaches every device\n"
               f"user {FLEET_SERVER_CN}\ntopic readwrite {PREFIX}/#\n")

# Anonymous clients on the loopback-only plain listener may watch, never act: a local
# monitor or debugging tool must not become a way around the certificates.
PLAIN_ACL = (f"# anonymous clients on the loopback plain listener: read only\n"
             f"topic read {PREFIX}/#\n")


@dataclass(frozen=True)
class BrokerFiles:
    """Paths and ports that go into the Mosquitto configuration."""

    port: int
    bind: str | None
    ca_file: Path
    cert_file: Path
    key_file: Path
    crl_file: Path
    acl_file: Path
    server_port: int
    server_bind: str | None
    service_ca_file: Path
    service_acl_file: Path
    plain_port: int | None = None
    plain_acl_file: Path | None = None
    user: str | None = None
    memory_limit: int | None = None  # bytes of heap the broker may use; None: no limit


def _tls_listener(port: int, bind: str | None, ca_file: Path, files: BrokerFiles) -> list[str]:
    return [
        f"listener {port}" + (f" {bind}" if bind else ""),
        "protocol mqtt",
        "allow_anonymous false",
        "require_certificate true",
        "use_identity_as_username true",
        f"cafile {ca_file}",
        f"certfile {files.cert_file}",
        f"keyfile {files.key_file}",
    ]


def render_mosquitto_conf(files: BrokerFiles) -> str:
    lines = [
        "# nanofleet broker configuration (written by `nanofleet broker-config`).",
        "# Run it with `mosquitto -c <this file>`, or put it in /etc/mosquitto/conf.d/.",
        "# Reload (SIGHUP, `systemctl reload mosquitto`) after a revocation: Mosquitto then",
        "# re-reads the CRL and the ACL the fleet server rewrote.",
        "per_listener_settings true",
        "# Any client sending a larger packet is disconnected: one device identity cannot",
        "# make the broker, the fleet server or a device hold a huge message. Clients",
        "# announce their own, smaller limits in CONNECT (MQTT v5 Maximum Packet Size).",
        f"max_packet_size {BROKER_MAX_PACKET_BYTES}",
        "# Retained messages are re-checked against the ACL of their publisher before they",
        "# are delivered: a revoked device's retained messages are not served.",
        "check_retain_source true",
        "# Small request/response messages (queries, artifact chunks) without Nagle delays.",
        "set_tcp_nodelay true",
        "# What the broker holds for one client that does not acknowledge QoS 1 messages or",
        "# is away (global options: they hold on every listener, the fleet server's too).",
        "# In flight, then queued; beyond both the message is dropped for that client only.",
        "# An agent's artifact window (512 KiB by default) fits many times over.",
        f"max_inflight_bytes {MAX_INFLIGHT_BYTES}",
        f"max_queued_bytes {MAX_QUEUED_BYTES}",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        "# No session (and what is queued in it) outlives its client by more than a day,",
        "# whatever Session Expiry it asked for (nanofleet's own ask for at most a day).",
        f"persistent_client_expiration {SESSION_EXPIRATION}",
        "# Not bounded per client: retained messages (a device may write results/<slot>",
        "# and reply/<client>: any number of topics), and the number in flight (the",
        "# client's Receive Maximum). memory_limit bounds the whole broker: past it a",
        "# publish is refused and its client disconnected, the broker itself stays up",
        "# (docs/scaling.md, \"Broker memory\").",
    ]
    if files.memory_limit:
        lines.append(f"memory_limit {files.memory_limit}")
    if files.user:
        lines.append(f"user {files.user}")
    lines += ["", "# devices: client certificates from the device CA; client id = device id",
              *_tls_listener(files.port, files.bind, files.ca_file, files),
              "use_username_as_clientid true",
              f"crlfile {files.crl_file}",
              f"acl_file {files.acl_file}",
              "", "# the fleet server: only certificates from the service CA",
              *_tls_listener(files.server_port, files.server_bind, files.service_ca_file, files),
              f"acl_file {files.service_acl_file}"]
    if files.plain_port is not None:
        if files.plain_acl_file is None:
            raise ValueError("a plain listener needs its ACL file")
        lines += [
            "",
            "# loopback only, no TLS: read-only for local monitoring tools",
            f"listener {files.plain_port} 127.0.0.1",
            "protocol mqtt",
            "allow_anonymous true",
            f"acl_file {files.plain_acl_file}",
        ]
    return "\n".join(lines) + "\n"
