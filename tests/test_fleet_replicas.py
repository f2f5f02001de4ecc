"""Two fleet-server replicas (real `nanofleet server run` processes) against one real
PostgreSQL and one Mosquitto, configured alike except their MQTT client id and HTTP port.

Proves: device reports reach the replicas through the MQTT v5 shared subscription, each
one processed by exactly one of them, and the inventory is complete and consistent (no
loss, no duplicate, the newest status wins although consecutive statuses of a device go
to different replicas); either replica's API answers the same; artifact-stream requests
are split too; a second process with a replica's client id is refused; the replica
holding the rollout lease is stopped (SIGTERM, then kill -9) and the other one takes the
rollout over within the lease time and completes it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from contract import topics
from contract.artifacts import HEADER_PROPERTY, ArtifactChunk, ArtifactRequest
from contract.messages import Metrics, ModelInfo, OtaEvent, Status
from fleet_server.config import ArtifactSettings, MqttSettings, config_toml
from fleet_server.db import Database
from fleet_server.desired import DesiredStates
from fleet_server.device_reports import Report
from fleet_server.device_views import list_devices
from fleet_server.inventory import ingest
from fleet_server.mqtt_bridge import MqttBridge
from fleet_server.replicas import Holder, Sharing, holder_is_alive, must_watch, sharing_problem
from hil import postgres
from hil.fleet import FleetServer, FleetSetup, setup_fleet
from hil.simdevice import Behaviour, SimFleet, make_devices
from nanomodel import default_bundle_path
from tests.support.fleet_cli import nf
from tests.support.mosquitto import Mosquitto, free_port
from tests.support.mqtt_client import Collector
from tests.support.rollout_rig import (
    MODEL,
    api,
    client_args,
    publish,
    relabeled,
    wait_devices,
    wait_rollout,
)

GROUP = f"fleet-{uuid.uuid4().hex[:8]}"
LEASE_S = 3.0
FAST = Behaviour(step_s=0.01, trial_s=0.05)
STARTED_AT = 1_000.0  # one agent run: its seq orders its statuses (inventory.status_is_newer)


@dataclasses.dataclass
class Cluster:
    setups: dict[str, FleetSetup]  # client id -> its setup (config file, URL)
    servers: dict[str, FleetServer]
    db_url: str

    def health(self, name: str) -> dict[str, Any]:
        return self.servers[name].health()

    def start(self, name: str) -> None:
        server = FleetServer(self.setups[name])
        server.log_path = self.setups[name].workdir / f"{name}.log"
        self.servers[name] = server.start()
        server.wait_mqtt()

    def lease_owner(self) -> str:
        name = next(iter(self.servers))
        lease = api(self.setups[name], "GET", "/api/v1/replicas").json()["rollout_lease"]
        assert lease is not None
        return str(lease["owner"])


def replica_setup(base: FleetSetup, client_id: str) -> FleetSetup:
    """``base`` with another client id and HTTP port, in its own config file."""
    port = free_port() if client_id != "fleet-a" else base.config.bind_port
    config = base.config.model_copy(update={
        "bind_port": port,
        "mqtt": base.config.mqtt.model_copy(update={"client_id": client_id,
                                                    "shared_group": GROUP})})
    path = base.workdir / f"{client_id}.toml"
    path.write_text(config_toml(config), encoding="utf-8")
    return dataclasses.replace(base, config_path=path, config=config)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    pg = postgres.Postgres().start()
    broker = Mosquitto(tmp_path_factory.mktemp("replica-broker")).start()
    work = tmp_path_factory.mktemp("replicas")
    base = setup_fleet(work, mqtt_port=broker.port, database_url=pg.url, rollout_tick_s=0.1,
                       rollout_lease_s=LEASE_S, artifacts=ArtifactSettings(shared_group=GROUP))
    c = Cluster({name: replica_setup(base, name) for name in ("fleet-a", "fleet-b")}, {},
                pg.url)
    try:
        for name in c.setups:
            c.start(name)
        a = c.setups["fleet-a"]
        for version in (1, 2, 3):
            publish(a, default_bundle_path() if version == 1
                    else relabeled(version, work / f"v{version}.nfb"))
        yield c
    finally:
        for server in c.servers.values():
            server.stop()
        broker.stop()
        pg.stop()


def mqtt_counters(c: Cluster) -> dict[str, dict[str, Any]]:
    return {name: c.health(name)["mqtt"] for name in c.servers}


def device_reports(device_id: str, rounds: int) -> list[list[tuple[str, str]]]:
    """Per round, one status (live version = round), one OTA event and one metrics."""
    out = []
    for r in range(1, rounds + 1):
        info = ModelInfo(slot="logs", name=MODEL, version=r, label=f"v{r}", runtime="sim",
                         sha256="0" * 64)
        status = Status(seq=3 * r, device_id=device_id, state="online", agent_version=f"a{r}",
                        started_at=STARTED_AT, models=[info], health="ok")
        event = OtaEvent(seq=3 * r + 1, device_id=device_id, slot="logs", state="downloading",
                         to_version=r, ts=1000.0 + r)
        metrics = Metrics(seq=3 * r + 2, device_id=device_id, uptime_s=r, counters={"n": r},
                          gauges={}, ts=1000.0 + r)
        out.append([(topics.status(device_id), status.model_dump_json()),
                    (topics.ota(device_id), event.model_dump_json()),
                    (topics.metrics(device_id), metrics.model_dump_json())])
    return out


def test_reports_are_split_and_the_inventory_is_complete_and_the_same_on_both(
        cluster: Cluster) -> None:
    c = cluster
    devices, rounds = [f"split-{i:02d}" for i in range(25)], 8
    before = mqtt_counters(c)
    sender = Collector(c.setups["fleet-a"].config.mqtt.port, topics="nanofleet/v1/none")
    try:
        plans = {d: device_reports(d, rounds) for d in devices}
        for r in range(rounds):
            # Round-robin over 2 members and an odd number of messages per device and
            # round: a device's consecutive statuses land on different replicas. A
            # device's statuses are apart in time (here 100 ms), as real ones are.
            for d in devices:
                for topic, payload in plans[d][r]:
                    sender.publish(topic, payload)
            time.sleep(0.1)
    finally:
        sender.close()
    total = len(devices) * rounds * 3
    deadline = time.monotonic() + 15
    while True:
        now = mqtt_counters(c)
        ingested = {n: now[n]["ingested"] - before[n]["ingested"] for n in now}
        if sum(ingested.values()) >= total or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    received = {n: now[n]["received"] - before[n]["received"] for n in now}
    print(f"\nreports: {total} sent, received per replica {received}, ingested {ingested}")
    assert received == ingested and sum(ingested.values()) == total  # each once, none lost
    assert all(n > total / 4 for n in ingested.values()), ingested  # both did a share
    assert all(now[n]["rejected"] == before[n]["rejected"] for n in now)

    answers = {name: api(s, "GET", "/api/v1/devices").json()["devices"]
               for name, s in c.setups.items()}
    assert answers["fleet-a"] == answers["fleet-b"]
    listed = {d["device_id"]: d for d in answers["fleet-a"] if d["device_id"] in devices}
    assert sorted(listed) == devices
    for d in listed.values():  # the newest of everything, whichever replica stored it
        assert d["models"]["logs"]["version"] == rounds and d["agent_version"] == f"a{rounds}"
        assert d["last_ota"]["to_version"] == rounds
    details = {name: api(s, "GET", "/api/v1/devices/split-07", params={"events": 100}).json()
               for name, s in c.setups.items()}
    assert details["fleet-a"] == details["fleet-b"]
    assert details["fleet-a"]["metrics"]["counters"] == {"n": rounds}
    assert sorted(e["to_version"] for e in details["fleet-a"]["events"]) == list(
        range(1, rounds + 1))  # every event stored once

    views = {name: api(s, "GET", "/api/v1/replicas").json() for name, s in c.setups.items()}
    for name, view in views.items():
        assert view["answered_by"] == name
        assert {r["client_id"] for r in view["replicas"] if r["alive"]} == set(c.setups)
    owners = {(v["rollout_lease"] or {}).get("owner") for v in views.values()}
    assert len(owners) == 1 and owners <= set(c.setups)  # one driver, seen alike by both


def test_a_status_stored_late_does_not_undo_a_newer_one(cluster: Cluster) -> None:
    """Two replicas storing statuses of one device at the same time, on the real database:
    one is behind (a long ingest queue) and stores an older status after the other stored
    a newer one; and two transactions on one device row at once."""
    db = Database(cluster.db_url)
    now = time.time()

    def status(version: int, received_at: float) -> Report:
        info = ModelInfo(slot="logs", name=MODEL, version=version, label=f"v{version}",
                         runtime="sim", sha256="0" * 64)
        return Report("late-01", "status", Status(seq=version, device_id="late-01",
                                                  state="online", models=[info]), received_at)

    def live_version() -> int:
        with db.session() as session:
            [device] = [d for d in list_devices(session) if d["device_id"] == "late-01"]
        return int(device["models"]["logs"]["version"])

    try:
        _ingest_in(db, [status(1, now)])
        _ingest_in(db, [status(3, now + 2)])
        _ingest_in(db, [status(2, now + 1)])  # received before v3, stored after it
        assert live_version() == 3

        # One replica holds the row (v4 decided, not committed); the other, with v5,
        # waits for it instead of deciding on what it read before v4 was committed.
        first = db.session()
        holder = first.__enter__()
        ingest(holder, [status(4, now + 3)])
        second = threading.Thread(target=_ingest_in, args=(db, [status(5, now + 4)]))
        second.start()
        time.sleep(0.3)
        assert second.is_alive()  # waiting for the row lock
        first.__exit__(None, None, None)
        second.join(5)
        assert live_version() == 5
    finally:
        db.dispose()


class RacingPublisher:
    """A real broker connection whose publish lets "another replica" stage and publish a
    newer revision of the same document first (the race between two replicas)."""

    def __init__(self, bridge: MqttBridge, before: Callable[[], None]) -> None:
        self.bridge, self.before = bridge, before

    def publish_retained_many(self, messages: Sequence[tuple[str, bytes]],
                              timeout: float) -> list[bool]:
        before, self.before = self.before, lambda: None
        before()
        return self.bridge.publish_retained_many(messages, timeout)


def test_a_desired_state_overtaken_by_another_replica_is_sent_again(cluster: Cluster) -> None:
    db = Database(cluster.db_url)
    port = cluster.setups["fleet-a"].config.mqtt.port
    bridge = MqttBridge(MqttSettings(port=port, client_id="race-publisher",
                                     shared_group="race-unused"), lambda reports: None)
    bridge.start()
    try:
        assert bridge.wait_connected(10)
        other = DesiredStates(db, bridge, metadata_url=None, target_base_url=None)

        def other_replica_moves_on() -> None:
            with db.session() as session:
                other.stage(session, ["race-01"], slot="logs", model=MODEL, version=2)
            other.publish(["race-01"])  # revision 2 reaches the broker first

        mine = DesiredStates(db, RacingPublisher(bridge, other_replica_moves_on),
                             metadata_url=None, target_base_url=None)
        with db.session() as session:
            mine.stage(session, ["race-01"], slot="logs", model=MODEL, version=1)
        mine.publish(["race-01"])  # read its revision, published it after the newer one
        retained = Collector(port, topics=topics.desired("race-01"))
        try:
            [doc] = retained.wait_for(lambda m: len(m) >= 1)
        finally:
            retained.close()
        with db.session() as session:
            newest = other.current(session, "race-01")
            assert newest is not None and newest.document["slots"]["logs"]["version"] == 2
        assert json.loads(doc.payload)["revision"] == newest.revision  # the newest, sent again
    finally:
        bridge.stop()
        db.dispose()


def _ingest_in(db: Database, reports: list[Report]) -> None:
    with db.session() as session:
        ingest(session, reports)


def test_artifact_requests_are_split_and_each_answered_once(cluster: Cluster) -> None:
    c = cluster
    before = {n: c.health(n)["artifacts"]["requests"] for n in c.servers}
    chunks = Collector(c.setups["fleet-a"].config.mqtt.port,
                       topics="nanofleet/v1/dev/+/artifacts/chunk/#")
    count = 40
    try:
        for i in range(count):
            req = ArtifactRequest(transfer=f"t{i:03d}", path="metadata/timestamp.json",
                                  offset=0, chunks=4, chunk_size=64 * 1024)
            # One request per device: a device's third at once may be answered "busy"
            # (per_device_pending), which is not what this test is about.
            chunks.publish(topics.artifact_requests(f"art-{i}"), req.model_dump_json())
        chunks.wait_for(lambda m: len(m) >= count)
        time.sleep(0.3)  # a second answer to any request would show up by now
        got = chunks.wait_for(lambda m: True)
    finally:
        chunks.close()
    headers = [ArtifactChunk.model_validate_json(
        dict(getattr(m.properties, "UserProperty", []))[HEADER_PROPERTY]) for m in got]
    assert all(h.error is None and h.final for h in headers), headers[:3]
    assert sorted(h.transfer for h in headers) == [f"t{i:03d}" for i in range(count)]
    served = {n: c.health(n)["artifacts"]["requests"] - before[n] for n in c.servers}
    print(f"\nartifact requests: {count} sent, served per replica {served}")
    assert sum(served.values()) == count and all(n > 0 for n in served.values()), served


def start_misfit(c: Cluster, name: str, **changes: Any) -> str:
    """Start a third process with ``changes`` to fleet-a's config; its refusal message."""
    base = c.setups["fleet-a"]
    config = base.config.model_copy(update={"bind_port": free_port(), **changes})
    path = base.workdir / f"{name}.toml"
    path.write_text(config_toml(config), encoding="utf-8")
    server = FleetServer(dataclasses.replace(base, config_path=path, config=config))
    server.log_path = base.workdir / f"{name}.log"
    with pytest.raises(RuntimeError, match=r"fleet server exited \(3\)") as err:
        server.start()
    return str(err.value)


def test_a_process_with_a_running_replicas_client_id_or_other_groups_is_refused(
        cluster: Cluster) -> None:
    c = cluster
    before = c.health("fleet-a")["mqtt"]
    message = start_misfit(c, "twin")
    assert "'fleet-a' is in use by another running replica" in message
    after = c.health("fleet-a")["mqtt"]  # the twin never reached the broker
    assert after["connects"] == before["connects"] and after["session_takeovers"] == 0
    assert after["connected"]

    mqtt = c.setups["fleet-a"].config.mqtt
    message = start_misfit(c, "stray", mqtt=mqtt.model_copy(update={
        "client_id": "fleet-c", "shared_group": "fleet-other"}))
    assert "shared_group differ from those of running replica(s) fleet-a, fleet-b" in message
    message = start_misfit(c, "alone", mqtt=mqtt.model_copy(update={
        "client_id": "fleet-d", "shared_group": None}))
    assert "mqtt.shared_group is not set but replica(s) fleet-a, fleet-b already run" in message


def test_replica_rules() -> None:
    live = Holder("i1", 100.0)
    assert must_watch(live, 101.0, stale_after=3.0) and not must_watch(live, 104.0, 3.0)
    assert not must_watch(None, 101.0, 3.0)
    assert holder_is_alive(live, Holder("i1", 101.0)) and holder_is_alive(live, Holder("i2", 100.0))
    assert not holder_is_alive(live, Holder("i1", 100.0)) and not holder_is_alive(live, None)

    mine = Sharing("g", "g", takes_reports=True, serves_artifacts=True)
    api_only = Sharing(None, None, takes_reports=False, serves_artifacts=False)
    assert sharing_problem(mine, {}) is None
    assert sharing_problem(mine, {"b": mine.digest()}) is None
    assert sharing_problem(mine, {"b": ""}) is None  # an API-only replica takes no work
    assert sharing_problem(api_only, {"b": mine.digest()}) is None
    other = Sharing("g", "h", takes_reports=True, serves_artifacts=True)
    assert "differ from those of running replica(s) b" in str(sharing_problem(
        other, {"b": mine.digest()}))
    ungrouped = Sharing(None, "g", takes_reports=True, serves_artifacts=True)
    assert "mqtt.shared_group is not set" in str(sharing_problem(
        ungrouped, {"b": mine.digest()}))
    assert len(mine.digest()) == 64  # a digest: the group names are not stored


def create_rollout(setup: FleetSetup, version: int, group: str) -> str:
    code, out, err = nf("rollout", "create", MODEL, str(version), "--select", f"group={group}",
                        "--canary", "2", "--waves", "50,100", "--soak", "1.5",
                        "--max-failures", "1", "--success", "95%", *client_args(setup))
    assert code == 0, err
    match = re.search(r"created rollout (r-[0-9a-f]+)", out)
    assert match, out
    return match.group(1)


def wait_lease(c: Cluster, name: str, since: float) -> float:
    """Seconds from ``since`` until replica ``name`` holds the rollout lease."""
    deadline = time.monotonic() + 3 * LEASE_S
    while not c.health(name)["rollouts"]["lease_held"]:
        assert time.monotonic() < deadline, f"{name} did not take the lease over"
        time.sleep(0.05)
    return time.monotonic() - since


@pytest.mark.parametrize("how", ["sigterm", "kill"])
def test_the_other_replica_takes_over_a_rollout_when_the_driver_stops(
        cluster: Cluster, how: str) -> None:
    c = cluster
    version = 2 if how == "sigterm" else 3
    sims = SimFleet(c.setups["fleet-a"].config.mqtt.port, make_devices(
        "roll-", 20, version=version - 1, behaviour=lambda i: dataclasses.replace(FAST))).start()
    try:
        sims.wait_connected()
        ids = list(sims.devices)
        wait_devices(c.setups["fleet-a"], ids, lambda d: d["state"] == "online")
        code, _, err = nf("devices", "tag", *ids, "--group", "roll", *client_args(
            c.setups["fleet-a"]))
        assert code == 0, err
        driver = c.lease_owner()
        survivor = next(n for n in c.setups if n != driver)
        rid = create_rollout(c.setups[survivor], version, "roll")  # asked on the other one
        # Stopped while the canary soaks: its devices' reports are all in, the driver
        # alone knows to start the next wave.
        wait_rollout(c.setups[survivor], rid,
                     lambda r: r["stages"][0]["status"] == "soaking", what="canary soaking")
        stopped_at = time.monotonic()
        stopped = c.servers.pop(driver)
        if how == "kill":
            assert stopped.proc is not None
            stopped.proc.kill()
            stopped.proc.wait()
        stopped.stop()  # SIGTERM (a killed one: only closes its log)
        took = wait_lease(c, survivor, stopped_at)
        r = wait_rollout(c.setups[survivor], rid, lambda r: r["status"] == "completed",
                         timeout=20, what="completed")
        done = time.monotonic() - stopped_at
        print(f"\n{how} of {driver}: {survivor} drove the rollout after {took:.2f} s "
              f"(lease {LEASE_S} s), completed {done:.2f} s after the stop")
        assert took <= LEASE_S + 1.0
        assert r["counts"]["committed"] == 20
        assert {v for _, v in sims.snapshot().values()} == {version}
        wait_devices(c.setups[survivor], ids,
                     lambda d: d["models"]["logs"]["version"] == version, timeout=5)
        replicas = api(c.setups[survivor], "GET", "/api/v1/replicas").json()
        assert replicas["rollout_lease"]["owner"] == survivor
        alive = {x["client_id"] for x in replicas["replicas"] if x["alive"]}
        assert driver not in alive or how == "kill"  # a killed one goes stale by itself
    finally:
        sims.stop()
    c.start(driver)  # back (after a kill: it takes its stale registration over)
    assert c.health(driver)["replica"]["client_id"] == driver


def test_replica_health_shows_its_identity(cluster: Cluster) -> None:
    for name in cluster.servers:
        health = cluster.health(name)
        assert health["ok"] and health["replica"]["client_id"] == name
        assert health["mqtt"]["connected"] and health["artifacts"]["connected"]
        assert json.dumps(health).count(GROUP) == 0  # the group name is not public
