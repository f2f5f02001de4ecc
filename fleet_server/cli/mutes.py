"""``nanofleet mutes list|delete|resend``: the active alert mutes, lifting one, and sending
the devices' lists again.

A mute is made from an alert (``nanofleet alerts mute ID``): its device (or every device)
stops sending alerts of that line's message shape (of a line the server kept cut: of
lines whose shape starts like its) until the mute expires or is lifted here. All through
the operator API (``fleet_server.client``).
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from contract.display import printable
from contract.mutes import MUTE_ID_PATTERN
from fleet_server.cli.alerts import columns_then_tail, cut, text_width, when
from fleet_server.cli.fleet import _client, add_client_options

EXIT_OK = 0
REASON_WIDTH = 30  # in a table cut to the terminal; the shape gets the rest
MIN_SHAPE_WIDTH = 20


def render_mutes(mutes: list[dict[str, Any]], width: int | None) -> list[str]:
    """One row per mute, the shape last (cut to ``width`` when given, like the reason);
    a device chooses its lines and an operator the reasons: both are made printable.
    MATCH says what the shape mutes: lines of that ``whole`` shape, or (a line the server
    kept cut) lines whose shape starts with it (``start``)."""
    rows = [("ID", "EXPIRES", "DEVICE", "SOURCE", "BY", "REASON", "MATCH")]
    for m in mutes:
        reason = printable(m["reason"]) or "-"
        rows.append((m["id"], when(m["expires_at"]),
                     printable(m["device_id"]) if m["device_id"] else "(every)",
                     printable(m["source"]) if m["source"] else "(any)",
                     printable(m["created_by"]),
                     reason if width is None else cut(reason, REASON_WIDTH),
                     "start" if m["prefix"] else "whole"))
    return columns_then_tail(rows, ["SHAPE"] + [printable(m["shape"]) for m in mutes], width,
                             MIN_SHAPE_WIDTH)


def cmd_mutes_list(args: argparse.Namespace) -> int:
    params = {"device": args.device} if args.device else {}
    result = _client(args).get("/api/v1/mutes", params)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    elif not result["mutes"]:
        print(f"(no active mutes apply to {args.device})" if args.device
              else "(no active mutes)")
    else:
        print("\n".join(render_mutes(result["mutes"], text_width())))
    return EXIT_OK


def mute_id(text: str) -> str:
    """A mute id, or an argparse error: the id goes into the URL's path, where a pasted
    ``../tokens/x`` must not reach another route."""
    if not re.fullmatch(MUTE_ID_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a mute id (12 to 32 hex digits, "
                                         "as nanofleet mutes list shows them)")
    return text


def cmd_mutes_delete(args: argparse.Namespace) -> int:
    _client(args).send("DELETE", f"/api/v1/mutes/{args.mute_id}")  # 204: nothing to print
    print(json.dumps({"lifted": args.mute_id}) if args.json else f"lifted mute {args.mute_id}")
    return EXIT_OK


def cmd_mutes_resend(args: argparse.Namespace) -> int:
    params = {"reset": "true" if args.reset else "false"}
    if args.device:
        params["device"] = args.device
    result = _client(args).request("POST", "/api/v1/mute-lists/resend", params=params)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    elif not result["lists"] and not result["reset"]:
        print("no mute was ever made here: nothing to send (--reset sends empty lists that "
              "replace any a device holds)")
    else:
        print(f"sent {result['lists']} mute lists{' marked reset' if result['reset'] else ''}"
              f", {result['acknowledged']} acknowledged by the broker")
    return EXIT_OK


def add_mute_commands(sub: Any) -> None:
    mu = sub.add_parser("mutes", help="active alert mutes (nanofleet alerts mute makes them)")
    msub = mu.add_subparsers(dest="mutes_command", metavar="{list,delete,resend}",
                             required=True)
    lst = msub.add_parser("list", help="the active mutes, newest first")
    lst.add_argument("--device", help="only those that apply to this device (its own and "
                     "the every-device ones)")
    add_client_options(lst)
    lst.set_defaults(func=cmd_mutes_list)
    delete = msub.add_parser("delete", help="lift a mute: its devices send those alerts "
                             "again (deploy scope)")
    delete.add_argument("mute_id", type=mute_id, metavar="MUTE_ID",
                        help="the mute's id (mutes list)")
    add_client_options(delete)
    delete.set_defaults(func=cmd_mutes_delete)
    resend = msub.add_parser(
        "resend", help="send the devices' mute lists again (admin scope)",
        description="Sends the server's mute lists again. With --reset each device applies "
        "its list whatever revision it holds: the way back after a device took a list "
        "numbered beyond the server's (a stolen server identity's), which it otherwise keeps "
        "(its log says 'mute list revision ... ignored' and it counts mute_lists_stale). "
        "Rotate the server's MQTT identity first.")
    resend.add_argument("--device", help="only this device's list (default: every device)")
    resend.add_argument("--reset", action="store_true",
                        help="mark the lists reset: applied whatever revision a device holds")
    add_client_options(resend)
    resend.set_defaults(func=cmd_mutes_resend)
