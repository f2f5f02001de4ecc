"""``nanofleet rollout create|status|list|pause|resume|abort`` and ``nanofleet audit``.

All through the operator API (``fleet_server.client``). ``rollout status --watch``
redraws a progress bar and the per-state counts until the rollout completes
(exit 0), halts or is aborted (exit 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from contract.display import printable
from fleet_server.cli.fleet import _client, _when, add_client_options
from fleet_server.cli.output import control
from fleet_server.rollouts.spec import (
    Strategy,
    parse_duration,
    parse_percent,
    parse_selector,
    parse_threshold,
    parse_waves,
)

EXIT_OK, EXIT_FAILED = 0, 1
BAR_WIDTH = 40
_FAILED = ("failed", "rolled_back")
_BUSY = ("notified", "downloading", "verifying", "staged", "smoke_testing", "trial",
         "retrying")


def strategy_from_args(args: argparse.Namespace) -> Strategy:
    fields: dict[str, Any] = {"canary": args.canary, "waves": parse_waves(args.waves),
                              "soak_s": parse_duration(args.soak),
                              "success_percent": parse_percent(args.success),
                              "max_failures": parse_threshold(args.max_failures)}
    if args.min_sample is not None:
        fields["min_sample"] = args.min_sample
    if args.device_timeout is not None:
        fields["device_timeout_s"] = parse_duration(args.device_timeout)
    if args.retries is not None:
        fields["max_retries"] = args.retries
    if args.retry_delay is not None:
        fields["retry_base_s"] = parse_duration(args.retry_delay)
    return Strategy.model_validate(fields)


def progress_bar(counts: dict[str, int], total: int, width: int = BAR_WIDTH) -> str:
    """``[####xx>>>.......]``: committed, failed, in progress, not started."""
    if total <= 0:
        return "[" + " " * width + "]"
    parts = [("#", counts.get("committed", 0)),
             ("x", sum(counts.get(s, 0) for s in _FAILED)),
             (">", sum(counts.get(s, 0) for s in _BUSY))]
    bar, used = "", 0
    for char, n in parts:
        cells = round(width * n / total)
        cells = min(cells, width - used)
        bar += char * cells
        used += cells
    return "[" + bar + "." * (width - used) + "]"


def render_status(r: dict[str, Any], *, devices: bool = False, log_lines: int = 8) -> str:
    counts, total = r["counts"], r["total"]
    done = r["finished"]
    pct = 100.0 * done / total if total else 100.0
    out = [f"rollout {r['id']}  {r['model']} v{r['version']} (slot {r['slot']})  "
           f"{r['status'].upper()}  created by {r['created_by']} {_when(r['created_at'])}",
           f"{progress_bar(counts, total)} {pct:3.0f} %  {done}/{total} finished  "
           f"(# committed  x failed  > in progress)",
           f"  {printable(r['note'])}"]
    # printable(): these quote devices' OTA reasons, and a line break in one would start a
    # line of its own (main() makes every other character printable; review, December 2026).
    if r.get("halt_detail"):
        out.append(f"  halt: {printable(r['halt_detail'])}")
    nonzero = [f"{state} {n}" for state, n in counts.items() if n]
    out.append("  states: " + (", ".join(nonzero) or "-")
               + (f"  ({r['waiting_offline']} offline, waiting)" if r["waiting_offline"]
                  else ""))
    for st in r["stages"]:
        mark = "▶" if st["index"] == r["stage"] and r["status"] in ("running", "paused") \
            else " "
        detail = ", ".join(f"{k} {v}" for k, v in st["counts"].items())
        out.append(f"  {mark} {st['name']:<10} {st['status']:<8} {st['devices']:>5} "
                   f"device(s)  {detail}")
    s = r["strategy"]
    limit = s["max_failures"]
    limit_text = f"{limit['value']:g}%" if limit["kind"] == "percent" else \
        f"{int(limit['value'])}"
    out.append(f"  strategy: canary {s['canary']}, waves {','.join(f'{w:g}' for w in s['waves'])}"
               f", soak {s['soak_s']:g}s, success {s['success_percent']:g}%, max failures "
               f"{limit_text}, retries {s['max_retries']}")
    if devices and r.get("devices"):
        out.append("  devices:")
        for d in r["devices"]:
            extra = " ".join(x for x in (printable(d["reason"] or ""),
                                         "" if d["online"] else "(offline)",
                                         f"attempt {d['attempts']}" if d["attempts"] > 1
                                         else "") if x)
            out.append(f"    {d['device_id']:<24} {d['stage_name']:<10} {d['state']:<13} "
                       f"{extra}".rstrip())
    if log_lines and r["log"]:
        out.append("  log:")
        out += [f"    {time.strftime('%H:%M:%S', time.localtime(e['at']))}  "
                f"{printable(e['text'])}" for e in r["log"][-log_lines:]]
    return "\n".join(out)


def cmd_rollout_create(args: argparse.Namespace) -> int:
    body = {"model": args.model, "version": args.version,
            "select": parse_selector(args.select).model_dump(mode="json", exclude_none=True),
            "strategy": strategy_from_args(args).model_dump(mode="json")}
    r = _client(args).post_json("/api/v1/rollouts", body)
    if args.json:
        print(json.dumps(r, sort_keys=True))
        return EXIT_OK
    print(f"created rollout {r['id']}: {r['model']} v{r['version']} to {r['total']} device(s)")
    for st in r["stages"]:
        print(f"  {st['name']:<10} {st['devices']:>5} device(s)")
    for note in r.get("log", [])[1:]:  # after "created by ...": what the server noticed
        print(f"note: {printable(note['text'])}")
    print(f"follow it: nanofleet rollout status {r['id']} --watch")
    return EXIT_OK


def cmd_rollout_status(args: argparse.Namespace) -> int:
    client = _client(args)
    params = {"devices": "true" if args.devices else "false", "log": args.log}
    path = f"/api/v1/rollouts/{args.rollout_id}"
    if not args.watch:
        r = client.get(path, params)
        print(json.dumps(r, sort_keys=True) if args.json else render_status(
            r, devices=args.devices, log_lines=args.log))
        return EXIT_OK
    tty = sys.stdout.isatty()
    last = ""
    while True:
        r = client.get(path, params)
        text = json.dumps(r, sort_keys=True) if args.json else render_status(
            r, devices=args.devices, log_lines=args.log)
        if text != last:
            if tty and not args.json:
                control("\x1b[H\x1b[J")  # home + clear: redraw in place
            print(text if tty or args.json else text + "\n", flush=True)
            last = text
        if r["status"] in ("completed", "halted", "aborted"):
            return EXIT_OK if r["status"] == "completed" else EXIT_FAILED
        time.sleep(args.interval)


def cmd_rollout_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.status:
        params["status"] = args.status
    result = _client(args).get("/api/v1/rollouts", params)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    if not result["rollouts"]:
        print("no rollouts yet (nanofleet rollout create MODEL VERSION --select ...)")
    for r in result["rollouts"]:
        print(f"{r['id']}  {r['status']:<9} {r['model']} v{r['version']:<4} "
              f"{progress_bar(r['counts'], r['total'], 20)} {r['finished']}/{r['total']}  "
              f"{r['stage_name'] or '-':<10} by {r['created_by']} {_when(r['created_at'])}")
    return EXIT_OK


def cmd_rollout_action(args: argparse.Namespace) -> int:
    result = _client(args).post_json(f"/api/v1/rollouts/{args.rollout_id}/{args.action}", {})
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    r = result["rollout"]
    print(f"rollout {r['id']}: {r['status']}")
    if args.action == "abort":
        sent = result["rollback_sent"]
        print(f"  rollback sent to {len(sent)} device(s)" + (f": {', '.join(sent[:10])}"
                                                           + (", …" if len(sent) > 10 else "")
                                                           if sent else ""))
    print(f"  {r['note']}")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    for key in ("actor", "action", "subject"):
        if getattr(args, key):
            params[key] = getattr(args, key)
    if args.since:
        params["since"] = time.time() - parse_duration(args.since)
    result = _client(args).get("/api/v1/audit", params)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    for e in result["entries"]:
        detail = json.dumps(e["detail"], sort_keys=True)
        detail = detail if len(detail) <= 100 else detail[:99] + "…"
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e['at']))}  "
              f"{e['actor']:<16} {e['action']:<16} {e['subject']:<24} {detail}")
    if not result["entries"]:
        print("(no audit entries match)")
    return EXIT_OK


def cmd_token_admin(args: argparse.Namespace) -> int:
    """``nanofleet server token --list`` / ``--revoke NAME``."""
    client = _client(args)
    if args.revoke:
        result = client.request("DELETE", f"/api/v1/tokens/{args.revoke}")
        if not args.json:
            print(f"revoked {args.revoke!r}")
    else:
        result = client.get("/api/v1/tokens")
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    for t in result["tokens"]:
        state = "revoked " + _when(t["revoked_at"]) if t["revoked_at"] else "active"
        made = f"by {t['created_by']} {_when(t['created_at'])}" if t["created_by"] else ""
        print(f"  {t['name']:<20} {','.join(t['scopes']):<18} {t['source']:<8} {state:<8} "
              f"{made}".rstrip())
    return EXIT_OK


def add_rollout_commands(sub: Any) -> None:
    ro = sub.add_parser("rollout", help="staged rollouts: canary, waves, automatic halt")
    rsub = ro.add_subparsers(dest="rollout_command", required=True,
                             metavar="{create,status,list,pause,resume,abort}")
    create = rsub.add_parser("create", help="start a staged rollout")
    create.add_argument("model", help="published model name")
    create.add_argument("version", type=int, help="published version")
    create.add_argument("--select", action="append", required=True,
                        metavar="group=G|tag=T|ids=a,b|all",
                        help="devices to update (repeat: all criteria must match)")
    create.add_argument("--canary", type=int, default=1, help="canary devices (default 1)")
    create.add_argument("--waves", default="100", help="cumulative percentages after the "
                        "canary, e.g. 10,50,100 (default 100)")
    create.add_argument("--soak", default="5m", help="wait after each stage, e.g. 10m "
                        "(default 5m)")
    create.add_argument("--max-failures", default="5%", metavar="N|P%",
                        help="halt when more than N devices, or P %% of outcomes, failed "
                        "(default 5%%)")
    create.add_argument("--success", default="95%", metavar="P%",
                        help="a stage passes when P %% of its outcomes committed (default 95%%)")
    create.add_argument("--min-sample", type=int, help="outcomes before a percentage "
                        "threshold applies (default 10)")
    create.add_argument("--device-timeout", metavar="DURATION",
                        help="an online device without progress this long fails (default 1h)")
    create.add_argument("--retries", type=int, help="re-notifications after transient "
                        "failures (default 3)")
    create.add_argument("--retry-delay", metavar="DURATION", help="first retry delay, doubled "
                        "each time (default 30s)")
    add_client_options(create)
    create.set_defaults(func=cmd_rollout_create)

    status = rsub.add_parser("status", help="progress bar, per-state counts, log")
    status.add_argument("rollout_id")
    status.add_argument("--watch", action="store_true", help="redraw until it completes "
                        "(exit 0), halts or is aborted (exit 1)")
    status.add_argument("--interval", type=float, default=2.0, help="--watch refresh (s)")
    status.add_argument("--devices", action="store_true", help="list every device")
    status.add_argument("--log", type=int, default=8, help="log lines to show (default 8)")
    add_client_options(status)
    status.set_defaults(func=cmd_rollout_status)

    lst = rsub.add_parser("list", help="rollouts, newest first")
    lst.add_argument("--status", choices=["running", "paused", "halted", "aborted",
                                          "completed"])
    lst.add_argument("--limit", type=int, default=50)
    add_client_options(lst)
    lst.set_defaults(func=cmd_rollout_list)

    helps = {"pause": "stop notifying devices (updates in progress finish)",
             "resume": "continue a paused rollout, or override a halt",
             "abort": "stop for good; devices still updating or in trial roll back"}
    for action, text in helps.items():
        p = rsub.add_parser(action, help=text)
        p.add_argument("rollout_id")
        add_client_options(p)
        p.set_defaults(func=cmd_rollout_action, action=action)

    audit = sub.add_parser("audit", help="who did what, when (operator actions)")
    audit.add_argument("--actor", help="only this token name")
    audit.add_argument("--action", help="only this action, e.g. rollout-abort")
    audit.add_argument("--subject", help="only this subject, e.g. a rollout id")
    audit.add_argument("--since", metavar="DURATION", help="only the last DURATION, e.g. 1h")
    audit.add_argument("--limit", type=int, default=100)
    add_client_options(audit)
    audit.set_defaults(func=cmd_audit)
