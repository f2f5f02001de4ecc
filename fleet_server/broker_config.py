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
  artifact chunks); a revoked device nothing at all (``user <id>`` + ``topic deny #``).
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
size; the ACL keeps that to its own few topics.

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


def render_acl(revoked_device_ids: Iterable[str]) -> str:
    lines = ["# nanofleet broker ACL: written by the fleet server (nanofleet broker-config, and",
             "# again on every revocation). Do not edit: the next revocation overwrites it.",
             ""]
    revoked = sorted(set(revoked_device_ids))
    if revoked:
        lines.append("# revoked devices: no topic at all (open sessions too, once reloaded)")
    for device_id in revoked:
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
    ]
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
