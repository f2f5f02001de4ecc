"""A rollout with the REAL agent (`nanofleet-agent run`): its own OTA reports carry the
rollout id and complete the rollout (verify, smoke test, trial on real traffic, commit),
and an abort during the next rollout's trial swaps the previous model back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.fleet import FleetServer, FleetSetup, setup_fleet
from nanomodel import default_bundle_path
from tests.support.agent_proc import AgentProcess, write_config
from tests.support.fleet_cli import nf
from tests.support.mosquitto import Mosquitto
from tests.support.rollout_rig import (
    MODEL,
    client_args,
    publish,
    relabeled,
    wait_devices,
    wait_rollout,
)

DEVICE = "real-07"


@pytest.fixture
def rig(tmp_path: Path, broker: Mosquitto) -> Iterator[tuple[FleetSetup, AgentProcess, Path]]:
    setup = setup_fleet(tmp_path / "fleet", mqtt_port=broker.port, rollout_tick_s=0.1)
    server = FleetServer(setup).start()
    agent: AgentProcess | None = None
    try:
        server.wait_mqtt()
        publish(setup, default_bundle_path())
        publish(setup, relabeled(2, tmp_path / "v2.nfb"))
        publish(setup, relabeled(3, tmp_path / "v3.nfb"))
        log = tmp_path / "pump.log"
        log.write_text("")
        state = tmp_path / "state"
        config = write_config(tmp_path / "agent.toml", DEVICE, state, broker.port, f"""
[model]
slot = "logs"

[[sources]]
kind = "file"
path = "{log}"

[ota]
metadata_url = "{setup.url}/repo/metadata/"
target_base_url = "{setup.url}/repo/targets/"
root_file = "{setup.root_file}"

[ota.trial]
duration_s = 0.5
min_inferences = 40
timeout_s = 120
""")
        agent = AgentProcess(config, state).start()
        yield setup, agent, log
    finally:
        if agent is not None:
            agent.stop()
        server.stop()


class LogWriter:
    """Appends log lines (real traffic for the trial) until stopped."""

    def __init__(self, path: Path) -> None:
        self.path, self.stop_ = path, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self.stop_.is_set():
            with self.path.open("a") as f:
                f.write(f"Nov 28 12:00:{n % 60:02d} pump-07 kernel: eth0 link up ({n})\n")
            n += 1
            time.sleep(0.01)

    def stop(self) -> None:
        self.stop_.set()
        self.thread.join()


def create(setup: FleetSetup, version: int) -> str:
    code, out, err = nf("rollout", "create", MODEL, str(version), "--select", f"ids={DEVICE}",
                        "--canary", "1", "--soak", "0", *client_args(setup))
    assert code == 0, err
    return out.split()[2].rstrip(":")


def test_real_agent_completes_a_rollout_and_an_abort_rolls_its_trial_back(
        rig: tuple[FleetSetup, AgentProcess, Path]) -> None:
    setup, agent, log = rig
    wait_devices(setup, [DEVICE], lambda d: d["state"] == "online"
                 and d["models"]["logs"]["version"] == 1, timeout=30)
    writer = LogWriter(log)
    try:
        rid = create(setup, 2)
        r = wait_rollout(setup, rid, lambda r: r["status"] == "completed", timeout=60,
                         what="real agent commits v2")
    finally:
        writer.stop()
    [dev] = r["devices"]
    assert (dev["state"], dev["from_version"]) == ("committed", 1)
    assert agent.query("models")["result"][0]["version"] == 2
    code, out, _ = nf("devices", "show", DEVICE, *client_args(setup))
    assert "last OTA   committed v2" in out and rid in nf(
        "devices", "show", DEVICE, "--json", *client_args(setup))[1]

    # v3 without traffic: its trial waits for lines; the operator aborts meanwhile.
    rid3 = create(setup, 3)
    wait_rollout(setup, rid3, lambda r: r["counts"]["trial"] == 1, timeout=60,
                 what="real agent in trial of v3")
    code, out, err = nf("rollout", "abort", rid3, *client_args(setup))
    assert code == 0 and f"rollback sent to 1 device(s): {DEVICE}" in out, err
    r = wait_rollout(setup, rid3, lambda r: r["counts"]["rolled_back"] == 1, timeout=30,
                     what="rolled back")
    [dev] = r["devices"]
    assert dev["reason"] == "operator-rollback" and rid3 in (dev["detail"] or "")
    assert r["status"] == "aborted"
    assert agent.query("models")["result"][0]["version"] == 2
    wait_devices(setup, [DEVICE], lambda d: d["models"]["logs"]["version"] == 2)
