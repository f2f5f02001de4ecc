"""OTA end to end: the real agent process, a real Mosquitto, a real signed repository
over real HTTP, real nano models. v1 -> v2 by delta while results keep flowing."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.models import finetuned, traffic, v1_bundle
from tests.support.mosquitto import Mosquitto
from tests.support.ota_rig import LineWriter, Repo, Reports, make_agent, shuffled

DEV = "ota-dev-1"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repo]:
    r = Repo(tmp_path / "tuf")
    yield r
    r.close()


def test_delta_update_under_load_drops_no_inference(tmp_path: Path, broker: Mosquitto,
                                                     repo: Repo) -> None:
    repo.publish(v1_bundle())
    repo.publish(finetuned(2), delta_from=(1,))
    log = tmp_path / "device.log"
    log.write_text("")
    agent = make_agent(tmp_path, DEV, broker.port, repo, log, duration_s=1.5,
                       min_inferences=50, timeout_s=30.0)
    reports = Reports(broker.port, DEV)
    writer = LineWriter(log, shuffled(traffic(300)), per_second=150).start()
    try:
        agent.start()
        assert agent.query("ota")["result"]["state"] == "idle"
        reports.set_desired(1, 2)
        done = reports.wait_ota(lambda e: e["state"] in ("committed", "failed", "rolled_back"))
        assert done["state"] == "committed", reports.summary()
        lines = writer.stop()
        reports.wait_results(lines)

        states = [e["state"] for e in reports.ota()]
        assert states == ["downloading", "verifying", "staged", "smoke_testing", "trial",
                          "committed"]
        verifying = next(e for e in reports.ota() if e["state"] == "verifying")
        assert verifying["artifact"] == "delta"
        assert verifying["bytes_downloaded"] < len(repo.bundles[2]) * 0.05
        assert done["from_version"] == 1 and done["to_version"] == 2
        assert done["rollout_id"] == "r1"

        metrics = agent.query("metrics")["result"]["counters"]
        assert metrics.get("inference_errors", 0) == 0
        assert metrics.get("batch_errors", 0) == 0
        versions = [v for v, _ in reports.result_items()]
        assert versions[0] == 1 and versions[-1] == 2
        # Once a batch ran on v2, every later batch did: one swap, no flapping.
        first_v2 = versions.index(2)
        assert set(versions[first_v2:]) == {2}
        assert {v for v in versions[:first_v2]} == {1}

        models = agent.query("models")["result"]
        assert (models[0]["version"], models[0]["trial"]) == (2, False)
        ota = agent.query("ota")["result"]
        assert ota["state"] == "committed" and ota["committed"]["version"] == 2
        assert ota["live"]["version"] == 2
        status = [d for d in reports.docs("status") if d["state"] == "online"]
        assert (status[-1]["models"][0]["version"], status[-1]["models"][0]["trial"]) == \
            (2, False)
        installed = sorted(p.name for p in (tmp_path / f"state-{DEV}" / "models" /
                                            "logs").iterdir())
        assert installed == [ota["committed"]["file"]]
        assert list((tmp_path / f"state-{DEV}" / "ota" / "downloads" / "logs").iterdir()) \
            == []
        # A restart runs the committed model (and says so once more).
        assert agent.stop() == 0
        agent.start()
        assert agent.query("models")["result"][0]["version"] == 2
        assert agent.query("ota")["result"]["state"] == "committed"
    finally:
        writer.stop()
        agent.stop()
        reports.close()


def test_desired_state_still_reaches_the_agent_after_a_reload_that_changes_mqtt(
        tmp_path: Path, broker: Mosquitto, repo: Repo) -> None:
    """SIGHUP with a changed ``[mqtt]`` (here only the keep-alive) replaces the agent's
    broker link: the desired-state subscription must move to the new link, or fleet
    deployments silently stop reaching the device until it restarts."""
    repo.publish(v1_bundle())
    repo.publish(finetuned(2))
    log = tmp_path / "device.log"
    log.write_text("")
    agent = make_agent(tmp_path, DEV, broker.port, repo, log)
    reports = Reports(broker.port, DEV)
    try:
        agent.start()
        assert agent.query("ota")["result"]["state"] == "idle"
        config = agent.config.read_text()
        assert "keepalive_s" not in config
        agent.config.write_text(config.replace("reconnect_max_s = 1",
                                               "reconnect_max_s = 1\nkeepalive_s = 45"))
        agent.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while agent.query("metrics")["result"]["counters"].get("reloads", 0) < 1:
            assert time.monotonic() < deadline, agent.output()
            time.sleep(0.05)
        # The link the reload built is up: it said "online" once more.
        deadline = time.monotonic() + 10
        while sum(d["state"] == "online" for d in reports.docs("status")) < 2:
            assert time.monotonic() < deadline, agent.output()
            time.sleep(0.05)
        # Published only now, so only the link built by the reload can deliver it.
        reports.set_desired(1, 2)
        done = reports.wait_ota(lambda e: e["state"] in ("committed", "failed", "rolled_back"),
                                timeout=15)
        assert (done["state"], done["to_version"], done["rollout_id"]) == \
            ("committed", 2, "r1"), reports.summary()
        assert agent.query("models")["result"][0]["version"] == 2
    finally:
        agent.stop()
        reports.close()

