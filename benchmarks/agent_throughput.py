"""End-to-end agent benchmark: append to a file -> result published on MQTT.

Runs the real agent process pinned to one core, a real Mosquitto, a writer and a
subscriber (on the other core when there is one). Measures:
  1. latency at a steady 1,000 lines/s (write time -> result received), p50/p99, and
     the agent's steady-state RSS meanwhile;
  2. throughput: a burst of lines appended at once, until every result arrived
     (and RSS after it: the peak a burst leaves behind).
The agent runs with the environment the systemd unit sets (``Environment=``, read from
packaging/systemd/nanofleet-agent.service by benchmarks/device_env.py), so the RSS is
the one a device gets. Prints a summary, then one JSON object as the last line.

    .venv/bin/python benchmarks/agent_throughput.py [--lines 60000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.device_env import device_environment, unit_environment  # noqa: E402
from hil.broker import Mosquitto  # noqa: E402

DEV = "bench-01"


class Subscriber:
    def __init__(self, port: int) -> None:
        self.count = 0
        self.latencies: list[float] = []
        self.cond = threading.Condition()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub",
                             protocol=mqtt.MQTTv5)
        self.c.on_connect = lambda c, *a: c.subscribe(f"nanofleet/v1/dev/{DEV}/results/#", 1)
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        items = json.loads(msg.payload)["items"]
        lat = []
        for item in items:
            text = item["text"]
            if " t=" in text:
                lat.append(now - float(text.rsplit(" t=", 1)[1]))
        with self.cond:
            self.count += len(items)
            self.latencies += lat
            self.cond.notify_all()

    def wait_count(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.count < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def start_agent(cfg: Path, core: int, log: Path) -> subprocess.Popen[bytes]:
    """The agent as a device runs it (the unit's environment), pinned to ``core``."""
    with open(log, "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)],
            preexec_fn=lambda: os.sched_setaffinity(0, {core}), env=device_environment(),
            stdout=subprocess.DEVNULL, stderr=err)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=60_000, help="burst size for throughput")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of the latency run")
    ap.add_argument("--rate", type=int, default=1000, help="lines/s in the latency run")
    ap.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "litert"])
    ap.add_argument("--no-ota", dest="ota", action="store_false",
                    help="leave [ota] out (by default it is configured, as in production; no "
                    "update is started, so the TUF client is not imported)")
    args = ap.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    agent_core, my_cores = cores[0], (cores[1:] or cores)
    work = Path(tempfile.mkdtemp(prefix="nanofleet-bench-"))
    broker = Mosquitto(work / "broker").start()
    log = work / "bench.log"
    log.write_text("")
    cfg = work / "agent.toml"
    cfg.write_text(f"""device_id = "{DEV}"
state_dir = "{work / 'state'}"
log_level = "warning"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
[model]
runtime = "{args.runtime}"
[alerts]
max_per_minute = 60
[[sources]]
kind = "file"
path = "{log}"
""" + (f"""[ota]
metadata_url = "http://127.0.0.1:9/metadata"
target_base_url = "http://127.0.0.1:9/targets"
root_file = "{work / 'root.json'}"
""" if args.ota else ""))
    unit_env = unit_environment()
    print("agent environment from the unit: "
          + " ".join(f"{k}={v}" for k, v in unit_env.items()))
    agent = start_agent(cfg, agent_core, work / "agent.log")
    os.sched_setaffinity(0, set(my_cores))
    sock = work / "state" / "agent.sock"
    deadline = time.monotonic() + 60
    while not sock.exists():
        if time.monotonic() > deadline or agent.poll() is not None:
            print((work / "agent.log").read_text())
            return 1
        time.sleep(0.1)
    time.sleep(1.0)
    sub = Subscriber(broker.port)
    time.sleep(0.5)
    try:
        styles = ["kernel: eth0: link up, 1000 Mbps full duplex",
                  "pumpd[412]: cycle complete, flow=41.2 l/min, pressure=3.1 bar",
                  "sensor temp_c=41.5 humidity=38 vib_rms=0.12 status=ok",
                  "sshd[988]: Accepted publickey for admin from 192.0.2.4 port 51122"]
        # 1. latency and steady-state RSS at a steady rate
        base = sub.count
        sub.latencies.clear()
        n = int(args.rate * args.seconds)
        rss_samples = []
        with open(log, "a", buffering=1) as f:
            start = time.monotonic()
            for i in range(n):
                target = start + i / args.rate
                delay = target - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                f.write(f"{styles[i % 4]} t={time.time():.6f}\n")
                if i % args.rate == 0:
                    rss_samples.append(rss_mb(agent.pid))
        sub.wait_count(base + n, timeout=60)
        lat = sub.latencies
        p50, p99 = pct(lat, 50) * 1000, pct(lat, 99) * 1000
        rss = sorted(rss_samples)[len(rss_samples) // 2]
        print(f"latency at {args.rate} lines/s over {args.seconds:.0f} s: p50 {p50:.1f} ms, "
              f"p99 {p99:.1f} ms ({len(lat)} lines)")
        print(f"steady-state RSS of the agent: {rss:.1f} MB (max {max(rss_samples):.1f} MB)")
        # 2. throughput (a burst; RSS after it is reported as the peak)
        burst = "".join(f"{styles[i % 4]} n={i}\n" for i in range(args.lines))
        before_burst = sub.count  # the steady run's results count too
        t0 = time.monotonic()
        with open(log, "a") as f:
            f.write(burst)
        ok = sub.wait_count(before_burst + args.lines, timeout=300)
        elapsed = time.monotonic() - t0
        throughput = args.lines / elapsed if ok else 0.0
        print(f"throughput: {args.lines} lines in {elapsed:.2f} s -> {throughput:,.0f} lines/s "
              f"end to end (agent on 1 core, {args.runtime})")

        time.sleep(2.0)
        rss_after_burst = rss_mb(agent.pid)
        print(f"RSS after the burst: {rss_after_burst:.1f} MB")
        print("targets: >= 5000 lines/s, p99 <= 50 ms, steady RSS <= 60 MB (LiteRT), "
              "<= 85 MB (ONNX Runtime)")
        print(json.dumps({"benchmark": "agent_throughput", "runtime": args.runtime,
                          "ota_configured": args.ota, "unit_environment": unit_env,
                          "lines_per_s": round(throughput), "burst_lines": args.lines,
                          "latency_rate": args.rate, "latency_p50_ms": round(p50, 2),
                          "latency_p99_ms": round(p99, 2), "rss_mb": round(rss, 1),
                          "rss_max_mb": round(max(rss_samples), 1),
                          "rss_after_burst_mb": round(rss_after_burst, 1)}))
        return 0
    finally:
        agent.terminate()
        agent.wait(20)
        sub.c.loop_stop()
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
