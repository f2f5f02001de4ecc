"""The fleet-scale benchmark's machinery on a small fleet (hil/scale.py, as
benchmarks/fleet_rollout.py runs it with 1,000 devices): a real Mosquitto, a real fleet
server, v2 published signed with a real delta, simulated devices in two processes, each
device with its own MQTT connection, the agent's OTA state machine and the agent's real
verification path (TUF refresh, delta download, delta apply, hash checks).

Proves that every device verified its artifact against the signed full target, and that
the verification really runs: a tampered delta is refused by each device (which then
takes the full bundle, as the agent does), and with both artifacts tampered the canary
fails and the rollout halts by itself.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hil.scale import RolloutPlan, ScaleRig

DEVICES = 40


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleRig]:
    with ScaleRig(tmp_path_factory.mktemp("scale"), rollout_tick_s=0.2) as r:
        yield r


def live_hashes(rig: ScaleRig, prefix: str) -> dict[str, str | None]:
    """device id -> sha256 of its live bundle, as the inventory has it (from its status)."""
    devices = rig.api().get("/api/v1/devices")["devices"]
    return {d["device_id"]: d["models"]["logs"]["sha256"] for d in devices
            if d["device_id"].startswith(prefix)}


def test_every_device_verifies_the_delta_and_the_rollout_completes(rig: ScaleRig) -> None:
    r = rig.run_rollout(RolloutPlan(devices=DEVICES, processes=2, canary=4,
                                    waves=(10.0, 50.0, 100.0), prefix="ok-", trial_s=0.05,
                                    timeout_s=60))
    assert r["status"] == "completed", r
    assert r["counts"] == {"committed": DEVICES}
    # wave 10 % (4 devices) is what the canary covers already: dropped
    assert [(s["name"], s["devices"]) for s in r["stages"]] == [
        ("canary", 4), ("wave 50%", 16), ("wave 100%", 20)]
    d = r["devices"]
    # Each device ran the whole path on its own: a TUF refresh, the delta (fetched once
    # per process, then taken from the cache only after its own hash check), the delta
    # applied, the result's hash equal to the signed full target, the bundle read back.
    assert d["devices_verified"] == DEVICES and d["refreshes"] == DEVICES
    assert d["downloads"] == {"delta": DEVICES, "full": 0}
    assert d["verified"] == {"delta": DEVICES, "full": 0}
    assert d["smoke_checked"] == DEVICES and d["refusals"] == {}
    assert d["live_versions"] == {"2": DEVICES}
    assert d["http_requests"] <= 2 * DEVICES + 10  # timestamp + next-root probe each
    assert r["database"]["ota_events"] == 6 * DEVICES  # downloading ... committed
    assert r["database"]["committed_by_artifact"] == {"delta": DEVICES}
    assert r["ingest"]["reports"] >= 6 * DEVICES and r["ingest"]["mean_per_s"] > 0
    assert r["rollout_s"] < 30
    # What the devices report running is the signed v2, byte for byte.
    assert set(live_hashes(rig, "ok-").values()) == {rig.published["full_sha256"]}


def test_a_tampered_delta_is_refused_by_every_device_which_takes_the_full_bundle(
        rig: ScaleRig) -> None:
    originals = rig.tamper("delta")
    try:
        r = rig.run_rollout(RolloutPlan(devices=10, processes=2, canary=2, waves=(100.0,),
                                        prefix="td-", trial_s=0.05, timeout_s=60))
    finally:
        rig.restore(originals)
    assert r["status"] == "completed", r
    d = r["devices"]
    assert d["refusals"] == {"hash-mismatch": 10}  # the delta, on every device
    assert d["downloads"] == {"delta": 0, "full": 10}
    assert d["verified"] == {"delta": 0, "full": 10} and d["devices_verified"] == 10
    assert r["database"]["committed_by_artifact"] == {"full": 10}
    assert set(live_hashes(rig, "td-").values()) == {rig.published["full_sha256"]}


def test_tampered_artifacts_fail_verification_and_the_canary_halts_the_rollout(
        rig: ScaleRig) -> None:
    originals = rig.tamper("delta") + rig.tamper("full")
    try:
        r = rig.run_rollout(RolloutPlan(devices=10, processes=2, canary=3,
                                        waves=(50.0, 100.0), prefix="bad-", trial_s=0.05,
                                        timeout_s=60))
    finally:
        rig.restore(originals)
    assert r["status"] == "halted", r
    assert r["halt_reason"] == "failure-threshold"
    assert "hash-mismatch" in r["halt_detail"]
    assert r["counts"] == {"failed": 3, "pending": 7}
    d = r["devices"]
    # The three canaries refused the delta, then the full bundle; nobody else was told.
    assert d["refusals"] == {"hash-mismatch": 6} and d["devices_verified"] == 0
    assert d["states"] == {"failed": 3, "idle": 7} and d["live_versions"] == {"1": 10}
    assert r["database"]["events_by_state"]["failed"] == 3
