"""Staged rollouts at fleet scale on one machine.

:class:`ScaleRig` starts a real Mosquitto and a real fleet server (``nanofleet server
run``) and publishes, signed with the operators' targets key, v1 (the shipped model)
and v2 (a head-only fine-tune of it, so the server lists a small delta).
:meth:`ScaleRig.run_rollout` then starts simulated devices in a few processes
(``python -m hil.simdevice --verify``: each device with its own MQTT connection, the
agent's OTA state machine and its real TUF refresh, delta download, delta apply and hash
checks), creates a canary + waves rollout with zero soak, and measures:

- rollout time: the server's ``created_at`` to ``finished_at`` (or the halt);
- report ingest: the server's ``mqtt.ingested`` counter (``GET /api/v1/health/detail``),
  mean over the rollout and the best 1-second window, checked against the OTA events
  stored in the database;
- what the devices' verification path did (per-process counters of :mod:`hil.simota`).

``benchmarks/fleet_rollout.py`` prints it; ``tests/test_fleet_scale.py`` asserts on it.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from fleet_server.client import ApiClient
from hil.broker import Mosquitto
from hil.fleet import FleetServer, FleetSetup, setup_fleet
from hil.models import finetuned
from hil.operator import Operator
from hil.scale_figures import CpuMeter, merge_stats, peak_rate
from nanomodel import default_bundle_path

MODEL = "nano-logs"
DONE = ("completed", "halted", "aborted")


def split(total: int, parts: int) -> list[int]:
    """``total`` devices over ``parts`` processes, as even as possible."""
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class SimProcess:
    """One ``python -m hil.simdevice`` child: started, ready, then stopped for its stats."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._err = open(log, "wb")  # noqa: SIM115 - the child writes it; closed in finish()
        self.proc = subprocess.Popen([sys.executable, "-m", "hil.simdevice", *args],
                                     stdout=subprocess.PIPE, stderr=self._err)

    def _line(self, deadline: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise TimeoutError(f"simulator did not answer:\n{self.log.read_text()[-2000:]}")
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"simulator exited ({self.proc.wait()}):\n"
                                   f"{self.log.read_text()[-2000:]}")
            if line.startswith(b"{"):
                result: dict[str, Any] = json.loads(line)
                return result

    def wait_ready(self, deadline: float) -> int:
        return int(self._line(deadline)["ready"])

    def finish(self, timeout: float = 30.0) -> dict[str, Any]:
        """SIGTERM: devices publish 'stopped' and the child prints its counters."""
        try:
            self.proc.send_signal(signal.SIGTERM)
            return self._line(time.monotonic() + timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._err.close()


@dataclass
class RolloutPlan:
    """One measured rollout: how many devices in how many processes, and the strategy
    (soak is always 0: the benchmark measures the rollout, not the waiting)."""

    devices: int = 1000
    processes: int = 4
    canary: int = 10
    waves: tuple[float, ...] = (10.0, 50.0, 100.0)
    prefix: str = "sim-"
    trial_s: float = 0.2  # the simulated trial before a healthy verdict
    max_failures: str = "5%"
    timeout_s: float = 300.0
    verify: bool = True  # False: plain simulated steps (no TUF, no bytes), for comparison


class ScaleRig:
    """Broker + fleet server + signed v1/v2; :meth:`run_rollout` as often as wanted (each
    run with fresh devices under another ``prefix``, all starting at v1)."""

    def __init__(self, workdir: Path, rollout_tick_s: float = 1.0) -> None:
        self.workdir = workdir
        self.rollout_tick_s = rollout_tick_s
        self.broker: Mosquitto | None = None
        self.server: FleetServer | None = None
        self.setup: FleetSetup | None = None
        self.published: dict[str, Any] = {}

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> ScaleRig:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker = Mosquitto(self.workdir / "broker").start()
        try:
            self.setup = setup_fleet(self.workdir / "fleet", mqtt_port=self.broker.port,
                                     rollout_tick_s=self.rollout_tick_s)
            self.server = FleetServer(self.setup).start()
            self.server.wait_mqtt()
            operator = Operator(self.setup, self.workdir / "operator-cache")
            operator.publish(default_bundle_path().read_bytes())
            result = operator.publish(finetuned(2))
        except BaseException:
            self.stop()
            raise
        deltas = [d for d in result.get("deltas", []) if d.get("status") == "listed"]
        if not deltas:
            self.stop()
            raise RuntimeError(f"v2 was published without a delta: {result}")
        full = result["published"][0]
        self.published = {"full_bytes": full["result_length"],
                          "full_sha256": full["result_sha256"],
                          "delta_bytes": deltas[0]["length"]}
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.broker is not None:
            self.broker.stop()

    def __enter__(self) -> ScaleRig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def fleet(self) -> FleetSetup:
        assert self.setup is not None, "start() the rig first"
        return self.setup

    def api(self) -> ApiClient:
        return ApiClient(self.fleet.url, self.fleet.token, timeout=60)

    # --- faults ------------------------------------------------------------------------------
    def tamper(self, which: Literal["delta", "full"]) -> list[tuple[Path, bytes]]:
        """Flip one byte of the stored v2 delta (or full bundle) on the server, as a bad
        mirror would: the signed metadata keeps the true hashes. Returns what to restore."""
        directory = self.fleet.config.repo_path / "targets" / "models" / MODEL / "2"
        changed = []
        for path in sorted(p for p in directory.iterdir() if p.is_file()):
            if (".delta-from-" in path.name) != (which == "delta"):
                continue
            data = path.read_bytes()
            flipped = bytearray(data)
            flipped[len(flipped) // 2] ^= 0xFF
            path.write_bytes(bytes(flipped))
            changed.append((path, data))
        if not changed:
            raise RuntimeError(f"no stored v2 {which} under {directory}")
        return changed

    @staticmethod
    def restore(originals: list[tuple[Path, bytes]]) -> None:
        for path, data in originals:
            path.write_bytes(data)

    # --- one rollout -------------------------------------------------------------------------
    def _start_sims(self, plan: RolloutPlan) -> list[SimProcess]:
        sims, first = [], 0
        repo_url = f"{self.fleet.url}/repo"
        for i, count in enumerate(split(plan.devices, plan.processes)):
            state = self.workdir / f"{plan.prefix}p{i}"
            verify = ["--verify", "--repo-url", repo_url, "--root", str(self.fleet.root_file),
                      "--base-bundle", str(default_bundle_path()), "--state-dir", str(state)]
            sims.append(SimProcess([
                "--port", str(self.fleet.config.mqtt.port), "--count", str(count),
                "--start", str(first), "--prefix", plan.prefix, "--step-s", "0",
                "--trial-s", str(plan.trial_s), *(verify if plan.verify else [])],
                state.with_suffix(".log")))
            first += count
        return sims

    def _wait_online(self, ids: list[str], deadline: float) -> None:
        want = set(ids)
        while True:
            devices = self.api().get("/api/v1/devices")["devices"]
            online = {d["device_id"] for d in devices if d["state"] == "online"}
            if want <= online:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(want - online)} device(s) not online in the inventory")
            time.sleep(0.2)

    @staticmethod
    def _pid(part: FleetServer | Mosquitto | None) -> list[int]:
        proc = part.proc if part is not None else None
        return [proc.pid] if proc is not None else []

    def _http(self) -> httpx.Client:
        """One keep-alive connection for the watcher (a new client per call costs the
        benchmark ~20 ms of CPU each: SSL context set-up)."""
        return httpx.Client(base_url=self.fleet.url, timeout=60,
                            headers={"Authorization": f"Bearer {self.fleet.token}"})

    def _ingested(self, http: httpx.Client | None = None) -> int:
        return self._counters(http)[0]

    def _counters(self, http: httpx.Client | None = None) -> tuple[int, int]:
        """(reports stored, rollout driver ticks) from ``GET /api/v1/health/detail``."""
        if http is None:
            with self._http() as own:
                return self._counters(own)
        health = http.get("/api/v1/health/detail").json()
        return int(health["mqtt"]["ingested"]), int(health["rollouts"]["ticks"])

    def run_rollout(self, plan: RolloutPlan) -> dict[str, Any]:
        """Start the devices, run one rollout of v2 to them, stop them; the figures."""
        ids = [f"{plan.prefix}{i:04d}" for i in range(plan.devices)]
        sims = self._start_sims(plan)
        try:
            t0 = time.monotonic()
            deadline = t0 + 120
            for sim in sims:
                sim.wait_ready(deadline)
            self._wait_online(ids, deadline)
            connect_s = time.monotonic() - t0
            cpu = CpuMeter({"server": self._pid(self.server), "broker": self._pid(self.broker),
                            "simulators": [s.proc.pid for s in sims],
                             "watcher": [os.getpid()]})
            outcome = self._rollout(plan, ids)
            outcome["cpu_s"] = cpu.used()
            outcome["connect_s"] = round(connect_s, 2)
            outcome["settle_s"] = round(self._settle(), 2)
            stats = [sim.finish() for sim in sims]
        finally:
            for sim in sims:
                sim.kill()
        outcome["devices"] = merge_stats(stats)
        outcome["database"] = self._stored(outcome["rollout_id"])
        outcome["plan"] = {"devices": plan.devices, "processes": len(sims),
                           "canary": plan.canary, "waves": list(plan.waves),
                           "trial_s": plan.trial_s, "soak_s": 0, "verify": plan.verify}
        outcome["published"] = self.published
        return outcome

    def _rollout(self, plan: RolloutPlan, ids: list[str]) -> dict[str, Any]:
        api = self.api()
        before, ticks_before = self._counters()
        threshold = ({"kind": "percent", "value": float(plan.max_failures[:-1])}
                     if plan.max_failures.endswith("%")
                     else {"kind": "count", "value": int(plan.max_failures)})
        created = api.post_json("/api/v1/rollouts", {
            "model": MODEL, "version": 2, "select": {"ids": ids},
            "strategy": {"canary": plan.canary, "waves": list(plan.waves), "soak_s": 0,
                         "max_failures": threshold}})
        rid = created["id"]
        samples: list[tuple[float, int]] = [(time.time(), before)]
        deadline = time.monotonic() + plan.timeout_s
        # The ingest counter is cheap to read (2-3 ms of server CPU); a rollout view of
        # 1,000 devices is not (~60 ms), so the watcher looks at it once a second: the
        # figures come from the server's own timestamps, not from when we looked.
        with self._http() as http:
            for tick in itertools.count():
                time.sleep(0.25)
                samples.append((time.time(), self._ingested(http)))
                if tick % 4 == 3 or time.monotonic() > deadline:
                    r = http.get(f"/api/v1/rollouts/{rid}", params={"log": 200}).json()
                    if r["status"] in DONE or time.monotonic() > deadline:
                        break
        end = r["finished_at"] or next(
            (e["at"] for e in reversed(r["log"]) if e["text"].startswith("halted")), None)
        duration = (end or time.time()) - r["created_at"]
        at_end = samples[-1][1]
        ticks = self._counters()[1] - ticks_before
        return {
            "rollout_id": rid, "status": r["status"], "halt_reason": r["halt_reason"],
            "halt_detail": r["halt_detail"], "rollout_s": round(duration, 3),
            "counts": {k: v for k, v in r["counts"].items() if v}, "total": r["total"],
            "stages": [{"name": s["name"], "devices": s["devices"], "status": s["status"]}
                       for s in r["stages"]],
            "log": [(round(e["at"] - r["created_at"], 3), e["text"]) for e in r["log"]],
            "ingest": {"reports": at_end - before,
                       "mean_per_s": round((at_end - before) / max(duration, 1e-6), 1),
                       "peak_per_s": round(peak_rate(samples), 1)},
            "driver_ticks": ticks}

    def _settle(self, quiet_s: float = 1.0, limit_s: float = 20.0) -> float:
        """Until the server stored every report (its counter stops moving)."""
        t0 = time.monotonic()
        with self._http() as http:
            last, since = self._ingested(http), time.monotonic()
            while time.monotonic() - since < quiet_s and time.monotonic() - t0 < limit_s:
                time.sleep(0.2)
                now = self._ingested(http)
                if now != last:
                    last, since = now, time.monotonic()
        return time.monotonic() - t0

    def _stored(self, rollout_id: str) -> dict[str, Any]:
        """The rollout's OTA events as the server stored them (SQLite, read-only)."""
        path = self.fleet.config.data_dir / "fleet.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            events, first, last = db.execute(
                "SELECT count(*), min(received_at), max(received_at) FROM ota_events "
                "WHERE rollout_id = ?", (rollout_id,)).fetchone()
            committed = dict(db.execute(
                "SELECT coalesce(artifact, '?'), count(DISTINCT device_id) FROM ota_events "
                "WHERE rollout_id = ? AND state = 'committed' GROUP BY artifact",
                (rollout_id,)).fetchall())
            states = dict(db.execute(
                "SELECT state, count(*) FROM ota_events WHERE rollout_id = ? GROUP BY state",
                (rollout_id,)).fetchall())
        return {"ota_events": events, "span_s": round((last or 0) - (first or 0), 3),
                "events_by_state": states, "committed_by_artifact": committed}
