"""A real fleet server and Mosquitto that devices' alerts reach over MQTT: what the tests
of operators' verdicts (REST API, CLI, console) stand on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from contract.messages import Alert, ResultItem
from contract.mutes import MuteList, mutes_topic
from contract.topics import alerts
from hil.fleet import FleetServer, FleetSetup, setup_fleet
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector


@contextmanager
def alert_fleet_processes(workdir: Path) -> Iterator[tuple[FleetSetup, Mosquitto, FleetServer]]:
    """A broker and a `nanofleet server run` process linked to it, both stopped afterwards;
    with the server's handle, for tests that stop and start it."""
    broker = Mosquitto(workdir / "broker").start()
    try:
        setup = setup_fleet(workdir / "fleet", mqtt_port=broker.port)
        server = FleetServer(setup).start()
        try:
            server.wait_mqtt()
            yield setup, broker, server
        finally:
            server.stop()
    finally:
        broker.stop()


@contextmanager
def alert_fleet(workdir: Path) -> Iterator[tuple[FleetSetup, Mosquitto]]:
    """A broker and a `nanofleet server run` process linked to it, stopped afterwards."""
    with alert_fleet_processes(workdir) as (setup, broker, _):
        yield setup, broker


def api(setup: FleetSetup, method: str, path: str, token: str | None = None,
        **kwargs: Any) -> httpx.Response:
    """The operator API, with the fleet's own token unless another is given."""
    return httpx.request(method, setup.url + path, timeout=30, headers={
        "Authorization": f"Bearer {token or setup.token}"}, **kwargs)


def alert(device: str, msg_id: str, seq: int, source: str, text: str, label: str,
          reason: str | None = None, anomaly: float = 0.95) -> Alert:
    """An alert as an agent sends it."""
    item = ResultItem(source=source, ts=1_800_000_000.0 + seq, text=text, label=label,
                      score=0.9, anomaly=anomaly)
    return Alert(msg_id=msg_id, seq=seq, device_id=device, slot="logs", model_version=1,
                 item=item, reason=reason or f"label {label} >= 0.80")


def send_alerts(broker: Mosquitto, messages: list[Alert]) -> None:
    """Publish the alerts on their devices' topics (one client: the broker's ACL-free test
    config lets it speak for several devices)."""
    sender = Collector(broker.port, ["nanofleet/v1/dev/test-sender/nothing"])
    try:
        for message in messages:
            sender.publish(alerts(message.device_id), message.model_dump_json())
    finally:
        sender.close()


def wait_alerts(setup: FleetSetup, count: int, device: str | None = None,
                timeout: float = 15.0) -> list[dict[str, Any]]:
    """The server's alert views once it lists ``count`` of them (of ``device``)."""
    params = {"device": device, "limit": 1000} if device else {"limit": 1000}
    deadline = time.monotonic() + timeout
    while True:
        listed: list[dict[str, Any]] = api(setup, "GET", "/api/v1/alerts",
                                            params=params).json()["alerts"]
        if len(listed) >= count or time.monotonic() > deadline:
            return listed
        time.sleep(0.2)


def retained(broker: Mosquitto, device: str, timeout: float = 10.0) -> MuteList:
    """The list the broker holds for ``device``, read as an agent that just subscribed.

    A reader that subscribes while the server is still publishing (it re-publishes every
    list after a reconnect, on its own thread) gets that publish live, without the retain
    flag: it reads once more, and the broker must then hold the list retained."""
    for _attempt in range(2):
        reader = Collector(broker.port, [mutes_topic(device)])
        try:
            got = reader.wait_for(lambda ms: bool(ms), timeout)
        finally:
            reader.close()
        if got[0].retain:
            break
    assert got[0].retain, "a mute list is published retained"
    return MuteList.model_validate_json(got[0].payload)
