"""Staged rollouts end to end: a real `nanofleet server run`, a real Mosquitto, real signed
releases, the operator CLI, and simulated devices (hil.simdevice: each its own MQTT
connection, publishing the agent's OTA event sequences).

Proves: a rollout halts by itself when its canaries fail their trial; abort rolls the
devices in trial back; pause holds the next wave until resume; an offline device catches
up when it returns; a transient failure is retried with backoff.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract import topics
from hil.fleet import FleetServer, FleetSetup, setup_fleet
from hil.simdevice import Behaviour, SimFleet, make_devices
from hil.simota import DeviceOta
from nanomodel import default_bundle_path
from tests.support.fleet_cli import nf
from tests.support.mosquitto import Mosquitto
from tests.support.rollout_rig import (
    MODEL,
    api,
    client_args,
    publish,
    relabeled,
    rollout,
    wait_devices,
    wait_rollout,
)

FAST = Behaviour(step_s=0.01, trial_s=0.05)


@pytest.fixture(scope="module")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path_factory.mktemp("rollout-broker")).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, mqtt_broker: Mosquitto) -> Iterator[
        FleetSetup]:
    work = tmp_path_factory.mktemp("rollout-fleet")
    setup = setup_fleet(work, mqtt_port=mqtt_broker.port, rollout_tick_s=0.1)
    server = FleetServer(setup).start()
    try:
        server.wait_mqtt()
        publish(setup, default_bundle_path())
        publish(setup, relabeled(2, work / "v2.nfb"))
        yield setup
    finally:
        server.stop()


def sims(broker: Mosquitto, setup: FleetSetup, prefix: str, count: int,
         behaviour: Behaviour | list[Behaviour] = FAST) -> tuple[SimFleet, list[str]]:
    def pick(i: int) -> Behaviour:
        return behaviour[i] if isinstance(behaviour, list) else Behaviour(**vars(behaviour))

    devices = make_devices(prefix, count, behaviour=pick)
    fleet = SimFleet(broker.port, devices).start()
    fleet.wait_connected()
    ids = [d.device_id for d in devices]
    wait_devices(setup, ids, lambda d: d["state"] == "online")
    return fleet, ids


def create(setup: FleetSetup, *args: str) -> str:
    code, out, err = nf("rollout", "create", MODEL, "2", *args, *client_args(setup))
    assert code == 0, err
    match = re.search(r"created rollout (r-[0-9a-f]+)", out)
    assert match, out
    return match.group(1)


def test_rollout_halts_by_itself_when_the_canaries_fail_their_trial(
        fleet: FleetSetup, mqtt_broker: Mosquitto) -> None:
    setup = fleet
    bad = Behaviour(step_s=0.01, trial_s=0.05, fail_at="trial", fail_reason="health-collapse")
    devices, ids = sims(mqtt_broker, setup, "halt-", 10, bad)
    try:
        code, out, err = nf("devices", "tag", *ids, "--group", "halt", "--tags", "pumps,eu",
                            *client_args(setup))
        assert code == 0 and "group halt  tags eu,pumps" in out, err
        rid = create(setup, "--select", "group=halt", "--select", "tag=pumps", "--canary", "2",
                     "--waves", "50,100", "--soak", "0", "--max-failures", "1",
                     "--success", "95%")
        r = wait_rollout(setup, rid, lambda r: r["status"] == "halted", what="halt")
        assert r["halt_reason"] == "failure-threshold"
        assert "2 device(s) failed, over the limit of 1 device(s)" in r["halt_detail"]
        assert "health-collapse" in r["halt_detail"]
        assert r["counts"]["rolled_back"] == 2 and r["counts"]["pending"] == 8
        canaries = {d["device_id"] for d in r["devices"] if d["stage_name"] == "canary"}
        assert {d["device_id"] for d in r["devices"] if d["state"] == "rolled_back"} == canaries
        time.sleep(0.5)  # it stays halted: no wave is started
        assert rollout(setup, rid)["counts"]["pending"] == 8
        told = {i for i, d in devices.devices.items() if d.desired_seen}
        assert told == canaries  # the other 8 never got a desired state
        assert {v for _, v in devices.snapshot().values()} == {1}

        code, out, _ = nf("rollout", "status", rid, "--devices", *client_args(setup))
        assert code == 0 and "HALTED" in out and "[xx" in out and "0/10" not in out
        assert "halted (failure-threshold): resume to continue anyway, or abort" in out
        assert "health-collapse" in out and "pending 8" in out
        code, out, _ = nf("rollout", "status", rid, "--watch", *client_args(setup))
        assert code == 1 and "HALTED" in out  # --watch ends when the rollout needs a human
        code, _, err = nf("rollout", "pause", rid, *client_args(setup))
        assert code == 1 and "only a running rollout can be paused; resume it to continue " \
            "anyway, or abort it" in err
        code, out, _ = nf("rollout", "list", *client_args(setup))
        assert rid in out and "halted" in out
    finally:
        devices.stop()
    code, out, _ = nf("rollout", "abort", rid, *client_args(setup))
    assert code == 0 and "rollback sent to 0 device(s)" in out  # nothing left in flight


def test_abort_rolls_devices_in_trial_back(fleet: FleetSetup, mqtt_broker: Mosquitto) -> None:
    setup = fleet
    slow = Behaviour(step_s=0.01, trial_s=120)  # stays in trial until something happens
    devices, ids = sims(mqtt_broker, setup, "abort-", 4, [FAST, FAST, slow, slow])
    try:
        rid = create(setup, "--select", f"ids={','.join(ids)}", "--canary", "0", "--soak", "0",
                     "--max-failures", "3")
        wait_rollout(setup, rid, lambda r: r["counts"]["committed"] == 2
                     and r["counts"]["trial"] == 2, what="2 committed, 2 in trial")
        code, out, err = nf("rollout", "abort", rid, *client_args(setup))
        assert code == 0, err
        assert "rollback sent to 2 device(s): abort-0002, abort-0003" in out
        r = wait_rollout(setup, rid, lambda r: r["counts"]["rolled_back"] == 2, what="rollback")
        assert r["status"] == "aborted"
        by_id = {d["device_id"]: d for d in r["devices"]}
        for i in ids[2:]:
            assert by_id[i]["reason"] == "operator-rollback" and by_id[i]["rollback_sent"]
            assert api(setup, "GET", f"/api/v1/devices/{i}").json()["desired"]["document"][
                "action"] == "rollback"
        snap = devices.snapshot()
        assert [snap[i][1] for i in ids] == [2, 2, 1, 1]  # committed stay, trial went back
        code, out, _ = nf("audit", "--action", "rollout-abort", *client_args(setup))
        assert code == 0 and rid in out and "operator" in out
    finally:
        devices.stop()


def test_pause_holds_the_next_wave_until_resume(fleet: FleetSetup,
                                                mqtt_broker: Mosquitto) -> None:
    setup = fleet
    devices, ids = sims(mqtt_broker, setup, "pause-", 6)
    try:
        rid = create(setup, "--select", f"ids={','.join(ids)}", "--canary", "1", "--waves",
                     "50,100", "--soak", "1s")
        wait_rollout(setup, rid, lambda r: r["stage"] == 0 and r["stages"][0]["status"]
                     == "soaking", what="canary passed")
        code, out, err = nf("rollout", "pause", rid, *client_args(setup))
        assert code == 0 and f"rollout {rid}: paused" in out, err
        time.sleep(1.3)  # the soak is over, but paused: no next wave
        r = rollout(setup, rid)
        assert r["status"] == "paused" and r["stage"] == 0 and r["counts"]["pending"] == 5
        assert r["note"].startswith("paused; canary passed")
        code, out, _ = nf("rollout", "resume", rid, *client_args(setup))
        assert code == 0 and "running" in out
        r = wait_rollout(setup, rid, lambda r: r["status"] == "completed", what="completed")
        assert r["counts"]["committed"] == 6
        assert {v for _, v in devices.snapshot().values()} == {2}
        texts = [e["text"] for e in r["log"]]
        assert any("paused by operator" in t for t in texts)
        assert texts[-1] == "completed"
        actions = [e["action"] for e in api(setup, "GET", "/api/v1/audit", params={
            "subject": rid}).json()["entries"]]
        assert actions == ["rollout-resume", "rollout-pause", "rollout-create"]
    finally:
        devices.stop()


def test_an_offline_device_catches_up_when_it_returns(fleet: FleetSetup,
                                                      mqtt_broker: Mosquitto) -> None:
    setup = fleet
    devices, ids = sims(mqtt_broker, setup, "away-", 3)
    try:
        away = ids[0]
        devices.drop(away)  # the Last Will marks it offline
        wait_devices(setup, [away], lambda d: d["state"] == "offline")
        code, out, _ = nf("devices", "list", "--offline", *client_args(setup))
        assert away in out and ids[1] not in out
        rid = create(setup, "--select", f"ids={','.join(ids)}", "--canary", "0", "--soak", "0")
        r = wait_rollout(setup, rid, lambda r: r["counts"]["committed"] == 2, what="2 commits")
        time.sleep(0.3)
        r = rollout(setup, rid)
        assert r["status"] == "running" and r["waiting_offline"] == 1
        assert r["note"] == "waiting for 1 offline device(s) to catch up"
        assert {d["device_id"]: d["state"] for d in r["devices"]}[away] == "notified"
        devices.connect(away)  # the retained desired state is waiting for it
        r = wait_rollout(setup, rid, lambda r: r["status"] == "completed", what="catch-up")
        assert r["counts"]["committed"] == 3 and devices.snapshot()[away] == ("committed", 2)
        code, out, _ = nf("devices", "list", "--model-version", f"{MODEL}:2", "--json",
                          *client_args(setup))
        assert set(ids) <= {d["device_id"] for d in json.loads(out)["devices"]}
    finally:
        devices.stop()


def test_transient_failures_are_retried_with_backoff(fleet: FleetSetup,
                                                     mqtt_broker: Mosquitto) -> None:
    setup = fleet
    flaky = Behaviour(step_s=0.01, trial_s=0.05, transient_failures=2)
    devices, ids = sims(mqtt_broker, setup, "flaky-", 1, flaky)
    try:
        rid = create(setup, "--select", f"ids={ids[0]}", "--canary", "0", "--soak", "0",
                     "--retry-delay", "0.2s", "--max-failures", "0")
        r = wait_rollout(setup, rid, lambda r: r["status"] == "completed", what="completed")
        [dev] = r["devices"]
        assert dev["state"] == "committed" and dev["attempts"] == 3
        texts = [e["text"] for e in r["log"]]
        assert f"{ids[0]}: unavailable, retry 1 of 3 in 0.2 s" in texts
        assert f"{ids[0]}: unavailable, retry 2 of 3 in 0.4 s" in texts
        history = [s for s, _, _ in devices.devices[ids[0]].history]
        assert history.count("failed") == 2 and history[-1] == "committed"
    finally:
        devices.stop()


def test_rollout_refusals_are_actionable(fleet: FleetSetup, mqtt_broker: Mosquitto,
                                         tmp_path: Path) -> None:
    setup = fleet
    slow = Behaviour(step_s=0.01, trial_s=120)
    devices, ids = sims(mqtt_broker, setup, "busy-", 2, slow)
    try:
        rid = create(setup, "--select", f"ids={','.join(ids)}", "--canary", "0", "--soak", "0")
        code, _, err = nf("rollout", "create", MODEL, "2", "--select", f"ids={ids[0]}",
                          *client_args(setup))
        assert code == 1 and f"1 selected device(s) are in active rollout {rid} ({ids[0]})" \
            in err and "abort it" in err
        code, _, err = nf("rollout", "create", MODEL, "7", "--select", "all",
                          *client_args(setup))
        assert code == 1 and "v7 is not published (published versions of nano-logs: [1, 2])" \
            in err
        code, _, err = nf("rollout", "create", MODEL, "2", "--select", "group=nobody",
                          *client_args(setup))
        assert code == 1 and "no device matches group=nobody" in err
        code, _, err = nf("rollout", "create", MODEL, "2", "--select", "group=x", "--waves",
                          "10,50", *client_args(setup))
        assert code == 2 and "the last wave must be 100" in err
        r = api(setup, "POST", "/api/v1/rollouts", json={
            "model": MODEL, "version": 2, "select": {"group": "x"},
            "strategy": {"canary": -1, "soak": 3}})
        assert r.status_code == 422
        message = r.json()["error"]["message"]
        assert "strategy.canary" in message and "strategy.soak" in message
        code, _, err = nf("rollout", "status", "r-nope", *client_args(setup))
        assert code == 1 and "no rollout 'r-nope' (see nanofleet rollout list)" in err
        nf("rollout", "abort", rid, *client_args(setup))
    finally:
        devices.stop()


class LossyFleet(SimFleet):
    """Simulated devices whose final ``committed`` OtaEvent never reaches the broker (as
    when the broker is killed with it in flight); their status still shows the new model
    (``old_agents``: without the trial flag, as agents before it)."""

    lose_committed: set[str]
    old_agents: bool = False

    def publish_ota(self, ota: DeviceOta, fields: dict[str, Any]) -> None:
        dev = self.devices[ota.device_id]
        if fields.get("state") != "committed" or dev.device_id not in self.lose_committed:
            super().publish_ota(ota, fields)
            return
        dev.next_seq()  # the event existed; only its delivery failed
        if dev.client is not None and dev.connected:
            status = json.loads(dev.status_doc())
            if self.old_agents:
                for m in status["models"]:
                    del m["trial"]
            dev.client.publish(topics.status(dev.device_id), json.dumps(status).encode(),
                               qos=1, retain=True)


@pytest.mark.parametrize("old_agents", [False, True], ids=["trial-flag", "older-agents"])
def test_a_lost_committed_report_is_inferred_from_the_status(
        fleet: FleetSetup, mqtt_broker: Mosquitto, old_agents: bool) -> None:
    setup = fleet
    prefix = "lossy-old-" if old_agents else "lossy-"  # the fleet fixture outlives a test
    devices = make_devices(prefix, 2, behaviour=lambda _i: Behaviour(**vars(FAST)))
    sims_ = LossyFleet(mqtt_broker.port, devices)
    ids = [d.device_id for d in devices]
    lossy = ids[0]
    sims_.lose_committed, sims_.old_agents = {lossy}, old_agents
    sims_.start()
    try:
        sims_.wait_connected()
        wait_devices(setup, ids, lambda d: d["state"] == "online")
        # A status with the flag proves the commit at once: a timeout longer than the test
        # shows no wait. Without it (older agents) only after the device timeout.
        timeout = "1.5s" if old_agents else "120s"
        started = time.monotonic()
        rid = create(setup, "--select", f"ids={','.join(ids)}", "--canary", "0", "--soak", "0",
                     "--device-timeout", timeout)
        if old_agents:
            r = wait_rollout(setup, rid, lambda r: r["counts"]["committed"] == 1,
                             what="1 commit")
            wait_devices(setup, [lossy], lambda d: d["models"]["logs"]["version"] == 2)
            assert {d["device_id"]: d["state"] for d in r["devices"]}[lossy] == "trial"
        r = wait_rollout(setup, rid, lambda r: r["status"] == "completed", what="completed")
        assert old_agents or time.monotonic() - started < 60
        dev = {d["device_id"]: d for d in r["devices"]}[lossy]
        assert (dev["state"], dev["reason"]) == ("committed", "inferred-from-status")
        assert dev["detail"].startswith("inferred from status: v2 live")
        assert f"{lossy}: committed (inferred from status, was trial)" in [
            e["text"] for e in r["log"]]
        assert sims_.snapshot()[lossy] == ("committed", 2)
        models = api(setup, "GET", f"/api/v1/devices/{lossy}").json()["models"]["logs"]
        assert models["trial"] is (None if old_agents else False)
    finally:
        sims_.stop()


def test_a_device_whose_agent_cannot_read_the_bundle_is_skipped_not_failed(
        fleet: FleetSetup, mqtt_broker: Mosquitto) -> None:
    """v2 carries the model's level offsets in its manifest (as the shipped bundle does).
    One device runs an agent from before December 2026: its status says nothing of what it
    reads, so it would download v2 and refuse it. The operator is told when creating the
    rollout; the device is skipped, never sent a desired state, and the rollout completes on
    the device that can read it (no failure counted)."""
    devices = make_devices("oldagent-", 2, behaviour=lambda _i: Behaviour(**vars(FAST)))
    devices[1].reads = None
    sim = SimFleet(mqtt_broker.port, devices).start()
    try:
        sim.wait_connected()
        ids = [d.device_id for d in devices]
        wait_devices(fleet, ids, lambda d: d["state"] == "online")
        code, out, err = nf("rollout", "create", MODEL, "2", "--select", f"ids={','.join(ids)}",
                            "--canary", "0", "--waves", "100", "--soak", "0",
                            *client_args(fleet))
        assert code == 0, err
        assert ("note: 1 of 2 device(s) will be skipped when their stage starts: their agent "
                "cannot read known_programs (1), level_offsets (1) of this bundle") in out
        rid = re.search(r"created rollout (r-[0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
        r = wait_rollout(fleet, rid, lambda r: r["status"] == "completed", what="completed")
        got = {d["device_id"]: (d["state"], d["reason"]) for d in r["devices"]}
        assert got == {ids[0]: ("committed", None), ids[1]: ("skipped", "cannot-read")}
        assert devices[1].desired_seen == 0 and devices[1].live_version == 1
        assert devices[0].live_version == 2
    finally:
        sim.stop()
