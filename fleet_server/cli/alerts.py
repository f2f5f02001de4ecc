"""``nanofleet alerts list|shapes|verdict|export|mute``: devices' alerts and what operators
do about them.

An operator lists the alerts the server keeps (``shapes``: grouped by message, the most
alerting first, which says what to judge and mute first), says which were false alarms
and which were right (``verdict``), exports the judged lines as the JSONL ``nanofleet model
train`` and ``nanofleet model eval --alerts`` read (docs/fleet-server.md, "Alerts and
verdicts"), and mutes an alert's message on its device or every device for some days
(``mute``; ``nanofleet mutes`` lists and lifts mutes). All through the operator API
(``fleet_server.client``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from contract.display import printable
from contract.files import write_atomic
from fleet_server.cli.fleet import _client, add_client_options
from fleet_server.client import ApiCallError
from fleet_server.rollouts.spec import parse_duration
from fleet_server.verdicts import LEFT_OUT_HEADER

EXIT_OK = 0
# The CLI spells the verdict as a word on the command line, the API as an identifier.
VERDICT_WORDS = {"false-alarm": "false_alarm", "right": "right"}
MIN_TEXT_WIDTH = 20
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def verdict_text(alert: dict[str, Any]) -> str:
    """``-``, ``false alarm``, ``right``, or ``right: storage`` when the operator named
    another category than the model did."""
    v = alert["verdict"]
    if v is None:
        return "-"
    if v["verdict"] == "false_alarm":
        return "false alarm"
    return "right" if v["label"] == alert["label"] else f"right: {printable(v['label'])}"


def text_width() -> int | None:
    """Columns the table may use: $COLUMNS, else the terminal's; None when stdout is not a
    terminal (piped into grep or a file, a line cut short would only lose text)."""
    return shutil.get_terminal_size(fallback=(0, 0)).columns or None


def columns_then_tail(rows: Sequence[tuple[str, ...]], tails: list[str], width: int | None,
                      min_tail: int = MIN_TEXT_WIDTH) -> list[str]:
    """Aligned columns (``rows``, header first) and, last, a free text (``tails``, its
    header first) cut to what ``width`` leaves of the line, at least ``min_tail``; not cut
    when ``width`` is None (not a terminal)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lead = sum(widths) + 2 * len(widths)
    out = []
    for r, tail in zip(rows, tails, strict=True):
        if width is not None:
            tail = cut(tail, max(min_tail, width - lead))
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + "  " + tail)
    return out


def render_table(alerts: list[dict[str, Any]], width: int | None) -> list[str]:
    rows = [("ID", "RECEIVED", "DEVICE", "LABEL", "SCORE", "VERDICT", "SOURCE")]
    rows += [(str(a["id"]), time.strftime(TIME_FORMAT, time.localtime(a["received_at"])),
              printable(a["device_id"]), printable(a["label"]), f"{a['score']:.2f}",
              verdict_text(a), printable(a["source"])) for a in alerts]
    return columns_then_tail(rows, ["TEXT"] + [printable(a["text"]) for a in alerts], width)


def cmd_alerts_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.device:
        params["device"] = args.device
    result = _client(args).get("/api/v1/alerts", params)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    if not result["alerts"]:
        print(f"(no alerts from {args.device} on the server)" if args.device
              else "(no alerts on the server)")
        return EXIT_OK
    print("\n".join(render_table(result["alerts"], text_width())))
    return EXIT_OK


def verdict_line(alert: dict[str, Any]) -> str:
    """``alert 412 (gw-03): false alarm, kept as normal``."""
    v = alert["verdict"]
    head = f"alert {alert['id']} ({printable(alert['device_id'])}): "
    if v["verdict"] == "false_alarm":
        return head + f"false alarm, kept as {printable(v['label'])}"
    line = head + f"right, kept as {printable(v['label'])}"
    if v["label"] != alert["label"]:
        line += f" (the model said {printable(alert['label'])})"
    return line


def cmd_alerts_verdict(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"verdict": VERDICT_WORDS[args.verdict]}
    if args.label is not None:
        body["label"] = args.label
    # The server decides what contradicts itself (a false alarm labelled security): one
    # rule, the same for the console, the API and this command.
    alert = _client(args).post_json(f"/api/v1/alerts/{args.alert_id}/verdict", body)
    print(json.dumps(alert, sort_keys=True) if args.json else verdict_line(alert))
    return EXIT_OK


def count_labels(body: bytes) -> Counter[str]:
    """Lines per label; refuses a body that is not the JSONL export (a proxy's HTML page)
    before anything is written. Lines end at "\n" only, as JSONL's do: str.splitlines()
    also splits at U+2028, U+2029 and U+0085, which JSON may hold raw in a string, and
    one such line from a device failed the whole fleet's export (review, December 2026)."""
    counts: Counter[str] = Counter()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiCallError(f"the server's answer is not the labelled lines' JSONL ({exc})") \
            from None
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            counts[str(json.loads(line)["label"])] += 1
        except (ValueError, TypeError, KeyError) as exc:
            raise ApiCallError(f"the server's answer is not the labelled lines' JSONL (line "
                               f"{number}: {exc!r})") from None
    return counts


def output_mode() -> int:
    """What ``> FILE`` would give: 0666 less the umask (write_atomic sets the mode it is
    given, and the umask can only be read by setting it)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return 0o666 & ~mask


def cmd_alerts_export(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"with_source": "true" if args.with_source else "false"}
    if args.device:
        params["device"] = args.device
    if args.since:
        # The API takes a unix time; --since is how long ago, like `nanofleet audit`.
        params["since"] = time.time() - parse_duration(args.since)
    response = _client(args).send("GET", "/api/v1/labelled-lines", params=params)
    body = response.content
    counts = count_labels(body)
    to_stdout = args.out == "-"
    if to_stdout:
        # As text, through main()'s printable() like every output: the export is
        # printable ASCII (JSON escapes, verdicts.labelled_lines), which passes unchanged.
        sys.stdout.write(body.decode("utf-8"))
        sys.stdout.flush()
    else:
        try:
            # Atomic: a training run reading the file sees the old export or the new one.
            write_atomic(Path(args.out), body, output_mode())
        except OSError as exc:
            raise ValueError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    lines = sum(counts.values())
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    # With --out -, stdout is the JSONL; the summary goes beside it, to stderr.
    report = sys.stderr if to_stdout else sys.stdout
    if args.json:
        print(json.dumps({"out": args.out, "lines": lines, "labels": dict(ordered)},
                         sort_keys=True), file=report)
        return EXIT_OK
    where = "stdout" if to_stdout else args.out
    summary = ", ".join(f"{printable(label)} {n}" for label, n in ordered)
    print(f"wrote {lines} line{'' if lines == 1 else 's'} to {where}"
          + (f": {summary}" if summary else " (no verdicts match)"), file=report)
    left_out = response.headers.get(LEFT_OUT_HEADER, "0")
    if left_out not in ("", "0"):
        print(f"warning: the server left out {left_out} verdict(s) whose label is not a label "
              "(given before it checked; its log names the alerts): judge them again with "
              "--label", file=sys.stderr)
    return EXIT_OK


def when(ts: float) -> str:
    return time.strftime(TIME_FORMAT, time.localtime(ts))


MUTE_OUTCOMES = {"created": "muted", "extended": "mute extended", "unchanged": "already muted"}


def mute_lines(mute: dict[str, Any]) -> list[str]:
    """``muted: <shape>`` (``<shape>…`` for the start of one) and where, from what and
    until when."""
    where = printable(mute["device_id"]) if mute["device_id"] else "every device"
    source = printable(mute["source"]) if mute["source"] else "any"
    lines = [f"{MUTE_OUTCOMES[mute['outcome']]}: {printable(mute['shape'])}"
             + ("…" if mute["prefix"] else ""),
             f"  mute {mute['id']} on {where}, source {source}, until "
             f"{when(mute['expires_at'])}"]
    if mute["prefix"]:
        lines.append("  the server kept the line cut: lines whose shape starts with this "
                     "are muted")
    if mute["reason"]:
        lines.append(f"  reason: {printable(mute['reason'])}")
    return lines


def cmd_alerts_mute(args: argparse.Namespace) -> int:
    body = {"days": args.days, "all_devices": args.all_devices,
            "any_source": args.any_source, "reason": args.reason}
    # The server checks the days and the reason: one rule for the API and this command.
    mute = _client(args).post_json(f"/api/v1/alerts/{args.alert_id}/mute", body)
    print(json.dumps(mute, sort_keys=True) if args.json else "\n".join(mute_lines(mute)))
    if not mute["published"]:
        print("warning: the broker has not acknowledged the devices' mute lists yet (is it "
              "reachable?); the server sends them again when it reconnects", file=sys.stderr)
    return EXIT_OK


def labels_text(labels: dict[str, int]) -> str:
    """``security 400, auth 12``: the labels, the most frequent first."""
    ordered = sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{printable(label)} {n}" for label, n in ordered)


def judged_text(group: dict[str, Any]) -> str:
    """``-``, ``false alarm 2``, ``right 1`` or both: the verdicts on the group's alerts."""
    parts = [f"{word} {group[key]}" for word, key in (("false alarm", "false_alarms"),
                                                       ("right", "right")) if group[key]]
    return ", ".join(parts) or "-"


def muted_text(group: dict[str, Any]) -> str:
    """``yes``; ``no``; ``2/5``: on 2 of its 5 devices; ``can't``: no mute can name it."""
    if not group["mutable"]:
        return "can't"
    if group["muted"]:
        return "yes"
    return f"{group['muted_devices']}/{group['devices']}" if group["muted_devices"] else "no"


def render_shapes(groups: list[dict[str, Any]], width: int | None) -> list[str]:
    """One row per shape, the most alerting first; the shape last, cut to ``width`` when
    given (a cut line's shape, the start of one, ends in ``…``)."""
    rows = [("COUNT", "LABELS", "SOURCE", "DEVICES", "JUDGED", "MUTED", "ALERT")]
    rows += [(str(g["count"]), labels_text(g["labels"]), printable(g["source"]),
              printable(g["device_ids"][0]) if g["devices"] == 1 else str(g["devices"]),
              judged_text(g), muted_text(g), str(g["alert_id"])) for g in groups]
    shapes = ["SHAPE"] + [(printable(g["shape"]) or "(blank line)")
                          + ("…" if g["prefix"] else "") for g in groups]
    return columns_then_tail(rows, shapes, width)


def cmd_alerts_shapes(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit, "unjudged": "true" if args.unjudged
                              else "false"}
    if args.device:
        params["device"] = args.device
    if args.since:
        params["since"] = time.time() - parse_duration(args.since)  # as alerts export
    result = _client(args).get("/api/v1/alert-shapes", params)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    if not result["shapes"]:
        where = f" from {args.device}" if args.device else ""
        print(f"(every shape of the alerts{where} is judged or muted)" if args.unjudged
              and result["total_shapes"] else f"(no alerts{where} on the server)")
    else:
        print("\n".join(render_shapes(result["shapes"], text_width())))
    if not result["complete"]:
        print(f"note: ranked the newest {result['alerts_read']} alerts only (narrow with "
              "--device or --since for the rest)", file=sys.stderr)
    return EXIT_OK


SHAPES_HELP = """\
The alerts the server keeps, grouped by message shape (the line with numbers, addresses,
ids and dates taken out, as a mute names it) and source, the most alerting first. COUNT
is alerts plus the repeats the agent held back; JUDGED the verdicts on them; MUTED
whether an active mute covers the shape (N/M: on N of its M devices; can't: no mute can
name it); ALERT the newest alert's id. A device's false alarms are a few messages
repeated: judge the top rows (nanofleet alerts verdict ALERT false-alarm|right) and mute
the false alarms (nanofleet alerts mute ALERT); --unjudged shows what is left to do."""


def add_alert_commands(sub: Any) -> None:
    al = sub.add_parser("alerts", help="devices' alerts, operators' verdicts, labelled "
                        "lines, mutes")
    asub = al.add_subparsers(dest="alerts_command", metavar="{list,shapes,verdict,export,mute}",
                             required=True)
    lst = asub.add_parser("list", help="the alerts the server keeps, newest first")
    lst.add_argument("--device", help="only this device's")
    lst.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    add_client_options(lst)
    lst.set_defaults(func=cmd_alerts_list)

    shp = asub.add_parser("shapes", help="which messages alert most, with their verdicts and "
                          "mutes: judge and mute the top rows", description=SHAPES_HELP,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    shp.add_argument("--device", help="only this device's alerts (else the fleet's)")
    shp.add_argument("--since", metavar="DURATION",
                     help="only alerts that arrived in the last DURATION, e.g. 7d")
    shp.add_argument("--limit", type=int, default=20, help="at most this many shapes "
                     "(1 to 200, default 20)")
    shp.add_argument("--unjudged", action="store_true", help="leave out the shapes already "
                     "judged (any verdict) or muted (on any device)")
    add_client_options(shp)
    shp.set_defaults(func=cmd_alerts_shapes)

    ver = asub.add_parser("verdict", help="say whether an alert was right (deploy scope)")
    ver.add_argument("alert_id", type=int, metavar="ID", help="the alert's id (alerts list)")
    ver.add_argument("verdict", choices=list(VERDICT_WORDS),
                     help="false-alarm: the line was healthy (kept as normal); right: it "
                     "needed attention (kept with the alert's label, or --label)")
    ver.add_argument("--label", help="for a right alert: the line's true category when the "
                     "model named the wrong one (e.g. storage)")
    add_client_options(ver)
    ver.set_defaults(func=cmd_alerts_verdict)

    exp = asub.add_parser("export", help="the judged lines as JSONL for model train / eval "
                          "--alerts, oldest first")
    exp.add_argument("--out", required=True, metavar="FILE",
                     help="file to write (replaced atomically); - for stdout")
    exp.add_argument("--device", help="only this device's lines")
    exp.add_argument("--since", metavar="DURATION",
                     help="only verdicts given in the last DURATION, e.g. 7d")
    exp.add_argument("--with-source", action="store_true", help="add each line's source "
                     "(what model eval --alerts reads)")
    add_client_options(exp)
    exp.set_defaults(func=cmd_alerts_export)

    mute = asub.add_parser("mute", help="stop the alert's device (or every device) sending "
                           "alerts of its message for some days (deploy scope)")
    mute.add_argument("alert_id", type=int, metavar="ID", help="the alert's id (alerts list)")
    mute.add_argument("--days", type=int, default=7, help="how long (1 to 90, default 7); "
                      "muting again extends it")
    mute.add_argument("--all-devices", action="store_true",
                      help="on every device (those that join later too), not only the "
                      "alert's; needs a token with admin as well as deploy")
    mute.add_argument("--any-source", action="store_true",
                      help="lines of any source, not only the alert's")
    mute.add_argument("--reason", default="", help="why (shown with the mute; at most 200 "
                      "characters)")
    add_client_options(mute)
    mute.set_defaults(func=cmd_alerts_mute)
