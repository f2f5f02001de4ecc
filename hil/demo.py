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
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hil.broker import Mosquitto
from hil.demo_site import (
    SiteLine,
    agreement,
    labeled_history,
    live_feed,
    score_alarm_lines,
    sensor_readings,
)
from hil.fleet import FleetServer, FleetSetup, setup_fleet
from hil.process import stop_process

DATA = Path(__file__).parent / "data"
DEVICE = "pump-07"
ROOT = f"nanofleet/v1/dev/{DEVICE}"
MODEL = "nano-logs"
OTA_DONE = ("committed", "failed", "rolled_back")


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


class Watcher:
    """Prints what the device publishes, as an operator's dashboard would."""

    def __init__(self, port: int) -> None:
        self.results: Counter[int] = Counter()  # model version -> results
        self.alerts: Counter[int] = Counter()  # model version -> alerts
        self.ota_states: list[str] = []
        self.labelled: dict[int, dict[str, str]] = {}  # model version -> text -> label
        self.quiet = False  # while the model is swapped: count results, print OTA only
        self.lock = threading.Lock()
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
            with self.lock:
                self.results[doc["model_version"]] += len(doc["items"])
                seen = self.labelled.setdefault(doc["model_version"], {})
                seen.update((item["text"], item["label"]) for item in doc["items"])
            if not self.quiet:
                for item in doc["items"]:
                    print(f"  result  v{doc['model_version']} {item['label']:<9} "
                          f"{item['score']:.2f}  {item['text'][:80]}")
        elif kind == "alerts":
            with self.lock:
                self.alerts[doc["model_version"]] += 1
            if not self.quiet:
                print(f"  \033[31mALERT\033[0m   {doc['reason']}: {doc['item']['text'][:80]}")
        elif kind == "status":
            models = ", ".join(f"{m['name']} v{m['version']}" for m in doc.get("models", []))
            print(f"  status  {doc['state']} (agent {doc.get('agent_version')}; {models})")
        elif kind == "ota":
            with self.lock:
                self.ota_states.append(doc["state"])
            extra = " ".join(str(x) for x in (
                doc.get("artifact") or "", f"{doc['bytes_downloaded']} B"
                if doc.get("bytes_downloaded") else "", doc.get("reason") or "") if x)
            print(f"  \033[36mOTA\033[0m     {doc['state']:<14} v{doc.get('from_version')} -> "
                  f"v{doc.get('to_version')}  {extra}  (results so far: "
                  f"{dict(sorted(self.results.items()))})", flush=True)
        elif kind == "desired":
            slots = ", ".join(f"{s}={m['model']} v{m['version']}"
                              for s, m in doc["slots"].items())
            print(f"  desired {slots} (revision {doc['revision']}, retained)")

    def wait_ota(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                done = [s for s in self.ota_states if s in OTA_DONE]
            if done:
                return done[-1]
            time.sleep(0.2)
        return None

    def labels(self, version: int) -> dict[str, str]:
        """Line text -> the label ``version`` gave it, for every line it labelled so far."""
        with self.lock:
            return dict(self.labelled.get(version, {}))

    def wait_labelled(self, version: int, texts: set[str], timeout: float) -> None:
        """Until ``version`` has labelled all of ``texts`` (the feeds cycle, so each line
        comes round within seconds) or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        while not texts <= self.labels(version).keys() and time.monotonic() < deadline:
            time.sleep(0.2)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Feeder:
    """Appends the sample log and the PLC's log and publishes sensor readings, over and
    over, until stopped."""

    def __init__(self, log: Path, plc_log: Path, port: int, period: float = 0.3) -> None:
        self.log, self.plc_log, self.period = log, plc_log, period
        self.lines = (DATA / "pump.log").read_text().splitlines()
        self.plc_lines = [line.text for line in live_feed()]
        self.readings = (DATA / "sensors.txt").read_text().splitlines()
        self.sensor = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="demo-sensor",
                                  protocol=mqtt.MQTTv5)
        self.sensor.connect("127.0.0.1", port)
        self.sensor.loop_start()
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(self.period):
            with open(self.log, "a") as f:
                f.write(self.lines[i % len(self.lines)] + "\n")
            with open(self.plc_log, "a", encoding="utf-8") as f:
                f.write(self.plc_lines[i % len(self.plc_lines)] + "\n")
            if i % 3 == 0:
                reading = self.readings[(i // 3) % len(self.readings)]
                self.sensor.publish(f"sensors/{DEVICE}/pump", reading, qos=1)
            i += 1
            self.written = i

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sensor.loop_stop()
        self.sensor.disconnect()


def operator(fleet: FleetSetup, *args: str, show: bool = True) -> str:
    """Run a `nanofleet` command as the operator would; print it and its output."""
    shown = " ".join(a if len(a) < 60 else "…/" + Path(a).name for a in args)
    print(f"  $ nanofleet {shown}")
    out = subprocess.run([sys.executable, "-m", "fleet_server.cli", *args],
                         capture_output=True, text=True, env=fleet.cli_env())
    if out.returncode != 0:
        raise RuntimeError(f"nanofleet {shown} failed:\n{out.stdout}{out.stderr}")
    if show:
        print("    " + out.stdout.strip().replace("\n", "\n    "))
    return out.stdout


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


def train_v2(workdir: Path, fleet: FleetSetup) -> tuple[Path, int]:
    """Fine-tune the shipped model, head only, on the technician's labeled lines: the
    PLC's alarm history and the pump sensors' readings (other days, pumps and values than
    the live feed). The corpus mix (automatic) keeps what v1 knew about other lines."""
    from nanomodel import default_bundle_path

    rows = labeled_history(300, 7) + sensor_readings(100, 8)
    data = workdir / "site-labeled.jsonl"
    data.write_text("".join(json.dumps({"text": r.text, "label": r.label}, ensure_ascii=False)
                            + "\n" for r in rows), encoding="utf-8")
    v2 = workdir / "nano-logs-v2.nfb"
    operator(fleet, "model", "train", "--base", str(default_bundle_path()), "--head-only",
             "--data", str(data), "--out", str(v2), "--quiet")
    return v2, len(rows)


def report_site_alarms(version: int, labelled: dict[str, str], feed: list[SiteLine]) -> int:
    """Print how ``version`` labelled the PLC's alarm lines; return how many were right."""
    result = score_alarm_lines(labelled, feed)
    given = ", ".join(f"{label} x{n}" for label, n in sorted(result.given.items()))
    print(f"  v{version} labelled {result.right} of {result.seen} site alarm lines correctly "
          f"(labels it gave them: {given or 'none yet'})", flush=True)
    return result.right


def judge_alerts(fleet: FleetSetup, workdir: Path, feed: list[SiteLine]) -> None:
    """The operator says which of the device's PLC alerts were right (the site's labels
    know): each verdict keeps the line with its true label, for the next fine-tune."""
    say("the operator judges the device's alerts; the judged lines export as labelled data")
    truth = {line.text: line.label for line in feed}
    operator(fleet, "alerts", "shapes", "--device", DEVICE, "--limit", "5")  # what repeats
    operator(fleet, "alerts", "list", "--device", DEVICE, "--limit", "4")
    listed = json.loads(operator(fleet, "alerts", "list", "--device", DEVICE, "--limit", "200",
                                 "--json", show=False))["alerts"]
    judged = [a for a in listed if a["text"] in truth][:3]
    for a in judged:
        verdict = "false-alarm" if truth[a["text"]] == "normal" else "right"
        label = [] if verdict == "false-alarm" or truth[a["text"]] == a["label"] else \
            ["--label", truth[a["text"]]]
        operator(fleet, "alerts", "verdict", str(a["id"]), verdict, *label)
    operator(fleet, "alerts", "export", "--device", DEVICE, "--with-source", "--out",
             str(workdir / "judged.jsonl"))


def _query(cli: list[str], *args: str) -> Any:
    """The ``result`` of ``nanofleet-agent query ARGS --json``, or None."""
    out = subprocess.run(cli + [*args, "--json"], capture_output=True, text=True)
    return json.loads(out.stdout).get("result") if out.returncode == 0 else None


# The PLC's own winding-temperature alarm, raised on purpose by the weekly test of the
# alarm chain ("Probealarm": test alarm): the model cannot know, the site does.
SELF_TEST = "{day};SPS1;A1201;Wicklungstemp. P3 zu hoch {n} Grad C (Probealarm)"


def mute_a_false_alarm(fleet: FleetSetup, cli: list[str], plc_log: Path) -> None:
    """The site tests its alarm chain every week and the device alerts on the test line: the
    operator calls it a false alarm and mutes its shape, and the next week's test line is
    classified and published but raises no alert (a verdict alone only teaches the next
    model)."""
    say("every week the site tests its alarm chain; the device alerts on the test line")
    first = SELF_TEST.format(day="28.11.2024 09:00:21", n=127)
    with open(plc_log, "a", encoding="utf-8") as f:
        f.write(first + "\n")
    alert = None
    deadline = time.monotonic() + 15
    while alert is None and time.monotonic() < deadline:
        time.sleep(0.3)
        out = subprocess.run([sys.executable, "-m", "fleet_server.cli", "alerts", "list",
                              "--device", DEVICE, "--limit", "20", "--json"],
                             capture_output=True, text=True, env=fleet.cli_env())
        listed = json.loads(out.stdout)["alerts"] if out.returncode == 0 else []
        alert = next((a for a in listed if a["text"] == first), None)
    if alert is None:
        out = subprocess.run(cli + ["classify", first], capture_output=True, text=True)
        print("  (no alert on it this run: nothing to mute)\n  " + out.stdout.strip())
        return
    print(f"  alert {alert['id']}: {alert['label']} {alert['score']:.2f}: {first}")
    say("the operator calls it a false alarm and mutes its message shape on the device: quiet "
        "now, not after the next model")
    operator(fleet, "alerts", "verdict", str(alert["id"]), "false-alarm")
    operator(fleet, "alerts", "mute", str(alert["id"]), "--days", "30", "--reason",
             "weekly alarm chain test")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (_query(cli, "mutes") or {}).get("mutes"):
        time.sleep(0.2)
    out = subprocess.run(cli + ["mutes"], capture_output=True, text=True)
    print("  $ nanofleet-agent query mutes\n  " + out.stdout.strip().replace("\n", "\n  "))
    before = ((_query(cli, "metrics") or {}).get("counters") or {}).get("alerts_muted", 0)
    nxt = SELF_TEST.format(day="05.12.2024 09:00:24", n=131)
    with open(plc_log, "a", encoding="utf-8") as f:
        f.write(nxt + "\n")
    muted = before
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and muted == before:
        time.sleep(0.2)
        muted = ((_query(cli, "metrics") or {}).get("counters") or {}).get("alerts_muted", 0)
    print(f"  next week: {nxt}\n  classified and published, its alert held back "
          f"(alerts_muted {before} -> {muted})", flush=True)


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
