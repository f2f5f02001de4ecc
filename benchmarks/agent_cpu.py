"""Agent CPU at the rates devices really see: idle, and following one file at 100 lines/s.

Starts a real Mosquitto and the real agent process (one file source, default model),
lets it settle, then measures the agent's own CPU time (user + system, from
/proc/PID/stat, children excluded) over a window with nothing written (idle) and over
a window with 100 lines/s appended to the followed file. CPU time is what a slower
board pays too; it is much less sensitive to other load on this machine than
wall-clock throughput is. Also counts the agent's thread wake-ups (voluntary context
switches) per second, the usual hidden cost at idle, and the batches classified per
second (from the agent's metrics). Prints a summary, then one JSON object as the last
line.

    .venv/bin/python benchmarks/agent_cpu.py [--seconds 30] [--rate 100] [--runtime litert]
        [--batch-min-lines 20] [--batch-max-wait-ms 200]   # the CPU/latency knobs
        [--profile FILE]   # also: py-spy profile of the busy window, CPU and wake-ups
                           # per thread (py-spy: the dev extra)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.control import ask  # noqa: E402
from benchmarks.device_env import device_environment  # noqa: E402
from hil.broker import Mosquitto  # noqa: E402
from hil.devices import wait_answering  # noqa: E402

DEV = "bench-cpu"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wakeups(pid: int) -> int:
    """Voluntary context switches summed over the process's threads."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def thread_cpu(pid: int) -> dict[int, tuple[float, int]]:
    """(CPU seconds (utime + stime), voluntary context switches) of each thread of the
    process, by native thread id."""
    out: dict[int, tuple[float, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            status = (task / "status").read_text()
        except OSError:
            continue
        switches = next(int(ln.split()[1]) for ln in status.splitlines()
                        if ln.startswith("voluntary_ctxt_switches:"))
        out[int(task.name)] = ((int(fields[11]) + int(fields[12])) / TICKS, switches)
    return out


def thread_names(profile: Path) -> dict[int, str]:
    """Native thread id -> Python thread name, from py-spy's ``thread (TID): NAME`` frames."""
    names: dict[int, str] = {}
    for line in profile.read_text().splitlines():
        head = line.rsplit(" ", 1)[0].split(";", 1)[0]  # "STACK COUNT": the first frame
        if head.startswith("thread (") and "): " in head:
            tid, name = head[len("thread ("):].split("): ", 1)
            names[int(tid)] = name
    return names


def measure(pid: int, seconds: float, write: object = None) -> tuple[float, float]:
    """(% of one core, wake-ups/s) over ``seconds``; ``write(i)`` is called at the rate."""
    c0, w0, t0 = cpu_seconds(pid), wakeups(pid), time.monotonic()
    if write is None:
        time.sleep(seconds)
    else:
        write(seconds)  # type: ignore[operator]
    c1, w1, t1 = cpu_seconds(pid), wakeups(pid), time.monotonic()
    return 100.0 * (c1 - c0) / (t1 - t0), (w1 - w0) / (t1 - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each window")
    ap.add_argument("--rate", type=int, default=100, help="lines/s in the busy window")
    ap.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "litert"])
    ap.add_argument("--batch-min-lines", type=int, default=None,
                    help="[pipeline] batch_min_lines (default: the agent's default)")
    ap.add_argument("--batch-max-wait-ms", type=int, default=None,
                    help="[pipeline] batch_max_wait_ms (default: the agent's default)")
    ap.add_argument("--profile", type=Path, default=None, metavar="FILE",
                    help="also record a py-spy profile of the busy window into FILE "
                    "(collapsed stacks, one per line; py-spy must be installed)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nanofleet-cpu-"))
    broker = Mosquitto(work / "broker").start()
    log = work / "device.log"
    log.write_text("")
    cfg = work / "agent.toml"
    pipeline = "\n".join(f"{key} = {value}" for key, value in
                         (("batch_min_lines", args.batch_min_lines),
                          ("batch_max_wait_ms", args.batch_max_wait_ms)) if value is not None)
    cfg.write_text(f"""device_id = "{DEV}"
state_dir = "{work / 'state'}"
log_level = "warning"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
[model]
runtime = "{args.runtime}"
[pipeline]
{pipeline}
[[sources]]
kind = "file"
path = "{log}"
""")
    # The environment the systemd unit sets (Environment=), as a device runs the agent.
    agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(cfg)],
                             stdout=subprocess.DEVNULL, env=device_environment(),
                             stderr=open(work / "agent.log", "wb"))  # noqa: SIM115
    try:
        if not wait_answering(work / "state" / "agent.sock", agent, 60):
            print((work / "agent.log").read_text())
            return 1
        time.sleep(5.0)  # start-up work (model warm-up, first status, metrics) is not idle
        idle_pct, idle_wake = measure(agent.pid, args.seconds)
        styles = ["kernel: eth0: link up, 1000 Mbps full duplex",
                  "pumpd[412]: cycle complete, flow=41.2 l/min, pressure=3.1 bar",
                  "sensor temp_c=41.5 humidity=38 vib_rms=0.12 status=ok",
                  "sshd[988]: Accepted publickey for admin from 192.0.2.4 port 51122"]

        def write(seconds: float) -> None:
            with open(log, "a", buffering=1) as f:
                start = time.monotonic()
                i = 0
                while time.monotonic() - start < seconds:
                    target = start + i / args.rate
                    delay = target - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    f.write(f"{styles[i % 4]} n={i}\n")
                    i += 1

        spy = None
        if args.profile is not None:
            beside = Path(sys.executable).with_name("py-spy")  # the venv's, else PATH's
            spy = subprocess.Popen([str(beside) if beside.exists() else "py-spy",
                                    "record", "--nonblocking", "--threads",
                                    "--format", "raw", "--rate", "200", "-o", str(args.profile),
                                    "-d", str(int(args.seconds)), "-p", str(agent.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sock = work / "state" / "agent.sock"
        batches0 = ask(sock, "metrics", {})["result"]["counters"].get("batches", 0)
        per_thread0 = thread_cpu(agent.pid)
        busy_pct, busy_wake = measure(agent.pid, args.seconds, write)
        per_thread1 = thread_cpu(agent.pid)
        metrics = ask(sock, "metrics", {})["result"]
        batches_per_s = (metrics["counters"].get("batches", 0) - batches0) / args.seconds
        p99_ms = metrics["gauges"].get("latency_p99_ms", 0.0)
        if spy is not None:
            spy.wait(30)
            names = thread_names(args.profile)
            print(f"CPU and wake-ups by thread at {args.rate} lines/s:")
            rows = []
            for tid, (used, switches) in per_thread1.items():
                used0, switches0 = per_thread0.get(tid, (0.0, 0))
                rows.append((100.0 * (used - used0) / args.seconds,
                             (switches - switches0) / args.seconds, tid))
            for share, wake, tid in sorted(rows, reverse=True):
                if share > 0 or wake > 0.5:
                    print(f"  {share:5.2f} %  {wake:6.1f}/s  {names.get(tid, f'thread {tid}')}")
        rss = 0.0
        for line in Path(f"/proc/{agent.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
        print(f"agent CPU idle: {idle_pct:.2f} % of one core, {idle_wake:.1f} wake-ups/s")
        print(f"agent CPU at {args.rate} lines/s: {busy_pct:.2f} % of one core, "
              f"{busy_wake:.1f} wake-ups/s, {batches_per_s:.1f} batches/s, agent-side p99 "
              f"{p99_ms:.0f} ms ({args.runtime})")
        print(f"RSS: {rss:.1f} MB")
        print("targets: idle <= 0.2 %, 100 lines/s <= 2 %")
        print(json.dumps({"benchmark": "agent_cpu", "runtime": args.runtime,
                          "idle_cpu_pct": round(idle_pct, 3),
                          "idle_wakeups_per_s": round(idle_wake, 1), "rate": args.rate,
                          "busy_cpu_pct": round(busy_pct, 3),
                          "busy_wakeups_per_s": round(busy_wake, 1),
                          "busy_batches_per_s": round(batches_per_s, 1),
                          "agent_p99_ms": round(p99_ms, 1), "rss_mb": round(rss, 1)}))
        return 0
    finally:
        agent.terminate()
        agent.wait(20)
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
