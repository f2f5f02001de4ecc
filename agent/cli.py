"""``nanofleet-agent``: run the daemon, check a config, query a running daemon."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config import ConfigError, load_config
from agent.enroll_cli import add_enroll_command
from agent.memory import limit_malloc_arenas

DEFAULT_CONFIG = Path("/etc/nanofleet/agent.toml")


def _cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config_file)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(f"{args.config_file}: OK (device {cfg.device_id}, {len(cfg.sources)} sources)")
    return 0


def _root_in_foreign_state_dir(state_dir: Path) -> str | None:
    """The daemon writes its state directory by path (spool, checkpoints, models): run as
    root in a directory another user owns, that user could plant links and have root
    write or chown any file. Refuse; the agent runs as the directory's owner."""
    if os.geteuid() != 0:
        return None
    try:
        owner = state_dir.lstat().st_uid
    except OSError:
        return None
    if owner == 0:
        return None
    return (f"nanofleet-agent run: refusing to run as root with state_dir {state_dir} owned "
            f"by uid {owner}: root would write there by path. Run it as that user "
            f"(systemctl start nanofleet-agent, or runuser -u nanofleet -- nanofleet-agent run)")


def _cmd_run(args: argparse.Namespace) -> int:
    from agent.logsetup import setup_logging

    limit_malloc_arenas()
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    refusal = _root_in_foreign_state_dir(cfg.state_dir)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    setup_logging(args.log_level or cfg.log_level, fields={"device_id": cfg.device_id})
    from agent.daemon import Agent

    return Agent(cfg, args.config).run()


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _cmd_query(args: argparse.Namespace) -> int:
    from agent.control import DaemonNotRunning, QueryFailed, ask

    socket_path = args.socket
    if socket_path is None:
        try:
            # Technicians (group nanofleet) query: they need the socket, not the secrets.
            socket_path = load_config(args.config, secrets=False).control_socket
        except ConfigError as exc:
            print(f"cannot find the agent's socket: {exc}", file=sys.stderr)
            return 2
    qargs: dict[str, Any] = {}
    texts: list[str] = []
    for item in args.args:
        if "=" not in item:
            if args.cmd == "classify":
                texts.append(item)
                continue
            print(f"argument {item!r}: use key=value (e.g. limit=10)", file=sys.stderr)
            return 2
        key, _, value = item.partition("=")
        if key == "text":  # text=... and bare lines make one list, in their order
            texts.append(value)
        else:
            qargs[key] = _parse_value(value)
    if texts:
        qargs["text"] = texts[0] if len(texts) == 1 else texts
    if args.explain:
        if args.cmd != "classify":
            print("--explain only applies to classify", file=sys.stderr)
            return 2
        qargs["explain"] = True
    try:
        resp = ask(socket_path, args.cmd, qargs)
    except DaemonNotRunning as exc:
        print(f"nanofleet-agent: {exc}", file=sys.stderr)
        return 3
    except QueryFailed as exc:
        print(f"nanofleet-agent: {exc}", file=sys.stderr)
        return 4
    if args.json:
        print(json.dumps(resp, indent=2))
    elif not resp.get("ok"):
        print(f"error: {resp.get('error')}", file=sys.stderr)
    else:
        from agent.tables import render

        print(render(args.cmd, resp.get("result")))
    return 0 if resp.get("ok") else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nanofleet-agent", description=__doc__)
    p.add_argument("--version", action="version", version=f"nanofleet-agent {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config file (TOML)")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.set_defaults(func=_cmd_run)

    chk = sub.add_parser("check-config", help="validate a config file")
    chk.add_argument("config_file", type=Path)
    chk.set_defaults(func=_cmd_check_config)

    q = sub.add_parser("query", help="ask the running daemon (status, models, sources, "
                       "metrics, recent_alerts, mutes, classify, help)")
    q.add_argument("cmd", help="command")
    q.add_argument("args", nargs="*", help="key=value arguments; classify takes the text")
    q.add_argument("--json", action="store_true", help="print the raw JSON response")
    q.add_argument("--explain", action="store_true",
                   help="classify: also name the words that drove each decision")
    q.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="config file, to find the socket")
    q.add_argument("--socket", type=Path, help="control socket path (overrides --config)")
    q.set_defaults(func=_cmd_query)
    add_enroll_command(sub)

    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # `query classify --explain "line"`: argparse stops filling the positional list at the
    # option, so words after it come back as extras; they belong to the query.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "query" or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.args = [*args.args, *extra]
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
