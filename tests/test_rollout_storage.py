"""The rollout driver, tracking and operator actions in-process on SQLite and on a real
PostgreSQL: one tick at a time with a chosen clock, device reports through the real
ingest path, desired-state rows written in the tick's transaction, the optimistic lock
against a racing operator, and the driver lease between replicas."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from contract.bundle_features import BUNDLE_FEATURES
from contract.messages import ModelInfo, OtaEvent, OtaState, Status
from fleet_server.db import Device, ModelVersion
from fleet_server.desired import DesiredStates
from fleet_server.device_labels import LabelChange, set_labels
from fleet_server.device_reports import Report
from fleet_server.device_views import device_summary
from fleet_server.inventory import ingest
from fleet_server.repository.keys import load_signer
from fleet_server.repository.operator import add_targets
from fleet_server.rollouts.driver import RolloutDriver, live_view, needs_of
from fleet_server.rollouts.spec import FailureThreshold, Selector, Strategy
from fleet_server.rollouts.store import RolloutRow
from fleet_server.rollouts.tracking import track_reports
from fleet_server.rollouts.views import RolloutCreate
from fleet_server.service import FleetService
from hil.fleet import setup_fleet
from tests.support.rollout_rig import MODEL, relabeled


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FleetService]:
    setup = setup_fleet(tmp_path, mqtt_port=1)
    updates: dict[str, object] = {
        "mqtt": setup.config.mqtt.model_copy(update={"enabled": False})}
    if request.param == "postgresql":
        updates["database_url"] = request.getfixturevalue("pg").new_database()
    svc = FleetService(setup.config.model_copy(update=updates))
    try:
        for version in (1, 2):
            bundle = relabeled(version, tmp_path / f"v{version}.nfb").read_bytes()
            update = add_targets(svc.repo.targets_bytes(), [load_signer(setup.targets_key)],
                                 bundle=bundle)
            files = {}
            for path, data in update.files.items():
                (tmp_path / path.replace("/", "_")).write_bytes(data)
                files[path] = tmp_path / path.replace("/", "_")
            svc.releases.publish(update.metadata, files, actor="ops")
        assert svc.db.engine.dialect.name == request.param
        yield svc
    finally:
        svc.stop()


CURRENT_READS = sorted(BUNDLE_FEATURES)


class Devices:
    """Reports from devices, through the server's real ingest + tracking path."""

    def __init__(self, svc: FleetService) -> None:
        self.svc = svc
        self.seq = 0

    def send(self, *reports: Report) -> int:
        with self.svc.db.session() as session:
            ingest(session, reports)
            return track_reports(session, reports)

    def online(self, device_id: str, version: int = 1,
               reads: list[str] | None = CURRENT_READS) -> None:
        """A status as today's agent sends it; ``reads`` None: as an agent before December
        2026 (it says nothing of what it reads)."""
        self.seq += 1
        info = ModelInfo(slot="logs", name=MODEL, version=version, label=f"v{version}",
                         runtime="onnxruntime", sha256="a" * 64)
        self.send(Report(device_id, "status", Status(
            seq=self.seq, device_id=device_id, state="online", models=[info], health="ok",
            reads=reads), time.time()))

    def ota(self, device_id: str, state: OtaState, rollout_id: str, reason: str | None = None,
            ts: float | None = None) -> OtaEvent:
        self.seq += 1
        event = OtaEvent(seq=self.seq, device_id=device_id, slot="logs", state=state,
                         from_version=1, to_version=2, rollout_id=rollout_id, reason=reason,
                         ts=ts or time.time())
        self.send(Report(device_id, "ota", event, time.time()))
        return event


def states(svc: FleetService, rollout_id: str) -> dict[str, tuple[str, int]]:
    view = svc.rollouts.get(rollout_id, with_devices=True)
    assert view.devices is not None
    return {d.device_id: (d.state, d.attempts) for d in view.devices}


def desired_doc(svc: FleetService, device_id: str) -> dict[str, object]:
    with svc.db.session() as session:
        row = svc.desired.current(session, device_id)
        assert row is not None
        return {"revision": row.revision, **row.document}


def test_driver_ticks_track_reports_and_write_desired_state(service: FleetService) -> None:
    svc, dev = service, Devices(service)
    ids = ["p1", "p2", "p3", "p4"]
    for i in ids:
        dev.online(i)
    with svc.db.session() as session:
        set_labels(session, ids, LabelChange(group="plant"), time.time())
    strategy = Strategy(canary=1, waves=[100], soak_s=0, retry_base_s=10,
                        max_failures=FailureThreshold(kind="count", value=0))
    view = svc.rollouts.create(RolloutCreate(model=MODEL, version=2,
                                             select=Selector(group="plant"),
                                             strategy=strategy), actor="ops")
    rid = view.id
    t0 = time.time()
    svc.rollout_driver.tick_all(t0)
    [canary] = [d for d, (s, _) in states(svc, rid).items() if s == "notified"]
    doc = desired_doc(svc, canary)
    assert doc["rollout_id"] == rid and doc["action"] == "install"
    assert doc["slots"] == {"logs": {"model": MODEL, "version": 2}}

    old = dev.ota(canary, "downloading", rid)
    dev.ota(canary, "trial", rid)
    assert dev.send(Report(canary, "ota", old, time.time())) == 0  # duplicate: no change
    dev.ota(canary, "committed", rid)
    svc.rollout_driver.tick_all(t0 + 1)
    wave = [d for d in ids if d != canary]
    assert {states(svc, rid)[d][0] for d in wave} == {"notified"}

    # A transient failure: retried under a new revision after the backoff.
    flaky = wave[0]
    rev = desired_doc(svc, flaky)["revision"]
    dev.ota(flaky, "failed", rid, reason="unavailable")
    svc.rollout_driver.tick_all(t0 + 2)
    assert states(svc, rid)[flaky] == ("retrying", 1)
    svc.rollout_driver.tick_all(t0 + 12)
    assert states(svc, rid)[flaky] == ("notified", 2)
    assert desired_doc(svc, flaky)["revision"] == rev + 1  # type: ignore[operator]
    # An event older than the newest applied one (a spool replay) changes nothing.
    dev.ota(flaky, "committed", rid, ts=time.time() + 5)
    dev.ota(flaky, "downloading", rid, ts=time.time() - 100)
    assert states(svc, rid)[flaky][0] == "committed"

    for d in wave[1:]:
        dev.ota(d, "committed", rid)
    svc.rollout_driver.tick_all(t0 + 13)
    done = svc.rollouts.get(rid)
    assert done.status == "completed" and done.counts["committed"] == 4
    assert [line.text for line in done.log][-1] == "completed"


def test_operator_action_wins_over_a_racing_tick(service: FleetService) -> None:
    svc, dev = service, Devices(service)
    for i in ("q1", "q2"):
        dev.online(i)
    rid = svc.rollouts.create(RolloutCreate(model=MODEL, version=2,
                                            select=Selector(ids=["q1", "q2"]),
                                            strategy=Strategy(canary=0, soak_s=0)),
                              actor="ops").id
    with pytest.raises(StaleDataError), svc.db.session() as session:
        row = session.get(RolloutRow, rid)
        assert row is not None and row.status == "running"
        svc.rollouts.pause(rid, "ops")  # commits in between
        row.stage = 0
        row.updated_at = time.time()  # this stale write must fail
    assert svc.rollouts.get(rid).status == "paused"
    svc.rollout_driver.tick_all()
    assert set(states(svc, rid).values()) == {("pending", 0)}  # paused: nobody notified

    svc.rollouts.resume(rid, "ops")
    svc.rollout_driver.tick_all()
    dev.ota("q1", "trial", rid)
    result = svc.rollouts.abort(rid, "ops")
    assert sorted(result.rollback_sent) == ["q1", "q2"]
    assert desired_doc(svc, "q1")["action"] == "rollback"
    assert states(svc, rid)["q2"] == ("cancelled", 1)


def test_only_the_lease_holder_drives_rollouts(service: FleetService) -> None:
    now = time.time()
    first = RolloutDriver(service.db, service.desired, owner="replica-a", lease_s=10)
    second = RolloutDriver(service.db, DesiredStates(service.db, None, metadata_url=None,
                                                     target_base_url=None),
                           owner="replica-b", lease_s=10)
    assert first.holds_lease(now)
    assert not second.holds_lease(now + 1)
    assert first.holds_lease(now + 5)  # renewed
    assert not second.holds_lease(now + 14)
    assert second.holds_lease(now + 16)  # replica-a stopped renewing: taken over
    assert second.tick_all(now + 16) == 0 and first.tick_all(now + 17) == 0


def test_the_policy_sees_when_a_device_came_online_not_its_latest_status(
        service: FleetService) -> None:
    """What the driver hands the policy: a device re-sending its status (review, December
    2026: it held a `notified` record, and so its stage, open for ever) stays online since
    its first status; one that went away and came back is online since its return."""
    svc, dev = service, Devices(service)
    dev.online("s1")
    with svc.db.session() as session:
        first = live_view(session, ["s1"], MODEL)["s1"].online_since
    time.sleep(0.05)
    dev.online("s1")
    with svc.db.session() as session:
        assert live_view(session, ["s1"], MODEL)["s1"].online_since == first
    dev.send(Report("s1", "status", Status(seq=0, device_id="s1", state="offline"),
                    time.time()))
    with svc.db.session() as session:
        view = live_view(session, ["s1"], MODEL)["s1"]
    assert not view.online and view.online_since is None
    dev.online("s1")
    with svc.db.session() as session:
        back = live_view(session, ["s1"], MODEL)["s1"].online_since
    assert first is not None and back is not None and back > first


def test_a_device_whose_agent_cannot_read_the_bundle_is_skipped(
        service: FleetService) -> None:
    """v2 brings the model's level offsets and known programs in its manifest (as the
    shipped bundle does): an
    agent before December 2026 says nothing of what it reads and would refuse it after the
    download, so it is skipped and named; today's agent is notified, and so is a device the
    server has no status from (it decides itself, as every agent always did)."""
    svc, dev = service, Devices(service)
    with svc.db.session() as session:  # as a release published before the server read them
        for row in session.scalars(select(ModelVersion)):
            row.needs = None
    svc.releases.sync()  # (at every start and publish)
    with svc.db.session() as session:
        assert set(needs_of(session, MODEL, 2)) == {"known_programs", "level_offsets",
                                                    "tokenizer.head:time-host-v1"}
    dev.online("new-agent")
    dev.online("old-agent", reads=None)
    strategy = Strategy(canary=0, waves=[100], soak_s=0)
    rid = svc.rollouts.create(RolloutCreate(
        model=MODEL, version=2, select=Selector(ids=["new-agent", "old-agent", "unseen"]),
        strategy=strategy), actor="ops").id
    # Said at once, before any stage starts: the operator can upgrade the agent first.
    created = svc.rollouts.get(rid).log
    assert [line.text for line in created[1:]] == [
        "1 of 3 device(s) will be skipped when their stage starts: their agent cannot read "
        "known_programs (1), level_offsets (1) of this bundle; upgrade the agent package first"]
    svc.rollout_driver.tick_all(time.time())
    view = svc.rollouts.get(rid, with_devices=True)
    assert view.devices is not None
    got = {d.device_id: (d.state, d.reason, d.detail) for d in view.devices}
    assert got["new-agent"][0] == "notified" and got["unseen"][0] == "notified"
    assert got["old-agent"][:2] == ("skipped", "cannot-read")
    assert "level_offsets" in str(got["old-agent"][2]) and "upgrade the agent" in str(
        got["old-agent"][2])
    with svc.db.session() as session:  # its desired state was never written
        assert svc.desired.current(session, "old-agent") is None
    # What the device list shows: the agent's own words, or null for the older one.
    with svc.db.session() as session:
        assert device_summary(session.get(Device, "new-agent"))["reads"] == CURRENT_READS
        assert device_summary(session.get(Device, "old-agent"))["reads"] is None
    # The operator upgrades its agent, as the skip asked: its next status says what it
    # reads, and the running rollout notifies it.
    dev.online("old-agent")
    svc.rollout_driver.tick_all(time.time() + 1)
    assert states(svc, rid)["old-agent"] == ("notified", 1)
    assert desired_doc(svc, "old-agent")["slots"] == {"logs": {"model": MODEL, "version": 2}}
