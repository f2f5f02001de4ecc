"""End to end: a real agent configured for MQTT-only connectivity, in a network namespace
whose only route is to the broker, is updated v1 -> v2 by the real fleet server, and
the broker restarts in the middle of the bundle's download. The broker runs the
configuration operators deploy (`nanofleet broker-config`: mutual TLS, client id = the
certificate's CN, per-device ACL, packet limit), so the agent's artifact stream shares its
one session: a second connection under the device's identity would take it over.

The fleet server's HTTP listens on 127.0.0.1 of this namespace only, Mosquitto also on
the host end of a veth pair; the agent runs inside the device namespace (``ip netns
exec``), so the desired state's http mirror URL and the server's port are unreachable
from it (checked), and the server's access log shows no repository request during the
update. TUF metadata and the full bundle (deltas off, so that it is a long stream; the
server's per-device rate limit makes it last long enough to be cut) arrive as chunked
MQTT streams, resume after the restart, and are verified against the same signed
lengths and hashes as over HTTP.

Without network namespaces (not root, no iproute2) the agent runs here and only the
access-log proof remains.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from contract.bundle import runtime_variant
from fleet_server.config import ArtifactSettings, DeltaSettings, MqttTls, config_toml
from hil.broker import ProductionBroker
from hil.fleet import FleetServer, FleetSetup, setup_fleet
from hil.links import namespaces_unavailable
from hil.models import finetuned
from nanomodel import default_bundle_path
from tests.support.agent_proc import AgentProcess
from tests.support.fleet_cli import nf
from tests.support.mqtt_client import Collector
from tests.support.netns import NetNamespace

DEV = "mqtt-only-1"
MODEL = "nano-logs"
RATE = 128 * 1024  # bytes/s per device: the ~287 KB runtime variant takes about 2 s
DONE = ("committed", "failed", "rolled_back")


class NamespacedAgent(AgentProcess):
    """The real agent daemon, started behind a command prefix (``ip netns exec NS``)."""

    def __init__(self, config: Path, state_dir: Path, prefix: list[str]) -> None:
        super().__init__(config, state_dir)
        self.prefix = prefix

    def start(self, wait: bool = True) -> AgentProcess:
        self._logf = open(self.log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "agent.cli", "run", "--config",
             str(self.config)], stdout=self._logf, stderr=subprocess.STDOUT, env=self.env)
        if wait:
            self.wait_ready()
        return self


def agent_config(tmp: Path, host: str, port: int, root_file: Path, log: Path,
                 tls: dict[str, str]) -> Path:
    path = tmp / "agent.toml"
    path.write_text(f"""device_id = "{DEV}"
state_dir = "{tmp / 'state'}"
metrics_interval_s = 1
log_level = "debug"

[mqtt]
host = "{host}"
port = {port}
reconnect_max_s = 1

[mqtt.tls]
ca_file = "{tls['ca_certs']}"
cert_file = "{tls['certfile']}"
key_file = "{tls['keyfile']}"

[pipeline]
batch_size = 16
batch_max_wait_ms = 20

[[sources]]
kind = "file"
path = "{log}"
start_at = "beginning"

[ota]
transport = "mqtt"            # metadata_url = "mqtt:metadata/", target_base_url = "mqtt:targets/"
root_file = "{root_file}"
http_timeout_s = 10
retry_after_s = 3600
download_attempts = 1         # the restart must be survived inside one download
mqtt_chunk_bytes = 16384
mqtt_window_chunks = 4

[ota.trial]
duration_s = 1.0
min_inferences = 0
timeout_s = 20.0
""")
    return path


def ota_events(sub: Collector) -> list[dict[str, Any]]:
    docs = {d["msg_id"]: d for d in (json.loads(m.payload)
                                     for m in sub.on(f"nanofleet/v1/dev/{DEV}/ota"))}
    return sorted(docs.values(), key=lambda d: d["seq"])


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def repo_requests(server: FleetServer) -> int:
    """HTTP requests for repository files in the server's access log."""
    return sum(1 for line in server.log().splitlines() if '"GET /repo/' in line
               or '"HEAD /repo/' in line)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[FleetSetup, FleetServer, ProductionBroker, str,
                                            NetNamespace | None]]:
    """The broker runs the production configuration (client id = CN, ACL, packet limit):
    the agent's artifact stream must share its one session (issue 8, finding 5)."""
    with ExitStack() as stack:
        ns = stack.enter_context(NetNamespace()) if namespaces_unavailable() is None else None
        # Persistence (Debian's main config has it): reports survive the restart.
        broker = ProductionBroker(tmp_path / "broker", persistence=True,
                                  bind=None if ns is not None else "127.0.0.1",
                                  server_ips=(ns.host_ip,) if ns is not None else ())
        broker.start()
        stack.callback(broker.stop)
        setup = setup_fleet(tmp_path / "fleet", mqtt_port=broker.server_port, log_level="debug",
                            deltas=DeltaSettings(previous_versions=0),
                            artifacts=ArtifactSettings(device_rate_bytes_s=RATE))
        tls = broker.server_tls()  # the fleet server's identity on its own listener
        config = setup.config.model_copy(update={"mqtt": setup.config.mqtt.model_copy(
            update={"tls": MqttTls(ca_file=Path(tls["ca_certs"]),
                                   cert_file=Path(tls["certfile"]),
                                   key_file=Path(tls["keyfile"]))})})
        setup.config_path.write_text(config_toml(config), encoding="utf-8")
        setup = replace(setup, config=config)
        server = stack.enter_context(FleetServer(setup))
        server.wait_mqtt()
        host = ns.host_ip if ns is not None else "127.0.0.1"
        yield setup, server, broker, f"{host}:{broker.tls_port}", ns


def test_mqtt_only_device_updates_with_no_http_route(
        tmp_path: Path, world: tuple[FleetSetup, FleetServer, ProductionBroker, str,
                                     NetNamespace | None]) -> None:
    setup, server, broker, device_broker, ns = world
    client = ["--server", setup.url, f"--token={setup.token}"]  # a token may start with "-"
    v2 = tmp_path / "v2.nfb"
    bundle2 = finetuned(2)
    v2.write_bytes(bundle2)
    for bundle in (default_bundle_path(), v2):
        code, out, err = nf("model", "publish", str(bundle), "--targets-key",
                            str(setup.targets_key), "--cache-dir",
                            str(setup.workdir / "operator-cache"), *client)
        assert code == 0, err

    log = tmp_path / "device.log"
    log.write_text("".join(f"pumpd[42]: cycle {i} complete, flow=41.0 l/min\n"
                           for i in range(40)))
    host, port = device_broker.rsplit(":", 1)
    config = agent_config(tmp_path, host, int(port), setup.root_file, log,
                          broker.device_tls(DEV))
    agent = NamespacedAgent(config, tmp_path / "state", ns.prefix() if ns else [])
    sub = Collector(broker.port, f"nanofleet/v1/dev/{DEV}/ota", session=True)
    try:
        agent.start()
        if ns is not None:
            # The device has no HTTP route to the fleet server: neither its URL (the
            # device's own loopback) nor its port on the only address it can reach.
            assert ns.http_get(f"{setup.url}/repo/metadata/root.json").startswith("ERROR")
            there = f"http://{ns.host_ip}:{setup.config.bind_port}/repo/metadata/root.json"
            assert ns.http_get(there).startswith("ERROR")
        before = repo_requests(server)
        assert before > 0  # the operator's publishes went over HTTP: the log counts them

        t0 = time.monotonic()
        code, out, err = nf("deploy", MODEL, "2", "--devices", DEV, *client)
        assert code == 0, err
        # Cut the broker (every connection) once a good part of the bundle has streamed.
        # The device (ONNX Runtime) downloads only its runtime's variant of the bundle.
        artifact = runtime_variant(bundle2, "onnx")
        wait_until(lambda: server.health()["artifacts"]["bytes"] >= 100_000, 30,
                   "the bundle did not start streaming")
        cut_at = server.health()["artifacts"]["bytes"]
        broker.restart()
        wait_until(lambda: any(e["state"] in DONE for e in ota_events(sub)), 60,
                   "the update did not finish")
        seconds = time.monotonic() - t0
        done = [e for e in ota_events(sub) if e["state"] in DONE][-1]
        assert done["state"] == "committed", (ota_events(sub), agent.output()[-3000:])
        states = [e["state"] for e in ota_events(sub)]
        assert states == ["downloading", "verifying", "staged", "smoke_testing", "trial",
                          "committed"]
        verifying = next(e for e in ota_events(sub) if e["state"] == "verifying")
        assert verifying["artifact"] == "full" and verifying["bytes_downloaded"] == len(artifact)
        assert cut_at < len(artifact) - 50_000  # the cut was well inside the transfer
        assert "artifact transport disconnected" in agent.output()
        # One session for the device, never taken over (its CN is its client id).
        assert f"Client {DEV} already connected" not in broker.log_text()
        assert agent.query("models")["result"][0]["version"] == 2

        # Not one repository request reached the server over HTTP during the update...
        assert repo_requests(server) == before
        # ...everything came as MQTT streams from the fleet server's artifact stream.
        streamed = server.health()["artifacts"]
        assert streamed["errors"] == 0 and streamed["rate_limited"] >= 1
        assert streamed["bytes"] >= len(artifact)
        print(f"MQTT-only OTA (netns={'yes' if ns else 'no'}): deploy -> committed in "
              f"{seconds:.1f} s with a broker restart after {cut_at} B; bundle {len(artifact)} "
              f"B at {RATE} B/s; server streamed {streamed['bytes']} B in "
              f"{streamed['chunks']} chunks / {streamed['requests']} requests "
              f"({streamed['rate_limited']} rate-limited)")
    finally:
        sub.close()
        agent.stop()
