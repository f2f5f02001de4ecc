"""``nanofleet-agent enroll``: get this device a client certificate from the fleet server.

::

    nanofleet-agent enroll --server URL --token TOKEN [--device-id ID] [--config FILE] [--dir DIR]
    nanofleet-agent enroll --renew [--config FILE | --dir DIR] [--force]

The device id is ``--device-id``, else the ``device_id`` of ``--config``, else the host
name. Files go to ``--dir``, else ``<state_dir>/identity`` of ``--config``, else
/var/lib/nanofleet/identity. With ``--config`` the file is updated ([mqtt], [mqtt.tls],
[ota] root_file); without, the snippet to add is printed.

Exit codes: 0 done (or renewal not due), 1 refused or unreachable, 2 bad input.
Heavy imports (cryptography) happen only when the command runs.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_IDENTITY_DIR = Path("/var/lib/nanofleet/identity")


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def resolve(args: argparse.Namespace) -> tuple[str | None, Path]:
    """(device id or None for a renewal, identity directory), from options and config."""
    from agent.enroll import EnrollError
    from agent.enroll_config import read_raw

    raw: dict[str, Any] = read_raw(args.config) if args.config else {}
    configured = raw.get("device_id")
    if args.device_id and configured and args.device_id != configured:
        raise EnrollError(f"--device-id {args.device_id} but {args.config} says device_id = "
                          f"{configured!r}: fix one of them", 2)
    directory = args.dir or (Path(raw["state_dir"]) / "identity" if raw.get("state_dir")
                             else DEFAULT_IDENTITY_DIR)
    if args.renew:
        return None, directory
    device_id = args.device_id or configured or socket.gethostname()
    from contract.topics import check_device_id

    try:
        check_device_id(device_id)
    except ValueError as exc:
        raise EnrollError(f"{exc} (pass --device-id)", 2) from None
    return device_id, directory


def give_to(directory: Path, owner: str) -> None:
    """chown the identity directory and its files to ``owner`` (USER or USER:GROUP): run as
    root, enroll would otherwise leave a key the agent's own user cannot read."""
    from agent.enroll import EnrollError

    user, _, group = owner.partition(":")
    try:
        for path in (directory, *directory.iterdir()):
            shutil.chown(path, user, group or None)
    except (LookupError, PermissionError) as exc:
        raise EnrollError(f"--owner {owner}: {exc}", 2) from None


def _report(response: Any, files: Any, renewed: bool) -> None:
    what = "renewed" if renewed else "enrolled"
    print(f"{what} {response.device_id}: certificate {response.serial[:16]}… valid until "
          f"{_utc(response.not_after)} (renew after {_utc(response.renew_after)})")
    print(f"  key          {files.key}  (made on this device, never sent)")
    print(f"  certificate  {files.cert}")
    print(f"  CA           {files.ca}")
    if response.tuf_root is not None and not renewed:
        print(f"  TUF root     {files.root}")


def cmd_enroll(args: argparse.Namespace) -> int:
    from agent.enroll import EnrollError, enroll, prepare_dir, renew
    from agent.enroll_config import merge_into_file, render_snippet

    try:
        device_id, directory = resolve(args)
        files = prepare_dir(directory)
        if args.renew:
            response = renew(files, server=args.server, force=args.force,
                             timeout=args.timeout, ca_file=args.ca_file)
            if response is None:
                print(f"certificate in {files.cert} is not due for renewal yet (--force "
                      "renews anyway)")
                return 0
            if args.owner:
                give_to(files.directory, args.owner)
            _report(response, files, renewed=True)
            print("restart the agent to use it (systemctl restart nanofleet-agent)")
            return 0
        if not args.server or not args.token:
            raise EnrollError("enrolling needs --server URL and --token TOKEN (from "
                              "`nanofleet enroll-token create` on the operator's side)", 2)
        assert device_id is not None
        response = enroll(args.server, args.token, device_id, files, new_key=args.new_key,
                          timeout=args.timeout, ca_file=args.ca_file)
        if args.owner:
            give_to(files.directory, args.owner)
        _report(response, files, renewed=False)
        if args.config:
            for note in merge_into_file(args.config, response, files, args.server):
                print(f"  config: {note}")
            print(f"updated {args.config}; (re)start the agent to connect with the certificate")
        else:
            print(render_snippet(response, files, args.server), end="")
        return 0
    except EnrollError as exc:
        print(f"nanofleet-agent enroll: error: {exc}", file=sys.stderr)
        return exc.exit_code


def add_enroll_command(sub: Any) -> None:
    p = sub.add_parser("enroll", help="get this device's client certificate from the fleet "
                       "server (key made here, never sent)")
    p.add_argument("--server", help="fleet server URL, e.g. https://fleet.example.com")
    p.add_argument("--token", help="enrollment token (nanofleet enroll-token create)")
    p.add_argument("--device-id", help="this device's id (default: the config's device_id, "
                   "else the host name)")
    p.add_argument("--config", type=Path, help="agent config to read and update")
    p.add_argument("--dir", type=Path, help="where key and certificates go (default: "
                   "<state_dir>/identity, else /var/lib/nanofleet/identity)")
    p.add_argument("--new-key", action="store_true", help="make a new key even if one exists")
    p.add_argument("--renew", action="store_true", help="renew the certificate (same key, no "
                   "token) when 2/3 of its validity has passed")
    p.add_argument("--force", action="store_true", help="with --renew: renew now")
    p.add_argument("--owner", metavar="USER[:GROUP]", help="give the identity files to "
                   "this user (running as root for an agent that runs as another user)")
    p.add_argument("--ca-file", type=Path, help="CA bundle for an https:// server")
    p.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout (s)")
    p.set_defaults(func=cmd_enroll)

