"""The quick-start demo: a local Mosquitto, an agent following a sample log and a
sensor feed, results and alerts shown as they arrive, and technician queries answered.

Run it with ``scripts/demo`` (which installs what it needs first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hil.broker import Mosquitto

DATA = Path(__file__).parent / "data"
DEVICE = "pump-07"
ROOT = f"nanofleet/v1/dev/{DEVICE}"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


class Watcher:
    """Prints what the device publishes, as an operator's dashboard would."""

    def __init__(self, port: int) -> None:
        self.results = 0
        self.alerts = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="demo-watcher",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe(f"{ROOT}/#", qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.removeprefix(ROOT + "/")
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if kind.startswith("results/"):
            for item in doc["items"]:
                self.results += 1
                print(f"  result  {item['label']:<9} {item['score']:.2f}  {item['text'][:90]}")
        elif kind == "alerts":
            self.alerts += 1
            print(f"  \033[31mALERT\033[0m   {doc['reason']}: {doc['item']['text'][:80]}")
        elif kind == "status":
            models = ", ".join(f"{m['name']} v{m['version']}" for m in doc.get("models", []))
            print(f"  status  {doc['state']} (agent {doc.get('agent_version')}; {models})")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def run(workdir: Path, seconds: float) -> int:
    say("starting a local Mosquitto broker")
    broker = Mosquitto(workdir / "broker").start()
    print(f"  mosquitto listening on 127.0.0.1:{broker.port}")
    log = workdir / "pump.log"
    log.write_text("")
    state = workdir / "state"
    config = workdir / "agent.toml"
    config.write_text(f"""device_id = "{DEVICE}"
state_dir = "{state}"
metrics_interval_s = 5

[mqtt]
host = "127.0.0.1"
port = {broker.port}

[[sources]]
kind = "file"
path = "{log}"

[[sources]]
kind = "mqtt"
name = "sensors"
topics = ["sensors/{DEVICE}/#"]
""")
    watcher = Watcher(broker.port)
    say(f"starting the agent: nanofleet-agent run --config {config}")
    agent_log = open(workdir / "agent.log", "wb")  # noqa: SIM115 - closed below
    agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(config)],
                             stdout=agent_log, stderr=subprocess.STDOUT)
    cli = [sys.executable, "-m", "agent.cli", "query", "--config", str(config)]
    try:
        for _ in range(300):
            r = subprocess.run(cli + ["status"], capture_output=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        else:
            print((workdir / "agent.log").read_text())
            return 1
        say("a device log and a sensor feed start flowing")
        sensor = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="demo-sensor",
                             protocol=mqtt.MQTTv5)
        sensor.connect("127.0.0.1", broker.port)
        sensor.loop_start()
        lines = (DATA / "pump.log").read_text().splitlines()
        readings = (DATA / "sensors.txt").read_text().splitlines()
        deadline = time.monotonic() + seconds
        i = 0
        while i < len(lines) or time.monotonic() < deadline:
            if i < len(lines):
                with open(log, "a") as f:
                    f.write(lines[i] + "\n")
            if i < len(readings):
                sensor.publish(f"sensors/{DEVICE}/pump", readings[i], qos=1)
            i += 1
            time.sleep(0.3)
            if i >= len(lines) and time.monotonic() >= deadline:
                break
        time.sleep(1.5)
        sensor.loop_stop()
        sensor.disconnect()

        say("a technician asks the device over MQTT (mosquitto_rr, MQTT v5 request/response)")
        rr = ["mosquitto_rr", "-V", "5", "-h", "127.0.0.1", "-p", str(broker.port),
              "-t", f"{ROOT}/query", "-e", f"{ROOT}/reply/demo", "-W", "10"]
        shown = " ".join(rr[:1] + rr[5:] + ["-m", "..."])
        print(f"  $ {shown}")
        out = subprocess.run(rr + ["-m", '{"cmd":"recent_alerts","args":{"limit":3}}'],
                             capture_output=True, text=True)
        for a in json.loads(out.stdout)["result"] if out.returncode == 0 else []:
            print(f"  recent alert: {a['item']['label']}: {a['item']['text'][:80]}")
        say("and with the local CLI: nanofleet-agent query models / classify")
        for args in (["models"], ["classify", "fan speed 0 rpm, cooling failure on inverter"]):
            out = subprocess.run(cli + args, capture_output=True, text=True)
            print("  " + out.stdout.strip().replace("\n", "\n  "))
        say(f"done: {watcher.results} results and {watcher.alerts} alerts published")
        return 0 if watcher.results > 0 else 1
    finally:
        agent.terminate()
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
        agent_log.close()
        watcher.close()
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=6.0, help="how long data flows")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="nanofleet-demo-"))
    os.chmod(workdir, 0o755)
    try:
        return run(workdir, args.seconds)
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
