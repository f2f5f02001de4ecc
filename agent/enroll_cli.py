"""``nanofleet-agent enroll``: get this device a client certificate from the fleet server.

::

    nanofleet-agent enroll --server https://URL --token-file FILE (--root FILE | --root-sha256 HEX)
                           [--device-id ID] [--config FILE] [--dir DIR] [--owner USER]
    nanofleet-agent enroll --renew [--config FILE | --dir DIR] [--force]

The token: ``--token-file`` (``-`` reads stdin), else ``$NANOFLEET_ENROLL_TOKEN``, else
``--token`` (visible to every user in ``ps``). The update trust anchor: ``--root``, else
the config's ``[ota] root_file``, else /etc/nanofleet/root.json, when they exist; or
``--root-sha256``, the pin from the key ceremony that the server's root must match.
The device id is ``--device-id``, else the ``device_id`` of ``--config``, else the host
name. Files go to ``--dir``, else ``<state_dir>/identity`` of ``--config``, else
/var/lib/nanofleet/identity. With ``--config`` the file is updated ([mqtt], [mqtt.tls],
[ota] root_file); without, the snippet to add is printed.

Exit codes: 0 done (or renewal not due), 1 refused or unreachable, 2 bad input.
Heavy imports (cryptography) happen only when the command runs.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import socket
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_IDENTITY_DIR = Path("/var/lib/nanofleet/identity")
TOKEN_ENV = "NANOFLEET_ENROLL_TOKEN"
MAX_TOKEN_FILE_BYTES = 4096


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


def parse_owner(owner: str) -> tuple[int, int]:
    """USER[:GROUP] -> (uid, gid); the group defaults to the user's primary group."""
    from agent.enroll import EnrollError

    user, _, group = owner.partition(":")
    try:
        entry = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    except KeyError as exc:
        raise EnrollError(f"--owner {owner}: no such user or group ({exc})", 2) from None
    return entry.pw_uid, gid


def read_token(args: argparse.Namespace) -> str | None:
    """--token-file, else $NANOFLEET_ENROLL_TOKEN, else --token (with a note: ps shows it)."""
    from agent.enroll import EnrollError

    if args.token_file is not None:
        try:
            if str(args.token_file) == "-":
                data = sys.stdin.read(MAX_TOKEN_FILE_BYTES)
            else:
                with open(args.token_file, encoding="utf-8") as f:
                    data = f.read(MAX_TOKEN_FILE_BYTES)
        except (OSError, UnicodeDecodeError) as exc:
            raise EnrollError(f"--token-file {args.token_file}: {exc}", 2) from None
        return data.strip() or None
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    if args.token:
        print("note: --token is visible to every user of this machine (ps); prefer "
              f"--token-file or ${TOKEN_ENV}", file=sys.stderr)
    return str(args.token) if args.token else None


def root_anchor(args: argparse.Namespace, raw: dict[str, Any]) -> Any:
    """The update trust anchor from --root / the config's root_file / the image's default
    root file (read without following a link another user planted), and --root-sha256."""
    from agent.enroll import EnrollError, RootAnchor
    from agent.enroll_trust import DEFAULT_ROOT_FILE, MAX_ROOT_BYTES, check_pin
    from agent.safe_dir import SafeDir, UnsafePath

    pin = check_pin(args.root_sha256) if args.root_sha256 else None
    configured = (raw.get("ota") or {}).get("root_file") if isinstance(raw.get("ota"), dict) \
        else None
    candidates = [Path(args.root)] if args.root else \
        [Path(p) for p in (configured, DEFAULT_ROOT_FILE) if p]
    for path in candidates:
        try:
            with SafeDir.open(path.parent) as parent:
                data = parent.read(path.name, MAX_ROOT_BYTES)
        except (OSError, UnsafePath) as exc:
            if args.root:
                raise EnrollError(f"--root {path}: {exc}", 2) from None
            continue
        if data is not None:
            return RootAnchor(provisioned=data, provisioned_from=path, pin_sha256=pin)
        if args.root:
            raise EnrollError(f"--root {path}: no such file", 2)
    return RootAnchor(pin_sha256=pin)


def _report(response: Any, files: Any, renewed: bool, root_file: Path | None = None) -> None:
    what = "renewed" if renewed else "enrolled"
    print(f"{what} {response.device_id}: certificate {response.serial[:16]}… valid until "
          f"{_utc(response.not_after)} (renew after {_utc(response.renew_after)})")
    print(f"  key          {files.key}  (made on this device, never sent)")
    print(f"  certificate  {files.cert}")
    print(f"  CA           {files.ca}")
    if root_file is not None:
        print(f"  TUF root     {root_file}")


def cmd_enroll(args: argparse.Namespace) -> int:
    from agent.enroll import EnrollError

    try:
        return _run(args)
    except EnrollError as exc:
        print(f"nanofleet-agent enroll: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _run(args: argparse.Namespace) -> int:
    from agent.enroll import EnrollError, enroll, give_to, prepare_dir, renew
    from agent.enroll_config import merge_into_file, read_raw, render_snippet

    owner = parse_owner(args.owner) if args.owner else None
    device_id, directory = resolve(args)
    if not args.renew:
        token = read_token(args)
        if not args.server or not token:
            raise EnrollError("enrolling needs --server URL and a token: --token-file FILE, "
                              f"${TOKEN_ENV} or --token (from `nanofleet enroll-token create` "
                              "on the operator's side)", 2)
        anchor = root_anchor(args, read_raw(args.config) if args.config else {})
    files = prepare_dir(directory, owner)
    try:
        if args.renew:
            response = renew(files, server=args.server, force=args.force, timeout=args.timeout,
                             ca_file=args.ca_file, insecure_lab=args.insecure_lab)
            if response is None:
                print(f"certificate in {files.cert} is not due for renewal yet (--force "
                      "renews anyway)")
                return 0
            if owner:
                give_to(files, owner)
            _report(response, files, renewed=True)
            print("new key and certificate; the previous certificate is revoked: restart the "
                  "agent to use them (systemctl restart nanofleet-agent)")
            return 0
        assert device_id is not None and token is not None
        response = enroll(args.server, token, device_id, files, anchor=anchor,
                          new_key=args.new_key, timeout=args.timeout, ca_file=args.ca_file,
                          insecure_lab=args.insecure_lab)
        if owner:
            give_to(files, owner)
        root_file = None
        if response.tuf_root is not None:
            root_file = anchor.provisioned_from or files.root
        _report(response, files, renewed=False, root_file=root_file)
        if args.config:
            for note in merge_into_file(args.config, response, files, args.server, root_file):
                print(f"  config: {note}")
            print(f"updated {args.config}; (re)start the agent to connect with the certificate")
        else:
            print(render_snippet(response, files, args.server, root_file), end="")
        return 0
    finally:
        files.close()


def add_enroll_command(sub: Any) -> None:
    p = sub.add_parser("enroll", help="get this device's client certificate from the fleet "
                       "server (key made here, never sent)")
    p.add_argument("--server", help="fleet server URL, e.g. https://fleet.example.com")
    p.add_argument("--token", help="enrollment token (nanofleet enroll-token create); "
                   "visible to every user in ps: prefer --token-file or $" + TOKEN_ENV)
    p.add_argument("--token-file", type=Path, metavar="FILE",
                   help="read the enrollment token from FILE (- for stdin)")
    p.add_argument("--root", type=Path, metavar="ROOT.json",
                   help="the provisioned TUF root (default: the config's [ota] root_file, "
                   "else /etc/nanofleet/root.json, if they exist)")
    p.add_argument("--root-sha256", metavar="HEX",
                   help="SHA-256 of the TUF root.json from the key ceremony: the server's "
                   "root must match it (when no root is provisioned)")
    p.add_argument("--insecure-lab", action="store_true",
                   help="allow a plain http:// server (lab networks only: anyone on the path "
                   "could impersonate the server)")
    p.add_argument("--device-id", help="this device's id (default: the config's device_id, "
                   "else the host name)")
    p.add_argument("--config", type=Path, help="agent config to read and update")
    p.add_argument("--dir", type=Path, help="where key and certificates go (default: "
                   "<state_dir>/identity, else /var/lib/nanofleet/identity)")
    p.add_argument("--new-key", action="store_true", help="make a new key even if one exists")
    p.add_argument("--renew", action="store_true", help="renew the certificate (a new key, "
                   "proven by the current one; no token) when 2/3 of its validity has passed")
    p.add_argument("--force", action="store_true", help="with --renew: renew now")
    p.add_argument("--owner", metavar="USER[:GROUP]", help="give the identity files to "
                   "this user (running as root for an agent that runs as another user)")
    p.add_argument("--ca-file", type=Path, help="CA bundle for an https:// server")
    p.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout (s)")
    p.set_defaults(func=cmd_enroll)

