"""``nanofleet enroll-token create|list|cancel``, ``nanofleet devices revoke``,
``nanofleet broker-config``.

The token and revoke commands call the operator API. ``broker-config`` runs on the
fleet server's machine (it needs the device CA's key, in the server's data directory):
it issues the broker's TLS certificate and the fleet server's MQTT client certificate
(from the service CA) and writes a Mosquitto configuration (see
:mod:`fleet_server.broker_config`) whose device ``crlfile`` and ``acl_file`` are the
files the server rewrites on every revocation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import grp
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from fleet_server.broker_config import (
    PLAIN_ACL,
    SERVICE_ACL,
    BrokerFiles,
    render_mosquitto_conf,
)
from fleet_server.cli.fleet import add_client_options
from fleet_server.client import ApiClient
from fleet_server.config import load_config
from fleet_server.db import Database
from fleet_server.identity.device_ca import FLEET_SERVER_CN, write_public
from fleet_server.identity.service import IdentityService
from fleet_server.identity.tokens import parse_duration

EXIT_OK = 0
BROKER_USER = "mosquitto"  # Debian's mosquitto drops to this user when started as root


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(args.server, args.token)


def _utc(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


# --- enroll-token --------------------------------------------------------------------------

def cmd_token_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"device_id": args.device, "group": args.group,
                            "tags": [t.strip() for t in (args.tags or "").split(",") if t.strip()],
                            "replace": args.replace}
    if args.replace and not args.device:
        raise ValueError("--replace needs --device ID: only a token bound to one id may "
                         "replace an enrolled device")
    if args.expires:
        body["expires_in_s"] = parse_duration(args.expires)
    client = _client(args)
    result = client.post_json("/api/v1/enroll-tokens", body)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    bound = f" for device {result['device_id']}" if result["device_id"] else " (any device id)"
    print(f"enrollment token {result['token_id']}{bound}, single use, expires "
          f"{_utc(result['expires_at'])} (shown once; only its hash is stored):")
    print(f"  {result['token']}")
    if args.replace:
        print(f"using it replaces {result['device_id']}'s identity: its current certificates "
              "are revoked then")
    print("on the device (the token in a file, not on the command line, where ps shows it):")
    device = f" --device-id {result['device_id']}" if result["device_id"] else ""
    print(f"  nanofleet-agent enroll --server {client.server} --token-file FILE{device} "
          "--root-sha256 <from the key ceremony>")
    return EXIT_OK


def cmd_token_list(args: argparse.Namespace) -> int:
    result = _client(args).get("/api/v1/enroll-tokens", {"all": "true" if args.all else "false"})
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    if not result["tokens"]:
        print("no usable enrollment tokens" + ("" if args.all else " (--all shows spent ones)"))
    for t in result["tokens"]:
        extra = f"used by {t['used_by']} {_utc(t['used_at'])}" if t["used_by"] else \
            f"expires {_utc(t['expires_at'])}"
        print(f"  {t['token_id']}  {t['state']:9s} device {t['device_id'] or '*':16s} "
              f"group {t['group'] or '-':10s} by {t['created_by']:12s} {extra}")
    return EXIT_OK


def cmd_token_cancel(args: argparse.Namespace) -> int:
    result = _client(args).request("DELETE", f"/api/v1/enroll-tokens/{args.token_id}")
    print(json.dumps(result, sort_keys=True) if args.json
          else f"enrollment token {result['token_id']}: {result['state']}")
    return EXIT_OK


# --- devices revoke ------------------------------------------------------------------------

def cmd_devices_revoke(args: argparse.Namespace) -> int:
    result = _client(args).post_json(f"/api/v1/devices/{args.device_id}/revoke",
                                     {"reason": args.reason})
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    state = "was already revoked" if result["already_revoked"] else "revoked"
    print(f"{result['device_id']} {state}; certificates added to the CRL: "
          f"{', '.join(result['revoked_serials']) or 'none new'}")
    print(f"next: {result['next_step']}")
    return EXIT_OK


# --- broker-config -------------------------------------------------------------------------

def _write_key(path: Path, pem: bytes, broker_readable: bool) -> str | None:
    """Write a private key; the broker's own key is made readable by group mosquitto
    when we can (root), since Debian's mosquitto drops to that user after start."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    note = None
    if broker_readable:
        try:
            gid = grp.getgrnam(BROKER_USER).gr_gid
        except KeyError:
            gid = None
        if gid is not None and os.geteuid() == 0:
            os.chown(tmp, 0, gid)
            os.chmod(tmp, 0o640)
        else:
            note = (f"{path} is 0600 for the current user: the broker must be able to read "
                    f"it (as root: chgrp {BROKER_USER} {path} && chmod 640 {path})")
    os.replace(tmp, path)
    return note


def default_memory_limit() -> int:
    """Half of this machine's memory: the broker's bound unless --memory-limit says."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def cmd_broker_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    db = Database(config.db_url)
    try:
        identity = IdentityService(config, db)  # makes the CA at first use; writes CRL + ACL
        out: Path = args.out.resolve()
        out.mkdir(parents=True, exist_ok=True)
        os.chmod(out, 0o755)
        hosts = list(dict.fromkeys([*(args.host or []), identity.broker_host, "localhost",
                                    "127.0.0.1"]))
        validity = dt.timedelta(days=args.days)
        broker_cert, broker_key = identity.issue_service_certificate(
            hosts[0], "broker", validity, hosts)
        server_cert, server_key = identity.issue_service_certificate(
            FLEET_SERVER_CN, "fleet-server", validity)
        pem = serialization.Encoding.PEM
        write_public(out / "ca.crt", identity.ca.cert.public_bytes(pem))
        write_public(out / "service-ca.crt", identity.service_ca().cert.public_bytes(pem))
        write_public(out / "broker.crt", broker_cert.public_bytes(pem))
        write_public(out / "fleet-server.crt", server_cert.public_bytes(pem))
        notes = [n for n in (_write_key(out / "broker.key", broker_key, True),
                             _write_key(out / "fleet-server.key", server_key, False)) if n]
        crl_file, acl_file = identity.ca.crl_path, identity.acl_path
        if args.copy_policy:
            crl_file, acl_file = out / "crl.pem", out / "acl"
            for src, dst in ((identity.ca.crl_path, crl_file), (identity.acl_path, acl_file)):
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o644)
        write_public(out / "service.acl", SERVICE_ACL.encode())
        plain_acl = None
        if args.plain_port is not None:
            plain_acl = out / "plain.acl"
            write_public(plain_acl, PLAIN_ACL.encode())
        conf = render_mosquitto_conf(BrokerFiles(
            port=args.port, bind=args.bind, ca_file=out / "ca.crt",
            cert_file=out / "broker.crt", key_file=out / "broker.key", crl_file=crl_file,
            acl_file=acl_file, server_port=args.server_port, server_bind=args.server_bind,
            service_ca_file=out / "service-ca.crt", service_acl_file=out / "service.acl",
            plain_port=args.plain_port, plain_acl_file=plain_acl, user=args.user,
            memory_limit=default_memory_limit() if args.memory_limit is None
            else args.memory_limit or None))
        write_public(out / "mosquitto.conf", conf.encode())
    finally:
        db.dispose()
    expires = broker_cert.not_valid_after_utc.strftime("%Y-%m-%d")
    print(f"wrote {out}/mosquitto.conf: devices on TLS port {args.port}, the fleet server on "
          f"TLS port {args.server_port} ({args.server_bind or 'all addresses'})"
          + (f", read-only plain port {args.plain_port} on 127.0.0.1" if args.plain_port
             else ""))
    print(f"  broker certificate for {', '.join(hosts)} and the fleet server's MQTT identity "
          f"(CN {FLEET_SERVER_CN}), both valid until {expires}: run broker-config again "
          "before then")
    print(f"  CRL {crl_file} and ACL {acl_file}"
          + (" are copies: after each revocation fetch GET /api/v1/device-ca/crl.pem and "
             "/api/v1/device-ca/acl into them, then reload the broker" if args.copy_policy
             else " are rewritten by the fleet server on every revocation, re-enrollment and "
             "renewal; set enrollment.broker_reload_command (e.g. [\"systemctl\", \"reload\", "
             "\"mosquitto\"]) so the server reloads the broker each time"))
    for note in notes:
        print(f"  note: {note}")
    server_host = args.server_bind or identity.broker_host
    print("fleet server config (server.toml):")
    print(f'[mqtt]\nhost = "{server_host}"\nport = {args.server_port}\n'
          f'[mqtt.tls]\nca_file = "{out}/ca.crt"\ncert_file = "{out}/fleet-server.crt"\n'
          f'key_file = "{out}/fleet-server.key"')
    return EXIT_OK


# --- wiring --------------------------------------------------------------------------------

def subcommands_of(parser: argparse.ArgumentParser) -> Any:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError(f"{parser.prog} has no sub-commands")


def extend_metavar(action: Any, *names: str) -> None:
    # The parent lists its commands in a fixed metavar ("{a,b}"); keep it complete.
    if isinstance(action.metavar, str) and action.metavar.endswith("}"):
        action.metavar = action.metavar[:-1] + "," + ",".join(names) + "}"


def add_identity_commands(sub: Any) -> None:
    """Add enroll-token and broker-config to ``sub``, and revoke to its ``devices``."""
    tok = sub.add_parser("enroll-token", help="single-use tokens devices enroll with")
    tsub = tok.add_subparsers(dest="token_command", metavar="{create,list,cancel}",
                              required=True)
    create = tsub.add_parser("create", help="a new enrollment token (shown once)")
    create.add_argument("--device", metavar="ID", help="only this device id may use it")
    create.add_argument("--expires", metavar="DURATION",
                        help="lifetime, e.g. 30m, 24h, 7d (default: the server's "
                        "enrollment.token_default_hours)")
    create.add_argument("--group", help="inventory group the device joins")
    create.add_argument("--tags", metavar="A,B", help="inventory tags the device gets")
    create.add_argument("--replace", action="store_true", help="with --device: the id is "
                        "enrolled and this token replaces its identity (its current "
                        "certificates are revoked when the token is used)")
    add_client_options(create)
    create.set_defaults(func=cmd_token_create)
    lst = tsub.add_parser("list", help="usable tokens (never the secrets)")
    lst.add_argument("--all", action="store_true", help="also used, expired, cancelled")
    add_client_options(lst)
    lst.set_defaults(func=cmd_token_list)
    cancel = tsub.add_parser("cancel", help="make an unused token unusable")
    cancel.add_argument("token_id", help="the token's id (8 hex digits)")
    add_client_options(cancel)
    cancel.set_defaults(func=cmd_token_cancel)

    devices = subcommands_of(sub.choices["devices"])
    revoke = devices.add_parser("revoke", help="revoke a device's certificates (CRL + ACL)")
    revoke.add_argument("device_id")
    revoke.add_argument("--reason", help="why (kept with the revocation, audit log)")
    add_client_options(revoke)
    revoke.set_defaults(func=cmd_devices_revoke)
    extend_metavar(devices, "revoke")

    broker = sub.add_parser("broker-config", help="write a Mosquitto configuration with "
                            "mTLS, the device ACL and the CRL")
    broker.add_argument("--config", type=Path, required=True, help="server config (TOML)")
    broker.add_argument("--out", type=Path, required=True, help="directory to write into")
    broker.add_argument("--port", type=int, default=8883,
                        help="TLS port for devices (default 8883)")
    broker.add_argument("--bind", metavar="ADDR", help="address of the devices' TLS listener "
                        "(default: all)")
    broker.add_argument("--server-port", type=int, default=8884,
                        help="TLS port for the fleet server's own connections (default 8884)")
    broker.add_argument("--server-bind", metavar="ADDR", default="127.0.0.1",
                        help="address of the fleet server's listener (default 127.0.0.1: "
                        "fleet server and broker on one machine)")
    broker.add_argument("--plain-port", type=int, metavar="PORT",
                        help="also a plain listener on 127.0.0.1, read-only for anonymous "
                        "local tools; any local user of the broker's machine may then "
                        "connect with any client id (take a device's or the fleet server's "
                        "session): for a machine only its admins use, or a test rig")
    broker.add_argument("--memory-limit", type=int, metavar="BYTES",
                        help="the broker's memory_limit (default: half of this machine's "
                        "memory; 0: none)")
    broker.add_argument("--host", action="append", metavar="NAME",
                        help="broker name for its certificate (repeatable; default: "
                        "enrollment.broker_host or mqtt.host, localhost, 127.0.0.1)")
    broker.add_argument("--days", type=float, default=365,
                        help="validity of the broker and fleet-server certificates")
    broker.add_argument("--user", help="`user` line: the account mosquitto runs as "
                        "(default: Debian's, mosquitto)")
    broker.add_argument("--copy-policy", action="store_true",
                        help="copy the CRL and ACL into --out (a broker on another machine) "
                        "instead of using the server's live files")
    broker.set_defaults(func=cmd_broker_config)
    extend_metavar(sub, "enroll-token", "broker-config")
