"""``nanofleet devices quarantine|release|quarantined``: a device denied every topic at the
broker for a while (fleet_server.identity.quarantine). The server quarantines a device
that floods it by itself; these commands let an operator do it, end it early, and see who
is quarantined and why. They call the operator API (``admin`` to change, ``read`` to list).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from fleet_server.cli.fleet import _client, add_client_options
from fleet_server.cli.identity import extend_metavar, subcommands_of
from fleet_server.identity.tokens import parse_duration

EXIT_OK = 0


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def describe(q: dict[str, Any]) -> str:
    """One line: who, until when, by whom, why."""
    return (f"{q['device_id']} quarantined until {_utc(q['until'])} (since "
            f"{_utc(q['since'])}, by {q['created_by']}): {q['reason']}")


def _print_change(args: argparse.Namespace, result: dict[str, Any], what: str) -> int:
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    print(what)
    print(f"next: {result['next_step']}")
    return EXIT_OK


def cmd_quarantine(args: argparse.Namespace) -> int:
    result = _client(args).post_json(f"/api/v1/devices/{args.device_id}/quarantine",
                                     {"for_s": args.duration, "reason": args.reason})
    return _print_change(args, result, describe(result))


def cmd_release(args: argparse.Namespace) -> int:
    result = _client(args).request("DELETE", f"/api/v1/devices/{args.device_id}/quarantine")
    return _print_change(args, result, f"{result['device_id']} released (it was quarantined "
                         f"since {_utc(result['since'])} by {result['created_by']})")


def cmd_quarantined(args: argparse.Namespace) -> int:
    result = _client(args).get("/api/v1/quarantines")
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    if not result["quarantines"]:
        print("no device is quarantined")
    for q in result["quarantines"]:
        print(describe(q))
    return EXIT_OK


def add_quarantine_commands(sub: Any) -> None:
    """Add quarantine, release and quarantined to ``sub``'s ``devices``."""
    devices = subcommands_of(sub.choices["devices"])
    q = devices.add_parser("quarantine", help="deny a device every topic at the broker for a "
                           "while (the server does it to a device that floods it)")
    q.add_argument("device_id")
    q.add_argument("--for", dest="duration", type=_duration, default=3600.0, metavar="DURATION",
                   help="how long: 30m, 6h, 7d (default 1h; 1m to 30d); it ends by itself")
    q.add_argument("--reason", help="why (kept with the quarantine, audit log)")
    add_client_options(q)
    q.set_defaults(func=cmd_quarantine)
    release = devices.add_parser("release", help="end a device's quarantine now")
    release.add_argument("device_id")
    add_client_options(release)
    release.set_defaults(func=cmd_release)
    listing = devices.add_parser("quarantined", help="devices quarantined now, and why")
    add_client_options(listing)
    listing.set_defaults(func=cmd_quarantined)
    extend_metavar(devices, "quarantine", "release", "quarantined")
