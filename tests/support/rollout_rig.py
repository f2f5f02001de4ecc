"""A fleet server with published releases, for rollout tests: real server process, real
Mosquitto, real signed releases (v1 = the shipped bundle, later versions its re-labels)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from contract.bundle import pack_bundle, read_bundle
from hil.fleet import FleetSetup
from nanomodel import default_bundle_path
from tests.support.fleet_cli import nf

MODEL = "nano-logs"


def client_args(setup: FleetSetup, token: str | None = None) -> list[str]:
    return ["--server", setup.url, "--token", token or setup.token]


def relabeled(version: int, out: Path) -> Path:
    """The shipped model's weights under another version (a re-release)."""
    bundle = read_bundle(default_bundle_path().read_bytes())
    manifest = bundle.manifest.model_copy(update={"version": version,
                                                  "version_label": f"v{version}"})
    out.write_bytes(pack_bundle(manifest, bundle.files))
    return out


def publish(setup: FleetSetup, bundle: Path) -> None:
    code, _, err = nf("model", "publish", str(bundle), "--targets-key", str(setup.targets_key),
                      "--cache-dir", str(setup.workdir / "operator-cache"), *client_args(setup))
    assert code == 0, err


def api(setup: FleetSetup, method: str, path: str, token: str | None = None,
        **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or setup.token}"}
    return httpx.request(method, setup.url + path, headers=headers, timeout=30, **kwargs)


def rollout(setup: FleetSetup, rollout_id: str, devices: bool = True) -> dict[str, Any]:
    r = api(setup, "GET", f"/api/v1/rollouts/{rollout_id}",
            params={"devices": str(devices).lower()})
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def wait_rollout(setup: FleetSetup, rollout_id: str, pred: Callable[[dict[str, Any]], bool],
                 timeout: float = 20.0, what: str = "condition") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = rollout(setup, rollout_id)
        if pred(r):
            return r
        if time.monotonic() > deadline:
            raise TimeoutError(f"rollout {rollout_id}: {what} not met: status {r['status']}, "
                               f"counts { {k: v for k, v in r['counts'].items() if v} }, "
                               f"note {r['note']!r}, log {[e['text'] for e in r['log']]}")
        time.sleep(0.05)


def wait_devices(setup: FleetSetup, ids: list[str], pred: Callable[[dict[str, Any]], bool],
                 timeout: float = 10.0) -> None:
    """Until the inventory shows every device in ``ids`` matching ``pred``."""
    deadline = time.monotonic() + timeout
    while True:
        found = {d["device_id"]: d for d in api(setup, "GET", "/api/v1/devices").json()[
            "devices"]}
        if all(i in found and pred(found[i]) for i in ids):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"inventory: {[(i, found.get(i, {}).get('state')) for i in ids]}")
        time.sleep(0.05)
