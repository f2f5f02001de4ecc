"""Fleet server decisions as pure functions: desired-state revisions, delta bases and
pruning, report parsing and inventory rules, config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.limits import MAX_STORED_INT
from contract.messages import DesiredModel, DesiredState, Metrics, ModelInfo, OtaEvent, Status
from contract.tuf_targets import ModelTargetInfo
from fleet_server.app import repo_file
from fleet_server.config import (
    ServerConfigError,
    config_toml,
    load_config,
    parse_config,
    render_config,
)
from fleet_server.db import Device
from fleet_server.desired import next_desired
from fleet_server.device_reports import ReportRejected, parse_report
from fleet_server.inventory import apply_metrics, apply_ota, apply_status
from fleet_server.releases import delta_bases, stale_deltas
from fleet_server.report_lanes import report_filters
from fleet_server.revisions import REVISION_EPOCH, next_revision, revision_clock

pytestmark = pytest.mark.unit

SHA = "a" * 64


def full(model: str, version: int) -> ModelTargetInfo:
    return ModelTargetInfo(kind="full", model=model, slot="logs", version=version,
                           result_sha256=SHA, result_length=10)


def delta(model: str, version: int, base: int) -> ModelTargetInfo:
    return ModelTargetInfo(kind="delta", model=model, slot="logs", version=version,
                           result_sha256=SHA, result_length=10, base_version=base,
                           base_sha256=SHA, delta_format="nfd-1")


# --- desired state ---------------------------------------------------------------------

def test_next_desired_bumps_revision_only_on_change() -> None:
    # a clock before the revision epoch (never set): revisions count up from 1
    first = next_desired(None, slot="logs", model="m", version=2, metadata_url="u/m",
                         target_base_url="u/t", now=0.0)
    assert first.revision == 1 and first.slots == {"logs": DesiredModel(model="m", version=2)}
    same = next_desired(first, slot="logs", model="m", version=2, metadata_url="u/m",
                        target_base_url="u/t", now=0.0)
    assert same is first
    other_slot = next_desired(first, slot="sensors", model="s", version=1, metadata_url="u/m",
                              target_base_url="u/t", now=0.0)
    assert other_slot.revision == 2 and set(other_slot.slots) == {"logs", "sensors"}
    moved = next_desired(first, slot="logs", model="m", version=2, metadata_url="cdn/m",
                         target_base_url="cdn/t", now=0.0)
    assert moved.revision == 2 and moved.metadata_url == "cdn/m"
    rollback_doc = first.model_copy(update={"action": "rollback"})
    again = next_desired(DesiredState.model_validate(rollback_doc.model_dump()), slot="logs",
                         model="m", version=2, metadata_url="u/m", target_base_url="u/t",
                         now=0.0)
    assert again.action == "install" and again.revision == 2


def test_revisions_follow_the_clock_so_a_restored_database_numbers_above_its_devices() -> None:
    day = 86_400.0
    t0 = REVISION_EPOCH + 300 * day
    assert revision_clock(t0) == 300 * 86_400 and revision_clock(0.0) == 0
    # the first change after a long calm takes the clock; a burst counts on by one
    assert next_revision(5, t0) == revision_clock(t0)
    burst = [revision_clock(t0)]
    for _ in range(3):
        burst.append(next_revision(burst[-1], t0))
    assert burst == [revision_clock(t0) + i for i in range(4)]
    # a backup taken before the burst, restored a minute later: its next revision is
    # above every revision handed out before the restore
    assert next_revision(5, t0 + 60) > burst[-1]
    # a clock stepped back never makes revisions go back
    assert next_revision(burst[-1], t0 - day) == burst[-1] + 1
    with pytest.raises(OverflowError):
        next_revision(MAX_STORED_INT, t0)
    # a server clock set past what the columns hold is not followed: the counter goes on
    assert revision_clock(REVISION_EPOCH + MAX_STORED_INT + 1.0) == 0
    assert next_revision(41, REVISION_EPOCH + 2.0**40) == 42


# --- deltas ----------------------------------------------------------------------------

def test_delta_bases_are_the_k_newest_earlier_versions_of_the_same_model() -> None:
    listed = [full("m", v) for v in (1, 2, 3, 5)] + [full("other", 4), delta("m", 3, 2)]
    assert delta_bases(listed, full("m", 6), 3) == [5, 3, 2]
    assert delta_bases(listed, full("m", 4), 10) == [3, 2, 1]
    assert delta_bases(listed, full("m", 1), 3) == []
    assert delta_bases(listed, full("m", 6), 0) == []


def test_stale_deltas_are_those_to_versions_no_longer_among_the_newest() -> None:
    fulls = [full("m", v) for v in (1, 2, 3, 4)] + [full("o", 1), full("o", 2)]
    deltas = {delta("m", 2, 1).target_path(): delta("m", 2, 1),
              delta("m", 3, 2).target_path(): delta("m", 3, 2),
              delta("m", 4, 3).target_path(): delta("m", 4, 3),
              delta("o", 2, 1).target_path(): delta("o", 2, 1),
              delta("gone", 2, 1).target_path(): delta("gone", 2, 1)}
    assert stale_deltas(deltas, fulls, 2) == [
        "models/gone/2/delta-from-1.nfd", "models/m/2/delta-from-1.nfd"]
    assert stale_deltas(deltas, fulls, 1) == [
        "models/gone/2/delta-from-1.nfd", "models/m/2/delta-from-1.nfd",
        "models/m/3/delta-from-2.nfd"]


# --- device reports --------------------------------------------------------------------

def _status() -> Status:
    models = [ModelInfo(slot="logs", name="m", version=3, label="v3", runtime="onnxruntime",
                        sha256=SHA)]
    return Status(seq=1, device_id="d1", state="online", agent_version="0.1", models=models,
                  health="ok")


def test_parse_report_accepts_only_a_devices_own_reports() -> None:
    payload = _status().model_dump_json().encode()
    report = parse_report("nanofleet/v1/dev/d1/status", payload, 5.0)
    assert report.kind == "status" and report.device_id == "d1"
    cases = {
        ("nanofleet/v1/dev/d2/status", payload): "payload claims device 'd1'",
        ("nanofleet/v1/dev/d1/results/logs", payload): "not a device status/metrics/ota topic",
        ("nanofleet/v1/dev/d1/status", b""): "empty payload",
        ("nanofleet/v1/dev/d1/status", b"{oops"): "not JSON",
        ("nanofleet/v1/dev/d1/ota", payload): "invalid ota",
        ("nanofleet/v1/dev/d1/status", b"x" * 300_000): "is over",
    }
    for (topic, data), message in cases.items():
        with pytest.raises(ReportRejected, match=message):
            parse_report(topic, data, 5.0)


def _device() -> Device:
    return Device(device_id="d1", models=[], metrics={}, tags=[], state="unknown",
                  agent_version="", health="unknown")


def test_last_will_changes_state_only() -> None:
    device = _device()
    apply_status(device, _status(), received_at=100.0)
    assert device.state == "online" and device.models[0]["version"] == 3
    assert device.last_seen == 100.0
    # The Will is stamped at connect time (older ts) yet arrives last: it still applies.
    apply_status(device, Status(seq=0, device_id="d1", state="offline", ts=1.0), 200.0)
    assert device.state == "offline" and device.models[0]["version"] == 3
    assert device.last_seen == 100.0 and device.health == "ok"


def _run_status(seq: int, version: int, started_at: float = 500.0,
                state: str = "online") -> Status:
    models = [ModelInfo(slot="logs", name="m", version=version, label=f"v{version}",
                        runtime="onnxruntime", sha256=SHA)]
    return Status(seq=seq, device_id="d1", state=state, agent_version="0.1",  # type: ignore[arg-type]
                  started_at=started_at, models=models, health="ok")


def test_one_agent_runs_statuses_are_ordered_by_its_seq_not_by_arrival() -> None:
    """Two replicas stamp arrival on their own threads: the older status can be stamped
    later (a busy replica). Within one run the agent's seq decides."""
    device = _device()
    apply_status(device, _run_status(seq=10, version=1), received_at=100.0)
    apply_status(device, _run_status(seq=12, version=3), received_at=100.1)
    apply_status(device, _run_status(seq=11, version=2), received_at=100.3)  # stamped late
    assert device.models[0]["version"] == 3 and device.last_status_seq == 12
    assert device.last_status_at == 100.1 and device.last_seen == 100.3
    apply_status(device, _run_status(seq=12, version=9), received_at=101.0)  # a duplicate seq
    assert device.models[0]["version"] == 3
    # A newer status stamped earlier than the stored one still applies, and the stored
    # arrival time does not go back.
    apply_status(device, _run_status(seq=13, version=4), received_at=100.05)
    assert device.models[0]["version"] == 4 and device.last_status_at == 100.1
    # A stopped status of the run is ordered the same way.
    apply_status(device, _run_status(seq=14, version=4, state="stopped"), received_at=101.5)
    apply_status(device, _run_status(seq=13, version=4), received_at=101.6)
    assert device.state == "stopped"


def test_a_new_run_or_the_last_will_is_ordered_by_arrival() -> None:
    device = _device()
    apply_status(device, _run_status(seq=50, version=1), received_at=100.0)
    # The state directory was wiped: the new run's seq starts again below the stored one.
    apply_status(device, _run_status(seq=1, version=2, started_at=900.0), received_at=200.0)
    assert device.models[0]["version"] == 2 and device.started_at == 900.0
    # The old run's last status, stamped before the new run's, does not undo it.
    apply_status(device, _run_status(seq=51, version=1), received_at=150.0)
    assert device.models[0]["version"] == 2
    # The Will (seq 0) applies by arrival; after it, the reconnected run's next status
    # applies by arrival too, and a stale one stamped before the Will does not.
    apply_status(device, Status(seq=0, device_id="d1", state="offline", ts=1.0), 300.0)
    assert device.state == "offline"
    apply_status(device, _run_status(seq=2, version=2, started_at=900.0), received_at=299.0)
    assert device.state == "offline"
    apply_status(device, _run_status(seq=3, version=3, started_at=900.0), received_at=301.0)
    assert device.state == "online" and device.models[0]["version"] == 3
    # An agent that sends no start time (0) is ordered by arrival.
    apply_status(device, _run_status(seq=9, version=5, started_at=0.0), received_at=302.0)
    apply_status(device, _run_status(seq=10, version=6, started_at=0.0), received_at=301.5)
    assert device.models[0]["version"] == 5


def test_a_numbered_will_falls_between_its_connection_and_the_next() -> None:
    """Agents that number their connections: the Will of connection 1, stamped after the
    reconnected agent's status of connection 2 by a busy replica, does not win; the Will
    of connection 2 does; a late status of connection 2 after its Will does not."""
    def numbered(seq: int, connection: int, state: str = "online") -> Status:
        return _run_status(seq, 1, state=state).model_copy(update={
            "connection": connection, **({"seq": 0, "models": []} if state == "offline" else {})})

    device = _device()
    apply_status(device, numbered(5, 1), received_at=100.0)
    apply_status(device, numbered(6, 2), received_at=100.1)
    apply_status(device, numbered(0, 1, "offline"), received_at=100.2)
    assert device.state == "online" and device.last_status_connection == 2
    apply_status(device, numbered(0, 2, "offline"), received_at=100.3)
    assert device.state == "offline" and device.models[0]["version"] == 1
    apply_status(device, numbered(7, 2), received_at=100.4)
    assert device.state == "offline"
    apply_status(device, numbered(8, 3), received_at=100.35)  # stamped early, still newer
    assert device.state == "online" and device.last_status_connection == 3
    # An older agent's statuses (no number) after a numbered one: ordered as before.
    apply_status(device, _run_status(seq=9, version=2), received_at=100.5)
    assert device.models[0]["version"] == 2 and device.last_status_connection is None


def test_online_since_is_when_the_device_came_online_not_its_latest_status() -> None:
    """A rollout times a device that has not answered its notification from here: a device
    re-sending its status must not move it (review, December 2026: it held its stage open)."""
    device = _device()
    apply_status(device, _run_status(seq=1, version=1), received_at=100.0)
    apply_status(device, _run_status(seq=2, version=1), received_at=200.0)
    assert device.online_since == 100.0
    apply_status(device, Status(seq=0, device_id="d1", state="offline", ts=1.0), 300.0)
    assert device.online_since is None
    apply_status(device, _run_status(seq=3, version=1), received_at=400.0)
    assert device.online_since == 400.0
    apply_status(device, _run_status(seq=4, version=1, state="stopped"), received_at=500.0)
    assert device.online_since is None


def test_older_ota_events_and_metrics_do_not_overwrite_newer_ones() -> None:
    device = _device()
    apply_ota(device, OtaEvent(seq=5, device_id="d1", slot="logs", state="committed",
                               to_version=3, ts=50.0), 60.0)
    replayed = OtaEvent(seq=4, device_id="d1", slot="logs", state="trial", to_version=3,
                        ts=40.0, is_historical=True)
    apply_ota(device, replayed, 70.0)
    assert device.last_ota_state == "committed" and device.last_seen == 70.0
    apply_metrics(device, Metrics(seq=2, device_id="d1", uptime_s=9, counters={"a": 2},
                                  gauges={}, ts=20.0), 71.0)
    apply_metrics(device, Metrics(seq=1, device_id="d1", uptime_s=5, counters={"a": 1},
                                  gauges={}, ts=10.0), 72.0)
    assert device.metrics["counters"] == {"a": 2}


def test_report_filters_use_shared_subscriptions_when_asked() -> None:
    assert report_filters(None) == ["nanofleet/v1/dev/+/status", "nanofleet/v1/dev/+/ota",
                                    "nanofleet/v1/dev/+/metrics", "nanofleet/v1/dev/+/alerts"]
    assert report_filters("fleet")[0] == "$share/fleet/nanofleet/v1/dev/+/status"


# --- config ----------------------------------------------------------------------------

def test_config_round_trip_and_relative_paths(tmp_path: Path) -> None:
    text = render_config(Path("data"), token_name="ops", token_sha256="b" * 64,
                         public_url="https://fleet.example:8443", mqtt_port=8883)
    (tmp_path / "server.toml").write_text(text)
    config = load_config(tmp_path / "server.toml")
    assert config.data_dir == tmp_path / "data"
    assert config.db_url == f"sqlite:///{tmp_path / 'data' / 'fleet.db'}"
    assert config.repo_urls() == ("https://fleet.example:8443/repo/metadata/",
                                  "https://fleet.example:8443/repo/targets/")
    assert config.mqtt.port == 8883 and config.operator_tokens[0].name == "ops"
    (tmp_path / "again.toml").write_text(config_toml(config))
    assert load_config(tmp_path / "again.toml") == config


@pytest.mark.parametrize(("data", "message"), [
    ({}, "data_dir: Field required"),
    ({"data_dir": "d", "bind_prot": 1}, "bind_prot: Extra inputs are not permitted (hint: "
     "unknown key"),
    ({"data_dir": "d", "deltas": {"max_fraction": 2}}, "deltas.max_fraction"),
    ({"data_dir": "d", "operator_tokens": [{"name": "a", "sha256": "short"}]},
     "operator_tokens.0.sha256"),
    ({"data_dir": "d", "operator_tokens": [{"name": "a", "sha256": "c" * 64},
                                           {"name": "a", "sha256": "d" * 64}]},
     "names must be unique"),
    ({"data_dir": "d", "public_url": "fleet.example"}, "public_url"),
])
def test_config_errors_name_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(ServerConfigError) as err:
        parse_config(data, "server.toml")
    assert message in str(err.value)


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ServerConfigError, match="cannot read the file"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("data_dir = ")
    with pytest.raises(ServerConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_repo_file_refuses_paths_outside_metadata_and_targets(tmp_path: Path) -> None:
    (tmp_path / "metadata").mkdir()
    (tmp_path / "metadata" / "1.root.json").write_text(json.dumps({}))
    assert repo_file(tmp_path, "metadata/1.root.json") == tmp_path / "metadata" / "1.root.json"
    for bad in ("metadata/../server.toml", "keys/x.pem", "metadata", "metadata/.lock",
                "metadata//1.root.json", "targets/./a"):
        with pytest.raises(Exception, match="not a repository file"):
            repo_file(tmp_path, bad)
