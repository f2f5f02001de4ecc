"""OTA end to end: the real agent process, a real Mosquitto, a real signed repository
over real HTTP, real nano models. v1 -> v2 by delta while results keep flowing; and
across a SIGHUP reload that changes [mqtt] (a new broker link): desired states still
arrive, and a bundle streaming over MQTT at that moment moves to the new link."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_server.artifact_stream import ArtifactStreamer
from fleet_server.config import ArtifactSettings, MqttSettings
from hil.models import finetuned, traffic, v1_bundle
from tests.support.agent_proc import AgentProcess, write_config
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


def test_a_download_over_mqtt_moves_to_the_link_a_reload_builds(
        tmp_path: Path, broker: Mosquitto, repo: Repo) -> None:
    """``[ota] transport = "mqtt"``: the bundle streams over the agent's own link. A
    reload that changes ``[mqtt]`` in the middle of the download replaces that link; the
    transfer must carry on over the new one (not wait on the stopped link until it
    times out and the update fails)."""
    repo.publish(v1_bundle())
    repo.publish(finetuned(2), variants=True)  # the ONNX variant, ~287 KB
    log = tmp_path / "device.log"
    log.write_text("")
    state = tmp_path / "state"
    ota = (f'[ota]\ntransport = "mqtt"\nroot_file = "{repo.root_file}"\n'
           "retry_after_s = 3600\nhttp_timeout_s = 5\ndownload_attempts = 1\n"
           "mqtt_chunk_bytes = 16384\nmqtt_window_chunks = 4\n"
           "[ota.trial]\nduration_s = 1.0\nmin_inferences = 0\ntimeout_s = 20.0\n")
    config = write_config(tmp_path / "agent.toml", DEV, state, broker.port,
                          f'[[sources]]\nkind = "file"\npath = "{log}"\n', extra=ota)
    agent = AgentProcess(config, state)
    reports = Reports(broker.port, DEV)
    # The fleet server's artifact stream, rate-limited so the download lasts ~1.5 s.
    server = ArtifactStreamer(MqttSettings(port=broker.port, client_id="fleet-artifacts"),
                              ArtifactSettings(device_rate_bytes_s=128 * 1024), repo.kit.path)
    server.start()
    try:
        assert server.connected.wait(10)
        agent.start()
        reports.set_desired(1, 2)
        deadline = time.monotonic() + 20
        while server.health()["bytes"] < 100_000:
            assert time.monotonic() < deadline, agent.output()
            time.sleep(0.02)
        agent.config.write_text(config.read_text().replace(
            "reconnect_max_s = 1", "reconnect_max_s = 1\nkeepalive_s = 45"))
        agent.signal(signal.SIGHUP)
        done = reports.wait_ota(lambda e: e["state"] in ("committed", "failed", "rolled_back"),
                                timeout=20)
        assert done["state"] == "committed", (reports.summary(), agent.output()[-3000:])
        assert [e["state"] for e in reports.ota()] == [
            "downloading", "verifying", "staged", "smoke_testing", "trial", "committed"]
        assert agent.query("metrics")["result"]["counters"]["reloads"] == 1
        # The reload stopped the old link while the bundle streamed over it.
        out = agent.output()
        stopped = out.index("artifact transport disconnected (1 transfers wait")
        assert stopped < out.index("configuration reloaded") < out.index("logs: verifying")
    finally:
        agent.stop()
        server.stop()
        reports.close()
