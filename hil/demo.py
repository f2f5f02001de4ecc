"""The quick-start demo: a local Mosquitto, the fleet server, and an agent following a
sample log, the site's pump PLC log and a sensor feed. Results and alerts are shown as
they arrive. The operator publishes the shipped model as v1; v1 does not know the PLC
vendor's German alarm texts (how many it gets right is measured from its results), so
the operator fine-tunes v2 on the site's labeled lines, publishes it (signed; a small
delta) and deploys it; the agent verifies, hot-swaps, trials and commits it while
results keep flowing, and v2's results on the same lines are measured again; the
operator judges some of the device's alerts (each verdict keeps the line with its true
label; the judged lines export as labelled data); the site's weekly alarm-chain test line
raises an alert, which the operator calls a false alarm and mutes on the device, so next
week's test line raises none; then a technician queries the device.

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

from hil.broker import Mosquitto
from hil.demo_operator import (
    judge_alerts,
    mute_a_false_alarm,
    operator,
    report_site_alarms,
    say,
    train_v2,
)
from hil.demo_site import agreement, live_feed
from hil.demo_traffic import DEVICE, ROOT, Feeder, Watcher
from hil.fleet import FleetServer, FleetSetup, setup_fleet
from hil.process import stop_process

MODEL = "nano-logs"


def agent_config(workdir: Path, broker: Mosquitto, fleet: FleetSetup, log: Path,
                 plc_log: Path) -> Path:
    config = workdir / "agent.toml"
    config.write_text(f"""device_id = "{DEVICE}"
state_dir = "{workdir / 'state'}"
metrics_interval_s = 5

[mqtt]
host = "127.0.0.1"
port = {broker.port}

[model]
slot = "logs"

[[sources]]
kind = "file"
path = "{log}"

[[sources]]
kind = "file"
path = "{plc_log}"

[[sources]]
kind = "mqtt"
name = "sensors"
topics = ["sensors/{DEVICE}/#"]

[ota]
metadata_url = "{fleet.url}/repo/metadata/"
target_base_url = "{fleet.url}/repo/targets/"
root_file = "{fleet.root_file}"

[ota.trial]
duration_s = 3
min_inferences = 8
timeout_s = 30
""")
    return config


def run(workdir: Path, seconds: float) -> int:
    from nanomodel import default_bundle_path

    say("starting a local Mosquitto broker")
    broker = Mosquitto(workdir / "broker").start()
    print(f"  mosquitto listening on 127.0.0.1:{broker.port}")
    say("starting the fleet server (keys made, repository signed: nanofleet keys init / repo "
        "init)")
    fleet = setup_fleet(workdir / "fleet", mqtt_port=broker.port)
    server = FleetServer(fleet).start()
    watcher: Watcher | None = None
    feeder: Feeder | None = None
    agent: subprocess.Popen[bytes] | None = None
    agent_log = open(workdir / "agent.log", "wb")  # noqa: SIM115 - closed below
    try:
        server.wait_mqtt()
        print(f"  fleet server on {fleet.url}; the device trusts {fleet.root_file.name} (root v1)")
        print(f"  web console: {fleet.url}/console (sign in with token {fleet.token})")
        say("the operator publishes the shipped model as v1 (signed with the targets key)")
        operator(fleet, "model", "publish", str(default_bundle_path()), "--targets-key",
                 str(fleet.targets_key), "--cache-dir", str(workdir / "operator-cache"))

        log, plc_log = workdir / "pump.log", workdir / "plc.log"
        log.write_text("")
        plc_log.write_text("")
        config = agent_config(workdir, broker, fleet, log, plc_log)
        watcher = Watcher(broker.port)
        say(f"starting the agent: nanofleet-agent run --config {config}")
        agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config",
                                  str(config)], stdout=agent_log, stderr=subprocess.STDOUT)
        cli = [sys.executable, "-m", "agent.cli", "query", "--config", str(config)]
        for _ in range(300):
            if subprocess.run(cli + ["status"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            print((workdir / "agent.log").read_text())
            return 1
        say("a device log, the pump PLC's log (its vendor writes German, abbreviated alarm "
            "texts) and a sensor feed start flowing (and keep flowing)")
        feeder = Feeder(log, plc_log, broker.port)
        time.sleep(seconds)
        feed = live_feed()
        alarm_texts = {line.text for line in feed if line.label != "normal"}
        watcher.wait_labelled(1, alarm_texts, 30)
        say("how v1 reads the PLC's alarm lines (measured from its results above)")
        v1_right = report_site_alarms(1, watcher.labels(1), feed)
        watcher.quiet = True
        say("the operator fine-tunes v2 on the site's labeled lines (head only) and "
            "publishes it")
        v2, rows = train_v2(workdir, fleet)
        print(f"  trained on {rows} labeled lines: the PLC's alarm history and sensor readings")
        operator(fleet, "model", "publish", str(v2), "--targets-key", str(fleet.targets_key),
                 "--cache-dir", str(workdir / "operator-cache"))
        say(f"the operator rolls v2 out to {DEVICE}; the agent verifies, swaps, trials, commits")
        created = operator(fleet, "rollout", "create", MODEL, "2", "--select", f"ids={DEVICE}",
                           "--canary", "1", "--soak", "0")
        print(f"  watch it: {fleet.url}/console/rollouts/{created.split()[2].rstrip(':')}")
        outcome = watcher.wait_ota(90)
        print(f"  update finished: {outcome}")
        watcher.quiet = False
        watcher.wait_labelled(2, alarm_texts, 30)
        say("how v2 reads the same lines (measured from its results above)")
        v2_right = report_site_alarms(2, watcher.labels(2), feed)
        same, both = agreement(watcher.labels(1), watcher.labels(2),
                               {line.text for line in feed})
        print(f"  the other lines (device log, sensors): v2 agrees with v1 on {same} of the "
              f"{both} that both labelled", flush=True)
        say("what the fleet server knows about the device")
        operator(fleet, "devices", "show", DEVICE)
        feeder.stop()
        feeder = None
        time.sleep(1.5)
        judge_alerts(fleet, workdir, feed)
        mute_a_false_alarm(fleet, cli, plc_log)

        say("a technician asks the device over MQTT (mosquitto_rr, MQTT v5 request/response)")
        rr = ["mosquitto_rr", "-V", "5", "-h", "127.0.0.1", "-p", str(broker.port),
              "-t", f"{ROOT}/query", "-e", f"{ROOT}/reply/demo", "-W", "10"]
        shown = " ".join(rr[:1] + rr[5:] + ["-m", "..."])
        print(f"  $ {shown}")
        out = subprocess.run(rr + ["-m", '{"cmd":"recent_alerts","args":{"limit":3}}'],
                             capture_output=True, text=True)
        for a in json.loads(out.stdout)["result"] if out.returncode == 0 else []:
            print(f"  recent alert: {a['item']['label']}: {a['item']['text'][:80]}")
        say("and with the local CLI: nanofleet-agent query models / classify (level=err: as a "
            "journal line its program logged at err would be scored)")
        for args in (["models"], ["classify", "29.11.2024 07:12:40;SPS1;A1201;Wicklungstemp. "
                                  "P3 zu hoch 127 Grad C"],
                     ["classify", "level=err", "checksum mismatch on block 7"]):
            out = subprocess.run(cli + args, capture_output=True, text=True)
            print("  " + out.stdout.strip().replace("\n", "\n  "))
        by_version = dict(sorted(watcher.results.items()))
        say(f"done: update {outcome}; results by model version {by_version}, alerts by model "
            f"version {dict(sorted(watcher.alerts.items()))}")
        return 0 if outcome == "committed" and by_version.get(2, 0) > 0 and \
            by_version.get(1, 0) > 0 and v2_right > v1_right else 1
    finally:
        if feeder is not None:
            feeder.stop()
        if agent is not None:
            stop_process(agent, 15)
        agent_log.close()
        if watcher is not None:
            watcher.close()
        server.stop()
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=5.0,
                   help="how long data flows before the update")
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
