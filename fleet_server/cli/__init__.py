"""``nanofleet``: the fleet operator's command line.

::

    nanofleet server init|run|migrate|token   the fleet server itself
    nanofleet keys init|rotate           key ceremonies (offline root, operator targets key)
    nanofleet repo init                  create the signed repository
    nanofleet model train|eval|inspect   the nano model (nanomodel.cli)
    nanofleet model publish|list         sign + publish a bundle; list releases
    nanofleet deploy MODEL VERSION --devices ...
    nanofleet devices list|show ID
    nanofleet alerts list|verdict|export|mute   devices' alerts, verdicts, labelled lines, mutes
    nanofleet mutes list|delete          active alert mutes; lift one

Exit codes: 0 done, 1 refused or failed (the message says why), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from fleet_server import logformat
from fleet_server.auth import parse_scopes
from fleet_server.cli.alerts import add_alert_commands
from fleet_server.cli.fleet import add_client_options, add_fleet_commands, add_publish_commands
from fleet_server.cli.identity import add_identity_commands
from fleet_server.cli.keys import add_key_commands
from fleet_server.cli.mutes import add_mute_commands
from fleet_server.cli.output import printable_output
from fleet_server.cli.quarantine import add_quarantine_commands
from fleet_server.cli.rollout import add_rollout_commands, cmd_token_admin
from fleet_server.client import ApiCallError, ApiClient
from fleet_server.config import (
    ServerConfigError,
    hash_token,
    load_config,
    new_operator_token,
    render_config,
)
from fleet_server.repository.keys import KeyFileError
from fleet_server.repository.metadata_store import RepositoryError
from fleet_server.repository.operator import TargetsUpdateError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def cmd_server_init(args: argparse.Namespace) -> int:
    if args.config.exists():
        raise ValueError(f"{args.config} already exists; refusing to overwrite it")
    token = new_operator_token()
    text = render_config(args.data_dir.resolve(), token_name=args.token_name,
                         token_sha256=hash_token(token), bind_host=args.bind_host,
                         bind_port=args.bind_port, public_url=args.public_url,
                         mqtt_host=args.mqtt_host, mqtt_port=args.mqtt_port)
    args.config.parent.mkdir(parents=True, exist_ok=True)
    # 0600 whatever the umask: the file holds operator token hashes and the random
    # $share group names that keep devices out of the server's shared subscriptions.
    # O_EXCL: never through a file or link someone put there since the check above.
    fd = os.open(args.config, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(text)
    args.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"wrote {args.config} (0600); data in {args.data_dir}")
    print(f"operator token for {args.token_name!r} (shown once; only its hash is stored):")
    print(f"  export NANOFLEET_TOKEN={token}")
    print("(or keep it in a file only you can read: --token-file FILE, NANOFLEET_TOKEN_FILE; "
          "never --token TOKEN, which every user sees in ps)")
    print(f"next: nanofleet keys init --dir KEYS, then nanofleet repo init --config "
          f"{args.config} --keys KEYS")
    return EXIT_OK


def cmd_server_token(args: argparse.Namespace) -> int:
    """Create (API, or a config entry with --config-entry), --list or --revoke tokens."""
    if args.list or args.revoke:
        return cmd_token_admin(args)
    if not args.name:
        raise ValueError("--name is required (who will use the token)")
    scopes = parse_scopes(args.scopes)
    if args.config_entry:
        token = new_operator_token()
        print(f"token (shown once): {token}")
        print("add to the server config and restart the server:")
        print(f'[[operator_tokens]]\nname = "{args.name}"\nsha256 = "{hash_token(token)}"\n'
              f"scopes = {json.dumps(scopes)}")
        return EXIT_OK
    result = ApiClient(args.server, args.token).post_json(
        "/api/v1/tokens", {"name": args.name, "scopes": scopes})
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    print(f"token {result['name']!r} with scope(s) {','.join(result['scopes'])} (shown once; "
          "only its hash is stored):")
    print(f"  export NANOFLEET_TOKEN={result['token']}")
    return EXIT_OK


def cmd_server_run(args: argparse.Namespace) -> int:
    import uvicorn

    from fleet_server.app import create_app
    from fleet_server.service import FleetService

    config = load_config(args.config)
    updates: dict[str, Any] = {}
    if args.host:
        updates["bind_host"] = args.host
    if args.port is not None:
        updates["bind_port"] = args.port
    config = config.model_copy(update=updates)
    logformat.install(config.log_level)
    if not config.operator_tokens:
        logging.getLogger("nanofleet.server").warning(
            "no operator_tokens in the config: every /api/v1 call will be refused "
            "(nanofleet server token)")
    service = FleetService(config)
    # log_config=None: uvicorn's records go to the root logger's escaping formatter too.
    server = uvicorn.Server(uvicorn.Config(create_app(service), host=config.bind_host,
                                           port=config.bind_port, log_level=config.log_level,
                                           access_log=config.log_level == "debug",
                                           log_config=None))
    server.run()
    return EXIT_OK


def cmd_server_migrate(args: argparse.Namespace) -> int:
    """Upgrade the database schema to this version's (``server run`` does it too)."""
    from fleet_server import migrations
    from fleet_server.db import Database

    db = Database(load_config(args.config).db_url)
    try:
        if args.check:
            current = migrations.current_revision(db)
            migrations.check_known(db, current)
            head = migrations.head_revision()
            if current == head:
                print(f"schema at {head}: up to date")
                return EXIT_OK
            print(f"schema at {current or 'no revision (empty, or made before migrations)'}; "
                  f"`nanofleet server migrate` upgrades it to {head}")
            return EXIT_FAILED
        result = migrations.upgrade(db)
    finally:
        db.dispose()
    if result.adopted:
        print(f"database made before migrations: adopted as revision {migrations.BASELINE}")
    print(f"schema upgraded from {result.before or 'empty'} to {result.after}" if result.changed
          else f"schema at {result.after}: up to date")
    return EXIT_OK


def _add_server_commands(sub: Any) -> None:
    server = sub.add_parser("server", help="run and set up the fleet server")
    ssub = server.add_subparsers(dest="server_command", metavar="{init,run,migrate,token}",
                                 required=True)
    init = ssub.add_parser("init", help="write a server config with a new operator token")
    init.add_argument("--config", type=Path, required=True, help="config file to write")
    init.add_argument("--data-dir", type=Path, required=True, help="server data directory")
    init.add_argument("--bind-host", default="127.0.0.1")
    init.add_argument("--bind-port", type=int, default=8080)
    init.add_argument("--public-url", help="URL devices reach the server at (desired state)")
    init.add_argument("--mqtt-host", default="127.0.0.1")
    init.add_argument("--mqtt-port", type=int, default=1883)
    init.add_argument("--token-name", default="admin", help="name of the first operator token")
    init.set_defaults(func=cmd_server_init)
    run = ssub.add_parser("run", help="serve the API and the signed repository")
    run.add_argument("--config", type=Path, required=True, help="server config (TOML)")
    run.add_argument("--host", help="override bind_host")
    run.add_argument("--port", type=int, help="override bind_port")
    run.set_defaults(func=cmd_server_run)
    migrate = ssub.add_parser("migrate", help="upgrade the database schema to this version's "
                              "(server run does it too); --check only says whether it is due")
    migrate.add_argument("--config", type=Path, required=True, help="server config (TOML)")
    migrate.add_argument("--check", action="store_true",
                         help="change nothing; exit 1 when an upgrade is due")
    migrate.set_defaults(func=cmd_server_migrate)
    token = ssub.add_parser("token", help="make operator tokens with scopes (read, deploy, "
                            "admin); --list, --revoke")
    token.add_argument("--name", help="who will use it (the audit log names it)")
    token.add_argument("--scopes", default="read", help="comma-separated: read, deploy, "
                       "admin (default read)")
    token.add_argument("--config-entry", action="store_true", help="no server call: print a "
                       "[[operator_tokens]] entry for the config (restart to apply)")
    token.add_argument("--list", action="store_true", help="list the tokens (admin)")
    token.add_argument("--revoke", metavar="NAME", help="revoke an API token at once (admin)")
    add_client_options(token)
    token.set_defaults(func=cmd_server_token)


# Training lives in nanomodel, which imports the agent's inference path; the fleet
# server must import neither. `nanofleet model train|eval|inspect` therefore runs
# `python -m nanomodel.cli model ...` in a child process with the same interpreter.
_TRAINING_COMMANDS = {
    "train": "train or fine-tune a bundle on labeled lines",
    "eval": "evaluate a bundle on labeled lines",
    "inspect": "show a bundle's manifest",
}


def _run_training_command(command: str, rest: list[str]) -> int:
    argv = [sys.executable, "-m", "nanomodel.cli", "model", command, *rest]
    return subprocess.run(argv, check=False).returncode


def _add_model_command(sub: Any) -> Any:
    model = sub.add_parser("model", help="train, evaluate, inspect, publish and list models",
                           description="Train, evaluate and inspect nano model bundles "
                           "(nanomodel); sign, publish and list releases (fleet server).")
    model.set_defaults(func=lambda _args: (model.print_help(), EXIT_BAD_INPUT)[1])
    model_sub = model.add_subparsers(dest="model_command",
                                     metavar="{train,eval,inspect,publish,list}")
    for name, help_text in _TRAINING_COMMANDS.items():
        cmd = model_sub.add_parser(name, help=help_text, add_help=False,
                                   description=f"{help_text} (see: nanofleet model {name} -h)")
        cmd.add_argument("rest", nargs=argparse.REMAINDER)
        cmd.set_defaults(func=lambda a: _run_training_command(a.model_command, a.rest))
    return model_sub


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nanofleet", description="nanofleet fleet operator "
                                     "tools: server, keys, models, deployments, devices.")
    sub = parser.add_subparsers(dest="command", required=True, metavar=(
        "{server,keys,repo,model,deploy,devices,alerts,mutes,rollout,audit}"))
    _add_server_commands(sub)
    add_key_commands(sub)
    add_publish_commands(_add_model_command(sub))
    add_fleet_commands(sub)
    add_alert_commands(sub)
    add_mute_commands(sub)
    add_rollout_commands(sub)
    add_identity_commands(sub)
    add_quarantine_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) >= 2 and argv[0] == "model" and argv[1] in _TRAINING_COMMANDS:
        # Passed through whole: argparse would take the child's own -h/--options.
        return _run_training_command(argv[1], argv[2:])
    # Every command's output through printable() (fleet_server.cli.output): the error
    # messages below too, which quote the server's, which quote devices' (review,
    # December 2026).
    with printable_output():
        return _run(build_parser().parse_args(argv))


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except ApiCallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (ServerConfigError, KeyFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RepositoryError, TargetsUpdateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except FileNotFoundError as exc:
        print(f"error: {exc.filename}: no such file", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RuntimeError as exc:  # ServerSetupError and friends
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
