"""The fleet operator, as the rig plays it: the library calls behind ``nanofleet model
publish`` (verify the server's targets like a device, sign with the targets key,
upload), ``nanofleet deploy`` and ``nanofleet alerts mute``, in-process (no CLI start-up
per step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contract.mutes import AlertMute
from fleet_server.client import ApiClient
from fleet_server.repository.keys import load_signer
from fleet_server.repository.operator import add_targets, fetch_verified_targets
from hil.fleet import FleetSetup


class Operator:
    def __init__(self, fleet: FleetSetup, cache_dir: Path) -> None:
        self.fleet = fleet
        self.client = ApiClient(fleet.url, fleet.token, timeout=120)
        self.cache = cache_dir
        self.signer = load_signer(fleet.targets_key)

    def publish(self, bundle: bytes, minimum_version: int | None = None) -> dict[str, Any]:
        """Sign ``bundle`` and upload it; the server's answer (deltas it built)."""
        current = fetch_verified_targets(self.client.metadata_url,
                                         self.fleet.root_file.read_bytes(), self.cache)
        newest_root = (self.cache / "root.json").read_bytes()
        update = add_targets(current, [self.signer], bundle=bundle,
                             minimum_version=minimum_version, trusted_root=newest_root,
                             variants=True)  # as nanofleet model publish: per-runtime targets
        result: dict[str, Any] = self.client.publish(update.metadata, update.files)
        return result

    def deploy(self, model: str, version: int, devices: list[str]) -> dict[str, Any]:
        result: dict[str, Any] = self.client.post_json(
            "/api/v1/deployments", {"model": model, "version": version, "devices": devices})
        return result


    def mute_top(self, device: str, days: int) -> AlertMute:
        """Mute the shape of ``device``'s most frequent mutable alert (``nanofleet alerts
        shapes --device``, then ``nanofleet alerts mute``): the mute, as the device's
        list will carry it."""
        shapes = self.client.get("/api/v1/alert-shapes", {"device": device})["shapes"]
        top = next((g for g in shapes if g["mutable"]), None)
        if top is None:
            raise ValueError(f"{device} has sent no alert a mute can name yet")
        made = self.client.post_json(f"/api/v1/alerts/{top['alert_id']}/mute",
                                     {"days": days, "reason": "HIL: judged a false alarm"})
        return AlertMute(id=made["id"], shape=made["shape"], prefix=made["prefix"],
                         source=made["source"], expires=made["expires_at"],
                         reason=made["reason"])


def publish_summary(result: dict[str, Any]) -> str:
    """One line for the timeline: what was published and the deltas built."""
    parts = [f"{p['model']} v{p['version']} ({p['result_length']} B)"
             for p in result.get("published", [])]
    for d in result.get("deltas", []):
        if d.get("status") == "listed":
            what = f"{d['runtime']} " if d.get("runtime") else ""
            parts.append(f"{what}delta from v{d['base_version']}: {d['length']} B "
                         f"({100 * d['fraction']:.2f} %)")
        else:
            parts.append(f"no delta from v{d['base_version']}: {d.get('status')}")
    return "published " + ", ".join(parts)
