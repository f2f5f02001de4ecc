"""``nanofleet model publish|list``, ``nanofleet deploy``, ``nanofleet devices list|show``.

``model publish`` runs on the operator's machine, where the targets key is: it
verifies the server's current targets the way a device would (python-tuf
ngclient, from the operator's trusted root), adds the bundle, signs with the
targets key and uploads. The server never sees the key.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from contract.display import printable
from fleet_server.cli.keys import passphrase
from fleet_server.client import ApiClient, read_token_file
from fleet_server.repository.keys import load_signer
from fleet_server.repository.operator import add_targets, fetch_verified_targets

EXIT_OK = 0


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(args.server, args.token)


def default_cache_dir(server: str) -> Path:
    """Per-server ngclient cache: keeps the newest verified metadata, so a server that
    later serves older metadata is caught (rollback) as it would be on a device."""
    base = Path.home() / ".cache" / "nanofleet" / "operator"
    return base / re.sub(r"[^A-Za-z0-9._-]+", "_", server)


def cmd_model_publish(args: argparse.Namespace) -> int:
    client = _client(args)
    bundle = args.bundle.read_bytes()
    root_path: Path = args.root or args.targets_key.parent / "root.json"
    try:
        trusted_root = root_path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{root_path}: cannot read the trusted root ({exc.strerror}); pass "
                         "--root with the root.json from the key ceremony") from None
    signer = load_signer(args.targets_key, passphrase(args))
    cache = args.cache_dir or default_cache_dir(client.server)
    current = fetch_verified_targets(client.metadata_url, trusted_root, cache)
    newest_root = (cache / "root.json").read_bytes()  # ngclient keeps the newest verified
    update = add_targets(current, [signer], bundle=bundle, minimum_version=args.minimum_version,
                         trusted_root=newest_root, expires_days=args.expires_days,
                         variants=args.variants)
    result = client.publish(update.metadata, update.files)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    for info in result["published"]:
        print(f"published {info['model']} v{info['version']} (slot {info['slot']}, "
              f"{info['result_length']} bytes, sha256 {info['result_sha256'][:16]}…) as "
              f"targets v{result['targets_version']}")
    for d in result["deltas"]:
        what = f"{d['runtime']} variant " if d.get("runtime") else ""
        if d["status"] == "listed":
            print(f"  {what}delta from v{d['base_version']}: {d['length']} bytes "
                  f"({100 * d['fraction']:.2f} % of the bundle)")
        else:
            print(f"  no {what}delta from v{d['base_version']}: {d['status']} "
                  f"({d.get('detail')})")
    for path in result["removed_deltas"]:
        print(f"  removed stale delta {path}")
    return EXIT_OK


def cmd_model_list(args: argparse.Namespace) -> int:
    result = _client(args).get("/api/v1/models")
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    if not result["models"]:
        print("no models published yet (nanofleet model publish BUNDLE)")
    for m in result["models"]:
        print(f"{m['model']}  slot {m['slot']}  signed minimum v{m['minimum_version']}")
        for v in m["versions"]:
            deltas = ", ".join(
                f"{d['runtime'] + ' ' if d.get('runtime') else ''}from v{d['base_version']} "
                f"{d['length']} B" for d in v["deltas"])
            variants = ", ".join(f"{x['runtime']} {x['length']} B" for x in v.get("variants", []))
            print(f"  v{v['version']:<4d} {v['length']:>10d} B  sha256 {v['sha256'][:16]}…  "
                  f"{_when(v['published_at'])}"
                  + (f"  variants: {variants}" if variants else "")
                  + (f"  deltas: {deltas}" if deltas else ""))
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    devices = [d.strip() for part in args.devices for d in part.split(",") if d.strip()]
    if not devices:
        raise ValueError("--devices needs at least one device id")
    result = _client(args).post_json("/api/v1/deployments", {
        "model": args.model, "version": args.version, "devices": devices})
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    print(f"desired: {result['model']} v{result['version']} on slot {result['slot']}")
    for d in result["devices"]:
        notes = [] if d["known"] else ["never reported yet"]
        if not d["changed"]:
            notes.append("unchanged")
        print(f"  {d['device_id']:24s} revision {d['revision']:<9d} "
              f"{'published' if d['published'] else 'PENDING'}"
              + (f"  ({', '.join(notes)})" if notes else ""))
    if "warning" in result:
        print(f"warning: {result['warning']}")
    return EXIT_OK


def _when(ts: float | None) -> str:
    if ts is None:
        return "never"
    ago = max(0.0, time.time() - ts)
    if ago < 120:
        return f"{ago:.0f}s ago"
    if ago < 7200:
        return f"{ago / 60:.0f}m ago"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


# The device's own strings (agent version, model names, OTA reasons and details) each go
# through printable() as alerts.py's do: main() makes every character printable, but a
# line break a device sent would still start a row of its own (review, December 2026).
def _models(models: dict[str, Any]) -> str:
    return ", ".join(f"{slot}={printable(m['name'])} v{m['version']}"
                     for slot, m in models.items()) or "-"


def _ota(last: dict[str, Any] | None) -> str:
    if not last:
        return "-"
    text = f"{last['state']}"
    if last.get("to_version") is not None:
        text += f" v{last['to_version']}"
    if last.get("reason"):
        text += f" ({printable(last['reason'])})"
    return text


def _model_filter(text: str) -> dict[str, Any]:
    """``2`` -> version 2 of any model; ``nano-logs:2`` -> that model's v2; ``nano-logs:``
    -> any version of it."""
    name, sep, version = text.rpartition(":")
    if not sep:
        name, version = "", text
    out: dict[str, Any] = {"model": name} if name else {}
    if version:
        try:
            out["model_version"] = int(version.removeprefix("v"))
        except ValueError:
            raise ValueError(f"invalid --model-version {text!r}: use 2, v2 or "
                             "nano-logs:2") from None
    return out


def _labels(d: dict[str, Any]) -> str:
    tags = ",".join(d.get("tags") or [])
    return " ".join(x for x in (d.get("group") or "", f"[{tags}]" if tags else "") if x) or "-"


def cmd_devices_list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {}
    if args.state:
        params["state"] = args.state
    if args.group:
        params["group"] = args.group
    if args.tag:
        params["tag"] = [t for part in args.tag for t in part.split(",") if t]
    if args.model_version:
        params.update(_model_filter(args.model_version))
    if args.offline:
        params["offline"] = "true"
    result = _client(args).get("/api/v1/devices", params)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    rows = [("DEVICE", "STATE", "HEALTH", "GROUP/TAGS", "AGENT", "MODELS", "LAST OTA",
             "LAST SEEN")]
    rows += [(d["device_id"], "quarantined" if d.get("quarantined_until") else d["state"],
              d["health"], _labels(d),
              printable(d["agent_version"] or "-"),
              _models(d["models"]), _ota(d["last_ota"]), _when(d["last_seen"]))
             for d in result["devices"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if len(rows) == 1:
        print("(no device matches)" if params else "(no device has reported yet)")
    return EXIT_OK


def _csv(values: list[str] | None) -> list[str]:
    return [v.strip() for part in values or [] for v in part.split(",") if v.strip()]


def cmd_devices_tag(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"devices": _csv(args.device_ids)}
    if args.group:
        body["group"] = args.group
    if args.no_group:
        body["clear_group"] = True
    if args.tags is not None:
        body["tags"] = _csv([args.tags])
    if args.add_tags:
        body["add_tags"] = _csv(args.add_tags)
    if args.remove_tags:
        body["remove_tags"] = _csv(args.remove_tags)
    if args.create:
        body["create"] = True
    result = _client(args).request("PATCH", "/api/v1/devices", json=body)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    for d in result["devices"]:
        print(f"{d['device_id']:24s} group {d['group'] or '-'}  tags "
              f"{','.join(d['tags']) or '-'}")
    return EXIT_OK


def _reads(reads: list[str] | None) -> str:
    if reads is None:
        return "(not said: an agent before December 2026, or no status yet)"
    return printable(", ".join(reads)) if reads else "(bundle format 1 only)"


def cmd_devices_show(args: argparse.Namespace) -> int:
    params = {"events": args.events} if args.events else {}
    d = _client(args).get(f"/api/v1/devices/{args.device_id}", params)
    if args.json:
        print(json.dumps(d, sort_keys=True))
        return EXIT_OK
    out = [f"device     {d['device_id']}",
           f"state      {d['state']}  health {d.get('health', 'unknown')}  agent "
           f"{printable(d.get('agent_version') or '?')}  last seen {_when(d.get('last_seen'))}",
           f"models     {_models(d['models'])}",
           f"reads      {_reads(d.get('reads'))}",
           f"last OTA   {_ota(d['last_ota'])}"]
    if d["last_ota"] and d["last_ota"].get("detail"):
        out.append(f"           {printable(d['last_ota']['detail'])}")
    quarantine = d.get("quarantine")
    if quarantine:  # the broker denies it every topic (nanofleet devices release)
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(quarantine["until"]))
        out.append(f"QUARANTINE until {until} by "
                   f"{printable(quarantine['created_by'])}: {printable(quarantine['reason'])}")
    desired = d.get("desired")
    if desired:
        slots = ", ".join(f"{s}={m['model']} v{m['version']}"
                          for s, m in desired["document"]["slots"].items())
        out.append(f"desired    {slots} (revision {desired['revision']}, "
                   f"{'published' if desired['published'] else 'not yet on the broker'})")
    out.append(f"OTA events ({len(d['events'])} most recent, newest first):")
    for e in d["events"]:
        versions = f"v{e['from_version']}->v{e['to_version']}" if e["to_version"] else ""
        extra = " ".join(x for x in (e.get("artifact") or "",
                                     f"{e['bytes_downloaded']} B" if e.get("bytes_downloaded")
                                     else "", printable(e.get("reason") or "")) if x)
        out.append(f"  {time.strftime('%H:%M:%S', time.localtime(e['ts']))}  {e['slot']:8s} "
                   f"{e['state']:14s} {versions:10s} {extra}".rstrip())
        if e.get("detail"):
            out.append(f"            {printable(e['detail'])}")
    print("\n".join(out))
    return EXIT_OK


def _token_file(path: str) -> str:
    try:
        return read_token_file(path)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="fleet server URL (default: $NANOFLEET_SERVER or "
                        "http://127.0.0.1:8080)")
    parser.add_argument("--token", help="operator token (visible to other users in ps: prefer "
                        "--token-file; default: $NANOFLEET_TOKEN, $NANOFLEET_TOKEN_FILE)")
    parser.add_argument("--token-file", dest="token", type=_token_file, metavar="FILE",
                        help="read the operator token from FILE")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def add_publish_commands(model_sub: Any) -> None:
    pub = model_sub.add_parser("publish", help="sign a bundle with the operators' targets key "
                               "and publish it on the fleet server")
    pub.add_argument("bundle", type=Path, help="bundle file (.nfb)")
    pub.add_argument("--targets-key", type=Path, required=True, metavar="KEY.pem",
                     help="the operators' targets key")
    pub.add_argument("--root", type=Path, help="trusted root.json (default: root.json beside "
                     "the targets key)")
    pub.add_argument("--minimum-version", type=int, help="raise the slot's signed minimum "
                     "version (devices refuse anything below it)")
    pub.add_argument("--expires-days", type=float, default=90,
                     help="targets metadata lifetime (default 90 days)")
    pub.add_argument("--no-variants", dest="variants", action="store_false",
                     help="sign only the combined bundle, not one full target per runtime "
                     "(devices then download every runtime's model file)")
    pub.add_argument("--cache-dir", type=Path, help="verified-metadata cache (default "
                     "~/.cache/nanofleet/operator/<server>)")
    pub.add_argument("--passphrase-env", metavar="VAR", help="passphrase of an encrypted key")
    add_client_options(pub)
    pub.set_defaults(func=cmd_model_publish)
    lst = model_sub.add_parser("list", help="published models, versions and deltas")
    add_client_options(lst)
    lst.set_defaults(func=cmd_model_list)


def add_fleet_commands(sub: Any) -> None:
    dep = sub.add_parser("deploy", help="set the desired model version of devices")
    dep.add_argument("model", help="model name")
    dep.add_argument("version", type=int, help="published version")
    dep.add_argument("--devices", action="append", required=True, metavar="ID[,ID...]",
                     help="device ids (comma-separated; repeatable)")
    add_client_options(dep)
    dep.set_defaults(func=cmd_deploy)

    dev = sub.add_parser("devices", help="the device inventory")
    dev_sub = dev.add_subparsers(dest="devices_command", metavar="{list,show,tag}",
                                 required=True)
    lst = dev_sub.add_parser("list", help="devices, filtered")
    lst.add_argument("--state", choices=["online", "offline", "stopped", "unknown", "idle",
                                         "downloading", "verifying", "staged",
                                         "smoke_testing", "trial", "committed", "failed",
                                         "rolled_back"],
                     help="connection state, or last OTA state")
    lst.add_argument("--group", help="in this group")
    lst.add_argument("--tag", action="append", metavar="T[,T...]",
                     help="carrying these tags (all of them)")
    lst.add_argument("--model-version", metavar="[MODEL:]V",
                     help="running version V (of MODEL)")
    lst.add_argument("--offline", action="store_true", help="only devices not online")
    add_client_options(lst)
    lst.set_defaults(func=cmd_devices_list)
    show = dev_sub.add_parser("show", help="one device with its recent OTA events")
    show.add_argument("device_id")
    show.add_argument("--events", type=int, help="how many recent OTA events")
    add_client_options(show)
    show.set_defaults(func=cmd_devices_show)
    tag = dev_sub.add_parser("tag", help="set group and tags of devices (rollout selection)")
    tag.add_argument("device_ids", nargs="+", metavar="ID", help="device ids (or a,b,c)")
    tag.add_argument("--group", help="put them in this group")
    tag.add_argument("--no-group", action="store_true", help="take them out of their group")
    tag.add_argument("--tags", metavar="A,B", help="replace their tags")
    tag.add_argument("--add-tags", action="append", metavar="A,B", help="add tags")
    tag.add_argument("--remove-tags", action="append", metavar="A,B", help="remove tags")
    tag.add_argument("--create", action="store_true", help="add ids that never reported or "
                     "enrolled (group devices before they are installed); without it an "
                     "unknown id is refused")
    add_client_options(tag)
    tag.set_defaults(func=cmd_devices_tag)
