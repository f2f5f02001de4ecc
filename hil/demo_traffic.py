"""The demo device's live MQTT traffic, each side on a thread of its own: the
:class:`Feeder` that writes the sample log and the PLC's log and publishes sensor readings
for the agent to follow, and the :class:`Watcher` that prints and counts what the device
publishes, as an operator's dashboard would.

Separate from the story's steps (:mod:`hil.demo`, :mod:`hil.demo_operator`) because it
runs beside them the whole time, and it names the demo's device and its topics.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hil.demo_site import live_feed

DATA = Path(__file__).parent / "data"
DEVICE = "pump-07"
ROOT = f"nanofleet/v1/dev/{DEVICE}"
OTA_DONE = ("committed", "failed", "rolled_back")


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
