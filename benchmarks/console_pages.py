"""How long the console's pages take with a fleet of simulated devices.

    python benchmarks/console_pages.py [--devices 1000] [--processes 4] [--extra 9000]
        [--repeat 15]

A real Mosquitto and a real fleet server (SQLite) with v1 and v2 published
(:class:`hil.scale.ScaleRig`); ``--devices`` simulated devices (``hil/simdevice.py``,
each with its own MQTT connection) online; then one rollout of v2 to all of them. It
signs in to the console as a browser does (the sign-in form, the session cookie) and
times each page (server time as seen by the client over loopback: median and 95th
percentile of ``--repeat`` requests), first with the simulated devices, during and after
the rollout, then with ``--extra`` more devices added to the inventory (operators can
label devices before they ever connect: ``PATCH /api/v1/devices`` with ``create``), so the inventory
holds devices + extra rows.

Prints a table, then one JSON line (the last line).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hil.scale import RolloutPlan, ScaleRig, SimProcess, split  # noqa: E402
from hil.scale_figures import machine  # noqa: E402

PAGES = {
    "overview": "/console/fleet",
    "overview fragment (polled)": "/console/fleet/live",
    "overview, group + search": "/console/fleet?group=bench&q=sim-09",
    "overview, tag filter": "/console/fleet?tag=bench-tag&page=3",
    "overview, stale devices": "/console/fleet?state=stale",
    "device page": "/console/devices/sim-0007",
    "releases": "/console/releases",
    "release page": "/console/releases/nano-logs/2",
    "rollouts": "/console/rollouts",
    "audit log": "/console/audit",
}


def sign_in(url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=120, follow_redirects=False)
    form = client.get("/console/login")
    nonce = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert nonce, form.text[:500]
    r = client.post("/console/login", data={"token": token, "login_csrf": nonce.group(1),
                                            "next": "/console/fleet"})
    assert r.status_code == 303 and "nanofleet_console" in client.cookies, r.text[:500]
    return client


def timed(client: httpx.Client, path: str, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = client.get(path)
        times.append(time.perf_counter() - t0)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
    times.sort()
    return {"median_ms": round(1000 * statistics.median(times), 1),
            "p95_ms": round(1000 * times[min(len(times) - 1, int(0.95 * len(times)))], 1),
            "bytes": len(r.content)}


def measure(client: httpx.Client, pages: dict[str, str], repeat: int,
            title: str) -> dict[str, Any]:
    """Time each page; print the figures at once (a long run keeps what it measured)."""
    out = {name: timed(client, path, repeat) for name, path in pages.items()}
    print(f"\n{title} (load average {machine()['load_1m']}):")
    for name, t in out.items():
        print(f"  {name:<40} median {t['median_ms']:7.1f} ms  p95 {t['p95_ms']:7.1f} ms"
              f"  {t['bytes'] / 1024:6.1f} KiB", flush=True)
    return out


def start_devices(rig: ScaleRig, count: int, processes: int) -> list[SimProcess]:
    sims, first = [], 0
    for i, n in enumerate(split(count, processes)):
        log = rig.workdir / f"console-sim-{i}.log"
        sims.append(SimProcess(["--port", str(rig.fleet.config.mqtt.port), "--count", str(n),
                                "--start", str(first), "--prefix", "sim-", "--step-s", "0",
                                "--trial-s", "0.2"], log))
        first += n
    return sims


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=1000)
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--extra", type=int, default=9000, help="inventory rows added afterwards")
    p.add_argument("--repeat", type=int, default=15)
    args = p.parse_args(argv)
    result: dict[str, Any] = {"machine": machine(), "devices": args.devices,
                              "extra": args.extra}
    print(f"machine: {result['machine']['cpus']} CPU(s), load {result['machine']['load_1m']}")
    with tempfile.TemporaryDirectory(prefix="nf-console-") as tmp, \
            ScaleRig(Path(tmp)) as rig:
        sims = start_devices(rig, args.devices, args.processes)
        try:
            deadline = time.monotonic() + 180
            for sim in sims:
                sim.wait_ready(deadline)
            ids = [f"sim-{i:04d}" for i in range(args.devices)]
            api = rig.api()
            while not set(ids) <= {d["device_id"] for d in api.get("/api/v1/devices")[
                    "devices"] if d["state"] == "online"}:
                if time.monotonic() > deadline:
                    raise TimeoutError("the simulated devices did not all come online")
                time.sleep(0.5)
            api.request("PATCH", "/api/v1/devices", json={"devices": ids, "group": "bench",
                                                          "add_tags": ["bench-tag"]})
            client = sign_in(rig.fleet.url, rig.fleet.token)
            result["with_devices"] = measure(client, PAGES, args.repeat,
                                             f"{args.devices} simulated devices online")
            plan = RolloutPlan(devices=args.devices, processes=args.processes, verify=False)
            created = api.post_json("/api/v1/rollouts", {
                "model": "nano-logs", "version": 2, "select": {"group": "bench"},
                "strategy": {"canary": plan.canary, "waves": list(plan.waves), "soak_s": 0}})
            rid = created["id"]
            live = {"rollout page (live fragment, during)": f"/console/rollouts/{rid}/live"}
            result["during_rollout"] = measure(client, live, args.repeat,
                                               "during a rollout to all of them")
            while api.get(f"/api/v1/rollouts/{rid}")["status"] not in (
                    "completed", "halted", "aborted"):
                time.sleep(1)
            result["rollout_status"] = api.get(f"/api/v1/rollouts/{rid}")["status"]
            result["after_rollout"] = measure(client, {
                "rollout page": f"/console/rollouts/{rid}", **PAGES}, args.repeat,
                "after the rollout")
            extra = [f"later-{i:05d}" for i in range(args.extra)]
            for i in range(0, len(extra), 500):  # small transactions: the server ingests too
                api.request("PATCH", "/api/v1/devices", json={
                    "devices": extra[i:i + 500], "group": "later", "create": True,
                    "add_tags": ["bench-tag"]})
            result["with_extra_rows"] = measure(
                client, PAGES, args.repeat,
                f"{args.devices + args.extra} devices in the inventory")
        finally:
            for sim in sims:
                sim.kill()
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
