"""The fleet server end to end: real keys, a real `nanofleet server run` process over HTTP,
a real Mosquitto, the operator CLI, python-tuf clients.

One scenario per module (the tests run in file order and build on each other):
publish v1 and a head-only fine-tune v2 -> the server lists a small delta ->
deploy -> retained desired state on the broker -> device reports show up in
`nanofleet devices show`; the repository answers Range requests; bad uploads and
missing tokens are refused with JSON errors; a root rotation is followed.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Targets
from tuf.api.serialization.json import JSONSerializer

from agent.ota.tuf_client import TufClient
from contract.bundle import pack_bundle, read_bundle, runtime_variant
from contract.delta import apply_delta
from contract.messages import DesiredState, ModelInfo, OtaEvent, OtaState, Status
from contract.topics import desired, ota, status
from fleet_server.repository.keys import load_signer
from fleet_server.repository.operator import add_targets
from fleet_server.revisions import revision_clock
from hil.fleet import FleetServer, FleetSetup, setup_fleet
from nanomodel import default_bundle_path
from nanomodel.corpus import inverter_lines, write_jsonl
from tests.support.fleet_cli import nf
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector

MODEL = "nano-logs"
DEVICE = "pump-07"


@pytest.fixture(scope="module")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path_factory.mktemp("fleet-broker")).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory,
          mqtt_broker: Mosquitto) -> Iterator[tuple[FleetSetup, FleetServer]]:
    setup = setup_fleet(tmp_path_factory.mktemp("fleet"), mqtt_port=mqtt_broker.port)
    server = FleetServer(setup).start()
    try:
        server.wait_mqtt()
        yield setup, server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def v2_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v2 = the shipped model fine-tuned head-only on new lines, with `nanofleet model train`."""
    d = tmp_path_factory.mktemp("train")
    write_jsonl(d / "inverter.jsonl", inverter_lines(300, 33))
    out = d / "v2.nfb"
    code, _, err = nf("model", "train", "--base", str(default_bundle_path()), "--head-only",
                      "--data", str(d / "inverter.jsonl"), "--out", str(out), "--quiet")
    assert code == 0, err
    assert read_bundle(out.read_bytes()).manifest.version == 2
    return out


def client_args(setup: FleetSetup) -> list[str]:
    return ["--server", setup.url, "--token", setup.token]


def publish_args(setup: FleetSetup, bundle: Path) -> list[str]:
    return ["model", "publish", str(bundle), "--targets-key", str(setup.targets_key),
            "--cache-dir", str(setup.workdir / "operator-cache"), *client_args(setup)]


def api(setup: FleetSetup, method: str, path: str, *, headers: dict[str, str] | None = None,
        **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {setup.token}", **(headers or {})}
    return httpx.request(method, setup.url + path, headers=headers, timeout=30, **kwargs)


def device_client(setup: FleetSetup, tmp: Path) -> TufClient:
    return TufClient(tmp, f"{setup.url}/repo/metadata/", trusted_root=setup.root_file.read_bytes(),
                     target_base_url=f"{setup.url}/repo/targets/")


# --- publish ---------------------------------------------------------------------------

def test_publish_v1_then_head_only_v2_gets_a_small_delta(fleet: tuple[FleetSetup, FleetServer],
                                                          v2_bundle: Path,
                                                          tmp_path: Path) -> None:
    setup, _ = fleet
    code, out, err = nf(*publish_args(setup, default_bundle_path()))
    assert code == 0, err
    assert f"published {MODEL} v1" in out and "targets v2" in out
    code, out, err = nf(*publish_args(setup, v2_bundle), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["targets_version"] == 3
    by_runtime = {d["runtime"]: d for d in result["deltas"]}
    assert sorted(by_runtime, key=str) == [None, "onnx", "tflite"]  # combined + variants
    delta = by_runtime[None]
    assert all(d["status"] == "listed" and d["base_version"] == 1 for d in by_runtime.values())
    bundle_len = v2_bundle.stat().st_size
    assert delta["length"] < 0.05 * bundle_len, delta

    code, out, _ = nf("model", "list", *client_args(setup))
    assert code == 0 and f"{MODEL}  slot logs" in out and "from v1" in out

    # What a device sees, through python-tuf: the delta is signed by the delegated role,
    # downloads, and rebuilds exactly the operator-signed v2.
    client = device_client(setup, tmp_path / "meta")
    client.refresh()
    found = client.find_model_targets(MODEL, 2, installed_version=1)
    assert found.delta is not None and found.delta.length == delta["length"]
    delta_file = client.download_target(found.delta.target, tmp_path / "dl")
    apply_delta(default_bundle_path(), delta_file, tmp_path / "v2.nfb", found.full.sha256,
                found.full.length)
    assert (tmp_path / "v2.nfb").read_bytes() == v2_bundle.read_bytes()

    # A device running LiteRT takes the tflite variant's delta, applied to the variant
    # it derives from its installed combined v1, and rebuilds the operator-signed variant.
    found = client.find_model_targets(MODEL, 2, installed_version=1, runtime="tflite")
    assert found.runtime == "tflite" and found.delta is not None
    assert found.delta.length == by_runtime["tflite"]["length"]
    assert found.full.length < 0.6 * bundle_len
    base = tmp_path / "v1.tflite.nfb"
    base.write_bytes(runtime_variant(default_bundle_path().read_bytes(), "tflite"))
    assert hashlib.sha256(base.read_bytes()).hexdigest() == found.delta.info.base_sha256
    delta_file = client.download_target(found.delta.target, tmp_path / "dl")
    apply_delta(base, delta_file, tmp_path / "v2.tflite.nfb", found.full.sha256,
                found.full.length)
    assert (tmp_path / "v2.tflite.nfb").read_bytes() == runtime_variant(
        v2_bundle.read_bytes(), "tflite")
    listed = api(setup, "GET", "/api/v1/models").json()["models"][0]["versions"][0]
    assert [v["runtime"] for v in listed["variants"]] == ["onnx", "tflite"]
    # What agents it needs, read from its manifest at publish (contract.bundle_features).
    assert listed["needs"] == ["known_programs", "level_offsets",
                              "tokenizer.head:time-host-v1"]
    assert sorted(str(d["runtime"]) for d in listed["deltas"]) == ["None", "onnx", "tflite"]


def test_publishing_the_same_version_again_is_refused(fleet: tuple[FleetSetup, FleetServer],
                                                      v2_bundle: Path) -> None:
    setup, _ = fleet
    code, _, err = nf(*publish_args(setup, v2_bundle))
    assert code == 1 and "already published; bump the bundle version" in err


# --- the repository as static files ----------------------------------------------------

def test_repository_serves_ranges(fleet: tuple[FleetSetup, FleetServer],
                                  v2_bundle: Path) -> None:
    setup, _ = fleet
    data = v2_bundle.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    url = f"{setup.url}/repo/targets/models/{MODEL}/2/{sha}.{MODEL}-2.nfb"
    r = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert "immutable" in r.headers["cache-control"]
    r = httpx.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert r.status_code == 206 and r.content == data[-10:]
    r = httpx.get(url, headers={"Range": f"bytes={len(data) + 10}-"})
    assert r.status_code == 416
    r = httpx.head(url)
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(data)
    assert r.headers["accept-ranges"] == "bytes"
    ts = httpx.get(f"{setup.url}/repo/metadata/timestamp.json")
    assert ts.status_code == 200 and ts.headers["cache-control"] == "no-cache"
    for bad in ("/repo/metadata/..%2f..%2fserver.toml", "/repo/keys/timestamp.pem",
                "/repo/metadata/.repository.lock", "/repo/targets/nope.nfb"):
        r = httpx.get(setup.url + bad)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not-found", bad


# --- bad uploads, auth -----------------------------------------------------------------

def _signed_update(setup: FleetSetup, signer: CryptoSigner, bundle: bytes) -> tuple[bytes,
                                                                                    dict[str,
                                                                                         bytes]]:
    current = httpx.get(f"{setup.url}/repo/metadata/3.targets.json").content
    update = add_targets(current, [signer], bundle=bundle)
    return update.metadata, update.files


def _upload(setup: FleetSetup, metadata: bytes, files: dict[str, bytes],
            token: str | None = None) -> httpx.Response:
    parts = [("metadata", ("targets.json", metadata))]
    parts += [("files", (p, d)) for p, d in files.items()]
    headers = {"Authorization": f"Bearer {token or setup.token}"}
    return httpx.post(f"{setup.url}/api/v1/models/publish", files=parts, headers=headers,
                      timeout=30)


def _v3(v2: Path) -> bytes:
    """v2's weights under version 3 (a re-release)."""
    bundle = read_bundle(v2.read_bytes())
    manifest = bundle.manifest.model_copy(update={"version": 3, "version_label": "v3"})
    return pack_bundle(manifest, bundle.files)


@pytest.mark.parametrize("case", ["unsigned", "wrong-key", "stale-version", "garbage",
                                  "missing-file", "tampered-file", "not-multipart"])
def test_bad_uploads_are_refused_with_clear_json(fleet: tuple[FleetSetup, FleetServer],
                                                 v2_bundle: Path, case: str) -> None:
    setup, _ = fleet
    operator = load_signer(setup.targets_key)
    v3 = _v3(v2_bundle)
    metadata, files = _signed_update(setup, operator, v3)
    if case == "unsigned":
        md = Metadata[Targets].from_bytes(metadata)
        md.signatures.clear()
        metadata = md.to_bytes(JSONSerializer())
        expect = (400, "publish-rejected", "not signed by the targets keys")
    elif case == "wrong-key":
        metadata, files = _signed_update(setup, CryptoSigner.generate_ed25519(), v3)
        expect = (400, "publish-rejected", "not signed by the targets keys")
    elif case == "stale-version":
        md = Metadata[Targets].from_bytes(metadata)
        md.signed.version = 2  # already used: built on old targets
        md.signatures.clear()
        md.sign(operator)
        metadata = md.to_bytes(JSONSerializer())
        expect = (409, "version-conflict", "must be 4")
    elif case == "garbage":
        metadata = b'{"signed": "nope"}'
        expect = (400, "publish-rejected", "not TUF targets metadata")
    elif case == "missing-file":
        files = {p: d for p, d in files.items() if not p.endswith(".nfb")}
        expect = (400, "publish-rejected", "has no file: upload it")
    elif case == "tampered-file":
        files = {p: (d[:-1] + b"\x01" if p.endswith(".nfb") else d) for p, d in files.items()}
        expect = (400, "publish-rejected", "does not match its signed length/hashes")
    if case == "not-multipart":
        r = api(setup, "POST", "/api/v1/models/publish", content=metadata,
                headers={"Content-Type": "application/json"})
        expect = (400, "bad-upload", "multipart/form-data")
    else:
        r = _upload(setup, metadata, files)
    status_code, code, message = expect
    assert r.status_code == status_code, r.text
    body = r.json()
    assert body["error"]["code"] == code and message in body["error"]["message"], body
    assert api(setup, "GET", "/api/v1/health/detail").json()["repository"]["targets_version"] == 3


def test_api_needs_an_operator_token(fleet: tuple[FleetSetup, FleetServer]) -> None:
    setup, _ = fleet
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": "Basic x"}):
        for method, path in (("GET", "/api/v1/devices"), ("GET", "/api/v1/models"),
                             ("POST", "/api/v1/deployments"), ("POST", "/api/v1/models/publish")):
            r = httpx.request(method, setup.url + path, headers=headers)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
    code, _, err = nf("devices", "list", "--server", setup.url, "--token", "wrong")
    assert code == 1 and "operator token not recognised" in err
    assert httpx.get(setup.url + "/api/v1/health").status_code == 200  # no token needed
    r = api(setup, "GET", "/api/v1/nope")
    assert r.status_code == 404 and "no such endpoint" in r.json()["error"]["message"]


# --- deploy and inventory --------------------------------------------------------------

def test_deploy_publishes_retained_desired_state(fleet: tuple[FleetSetup, FleetServer],
                                                 mqtt_broker: Mosquitto) -> None:
    setup, _ = fleet
    code, out, err = nf("deploy", MODEL, "2", "--devices", f"{DEVICE},pump-08",
                        *client_args(setup))
    assert code == 0, err
    [revision] = {int(m) for m in re.findall(r"revision (\d+)", out)}  # one change, one number
    assert f"{DEVICE}" in out and "published" in out
    # revisions follow the clock (fleet_server.revisions): a restored database's next
    # document still numbers above what devices hold
    assert revision >= revision_clock(time.time()) - 600
    # Retained: a device connecting afterwards gets it at once.
    watcher = Collector(mqtt_broker.port, [desired(DEVICE)])
    try:
        [msg] = watcher.wait_for(lambda m: len(m) >= 1)
        assert msg.retain
        doc = DesiredState.model_validate_json(msg.payload)
        assert doc.revision == revision and doc.slots["logs"].model == MODEL
        assert doc.slots["logs"].version == 2
        assert doc.metadata_url == f"{setup.url}/repo/metadata/"
        assert doc.target_base_url == f"{setup.url}/repo/targets/"
    finally:
        watcher.close()
    code, out, _ = nf("deploy", MODEL, "2", "--devices", DEVICE, *client_args(setup))
    assert code == 0 and "unchanged" in out and f"revision {revision}" in out
    code, _, err = nf("deploy", MODEL, "9", "--devices", DEVICE, *client_args(setup))
    assert code == 1 and "v9 is not published" in err and "[1, 2]" in err
    r = api(setup, "POST", "/api/v1/deployments",
            json={"model": MODEL, "version": 2, "devices": ["bad/id"]})
    assert r.status_code == 422 and "devices.0" in r.json()["error"]["message"]


def _wait_device(setup: FleetSetup, pred: Any, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = api(setup, "GET", f"/api/v1/devices/{DEVICE}")
        if r.status_code == 200 and pred(r.json()):
            return dict(r.json())
        if time.monotonic() > deadline:
            raise TimeoutError(r.text)
        time.sleep(0.1)


def test_device_reports_update_the_inventory(fleet: tuple[FleetSetup, FleetServer],
                                             mqtt_broker: Mosquitto) -> None:
    setup, server = fleet
    device = Collector(mqtt_broker.port, [f"nanofleet/v1/dev/{DEVICE}/nothing"])
    v1 = ModelInfo(slot="logs", name=MODEL, version=1, label="v1", runtime="onnxruntime",
                   sha256="9" * 64)
    try:
        device.publish(status(DEVICE), Status(
            seq=1, device_id=DEVICE, state="online", agent_version="0.1.0", models=[v1],
            health="ok").model_dump_json(), retain=True)
        states: tuple[OtaState, ...] = ("downloading", "verifying", "trial", "committed")
        for seq, state in enumerate(states, 1):
            device.publish(ota(DEVICE), OtaEvent(
                seq=seq, device_id=DEVICE, slot="logs", state=state, from_version=1,
                to_version=2, artifact="delta", bytes_downloaded=3000).model_dump_json())
        # A device may not speak for another one.
        device.publish(ota(DEVICE), OtaEvent(seq=9, device_id="pump-99", slot="logs",
                                             state="failed").model_dump_json())
        _wait_device(setup, lambda d: (d["last_ota"] or {}).get("state") == "committed")
    finally:
        device.close()
    code, out, err = nf("devices", "show", DEVICE, *client_args(setup))
    assert code == 0, err
    assert "state      online  health ok  agent 0.1.0" in out
    assert "last OTA   committed v2" in out
    assert re.search(r"desired    logs=nano-logs v2 \(revision \d+, published\)", out)
    assert "committed      v1->v2     delta 3000 B" in out
    code, out, _ = nf("devices", "show", DEVICE, "--json", *client_args(setup))
    view = json.loads(out)
    assert [e["state"] for e in view["events"]] == ["committed", "trial", "verifying",
                                                    "downloading"]
    code, out, _ = nf("devices", "list", *client_args(setup))
    assert code == 0 and DEVICE in out and "logs=nano-logs v1" in out and "pump-99" not in out
    assert server.health()["mqtt"]["rejected"] >= 1
    code, _, err = nf("devices", "show", "pump-99", *client_args(setup))
    assert code == 1 and "never reported" in err


def test_last_will_marks_offline_but_keeps_the_models(fleet: tuple[FleetSetup, FleetServer],
                                                      mqtt_broker: Mosquitto) -> None:
    setup, _ = fleet
    device = Collector(mqtt_broker.port, [f"nanofleet/v1/dev/{DEVICE}/nothing"])
    try:
        device.publish(status(DEVICE), Status(seq=0, device_id=DEVICE, state="offline",
                                              ts=1.0).model_dump_json(), retain=True)
    finally:
        device.close()
    view = _wait_device(setup, lambda d: d["state"] == "offline")
    assert view["models"]["logs"]["version"] == 1


# --- root rotation (last: it changes the trust chain) -----------------------------------

def test_root_rotation_is_followed_by_old_devices_and_operators(
        fleet: tuple[FleetSetup, FleetServer], v2_bundle: Path, tmp_path: Path) -> None:
    setup, _ = fleet
    keys = setup.keys_dir
    code, out, err = nf("keys", "rotate", "--config", str(setup.config_path),
                        "--sign", str(keys / "root-1.pem"), "--sign", str(keys / "root-3.pem"),
                        "--generate-root", "3", "--generate-dir", str(tmp_path / "newroot"),
                        "--threshold", "2", "--root-out", str(tmp_path / "root-v2.json"))
    assert code == 0, err
    assert "published root v2: 3 root keys, threshold 2" in out
    client = device_client(setup, tmp_path / "device")  # provisioned with root v1
    client.refresh()
    assert json.loads((tmp_path / "device" / "root.json").read_bytes())["signed"]["version"] == 2
    # The operator still holds root v1 only: publishing walks the chain too.
    v3 = tmp_path / "v3.nfb"
    v3.write_bytes(_v3(v2_bundle))
    code, out, err = nf(*publish_args(setup, v3), "--minimum-version", "2")
    assert code == 0, err
    assert "published nano-logs v3" in out and "delta from v2" in out and "delta from v1" in out
    client.refresh()
    assert client.minimum_version("logs") == 2  # operator-signed: devices refuse v1 now
    code, out, _ = nf("model", "list", *client_args(setup))
    assert "signed minimum v2" in out
    # Old root keys alone can no longer sign a root.
    code, _, err = nf("keys", "rotate", "--config", str(setup.config_path),
                      "--sign", str(keys / "root-1.pem"), "--sign", str(keys / "root-2.pem"))
    assert code == 1 and "is neither an old nor a new root key" in err
