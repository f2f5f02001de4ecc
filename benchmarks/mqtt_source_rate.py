"""Sensor messages through an MQTT source, both ways of acknowledging them.

The real agent, a real Mosquitto and a QoS 1 publisher that sends ``--messages``
one-line messages as fast as the broker takes them; the figure is messages per second
until every result arrived. Two sources, alternating:

- on the agent's own connection (a source without ``host``): paho acknowledges each
  message on arrival;
- on a connection of its own (``host`` set): a message is acknowledged only once its
  line is committed to the spool (agent/sources/mqtt_topic.py), so at most
  ``receive_maximum`` wait unacknowledged — the question is whether that costs rate.

Prints one line per run and the ratio of the medians (the machine is shared: compare
the two, not the absolute figures).

    .venv/bin/python benchmarks/mqtt_source_rate.py [--messages 5000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hil.broker import Mosquitto  # noqa: E402
from tests.support.agent_proc import AgentProcess, write_config  # noqa: E402
from tests.support.mqtt_client import Collector  # noqa: E402

DEV = "bench-01"


def one_run(own_connection: bool, messages: int) -> float:
    """Messages per second through one agent whose sensor source acknowledges as asked."""
    work = Path(tempfile.mkdtemp(prefix="nf-mqtt-rate-"))
    broker = Mosquitto(work / "broker").start()
    host = f'host = "127.0.0.1"\nport = {broker.port}\n' if own_connection else ""
    cfg = write_config(work / "agent.toml", DEV, work / "state", broker.port,
                       f'[[sources]]\nkind = "mqtt"\nname = "sensors"\n{host}topics = ["s/#"]\n')
    agent = AgentProcess(cfg, work / "state").start()
    results = Collector(broker.port, f"nanofleet/v1/dev/{DEV}/results/#")
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
    pub.max_inflight_messages_set(100)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        deadline = time.monotonic() + 20
        while not [s for s in agent.query("sources")["result"] if s["subscribed"]]:
            if time.monotonic() > deadline:
                raise TimeoutError("the sensor source did not subscribe")
            time.sleep(0.05)
        started = time.monotonic()
        for i in range(messages):
            pub.publish("s/pump", f"reading {i} pressure 2.1 bar ok", qos=1)
        results.wait_for(lambda ms: sum(len(json.loads(m.payload)["items"]) for m in ms)
                         >= messages, timeout=600)
        return messages / (time.monotonic() - started)
    finally:
        pub.loop_stop()
        results.close()
        agent.stop()
        broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for own in (False, True):
            rate = one_run(own, args.messages)
            rates[own].append(rate)
            what = ("own connection, acknowledged when committed" if own
                    else "agent's connection, acknowledged on arrival")
            print(f"{what}: {rate:,.0f} messages/s", flush=True)
    ratio = statistics.median(rates[True]) / statistics.median(rates[False])
    print(f"acknowledged when committed / on arrival: {ratio:.2f}")


if __name__ == "__main__":
    main()
