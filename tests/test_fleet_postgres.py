"""The fleet server's storage on a real PostgreSQL (the same code as on SQLite): releases
indexed from the repository, desired state with row locks, device reports ingested."""

from __future__ import annotations

import time
from pathlib import Path

from contract.messages import ModelInfo, OtaEvent, Status
from fleet_server.device_reports import Report
from fleet_server.device_views import list_devices, recent_events
from fleet_server.inventory import ingest
from fleet_server.releases import models_view
from fleet_server.repository.keys import load_signer
from fleet_server.repository.operator import add_targets
from fleet_server.revisions import revision_clock
from fleet_server.service import FleetService
from hil import postgres
from hil.fleet import setup_fleet
from nanomodel import default_bundle_path


def test_service_on_postgresql(tmp_path: Path, pg: postgres.Postgres) -> None:
    setup = setup_fleet(tmp_path, mqtt_port=1)
    config = setup.config.model_copy(update={
        "database_url": pg.url, "mqtt": setup.config.mqtt.model_copy(update={"enabled": False})})
    service = FleetService(config)
    service.start()
    try:
        assert service.db.engine.dialect.name == "postgresql"
        bundle = default_bundle_path().read_bytes()
        update = add_targets(service.repo.targets_bytes(), [load_signer(setup.targets_key)],
                             bundle=bundle)
        files = {}
        for path, data in update.files.items():
            (tmp_path / path.replace("/", "_")).write_bytes(data)
            files[path] = tmp_path / path.replace("/", "_")
        outcome = service.releases.publish(update.metadata, files, actor="ops")
        assert outcome.targets_version == 2
        [model] = models_view(service.db, service.repo)
        assert model["model"] == "nano-logs" and model["versions"][0]["version"] == 1

        first = service.desired.deploy(["d1", "d2"], slot="logs", model="nano-logs", version=1,
                                       actor="ops")
        again = service.desired.deploy(["d1"], slot="logs", model="nano-logs", version=1,
                                       actor="ops")
        assert [(o.changed, o.published) for o in first] == [(True, False)] * 2
        # the first revision of each device's document: the clock (fleet_server.revisions)
        assert revision_clock(time.time()) - 60 <= first[0].revision <= revision_clock(
            time.time())
        assert (again[0].revision, again[0].changed) == (first[0].revision, False)

        now = time.time()
        info = ModelInfo(slot="logs", name="nano-logs", version=1, label="v1",
                         runtime="onnxruntime", sha256="a" * 64)
        event = OtaEvent(seq=1, device_id="d1", slot="logs", state="committed", to_version=1)
        reports = [Report("d1", "status", Status(seq=1, device_id="d1", state="online",
                                                 models=[info], health="ok"), now),
                   Report("d1", "ota", event, now)]
        with service.db.session() as session:
            assert ingest(session, reports) == 1
        with service.db.session() as session:
            assert ingest(session, [Report("d1", "ota", event, now + 1)]) == 0  # duplicate
            [device] = list_devices(session)
            assert device["models"]["logs"]["version"] == 1
            assert device["last_ota"]["state"] == "committed"
            assert len(recent_events(session, "d1", 10)) == 1
    finally:
        service.stop()


def test_concurrent_mutes_by_a_deploy_token_keep_the_limit(pg: postgres.Postgres) -> None:
    """Second review: on PostgreSQL 30 concurrent mutes of one message by a deploy-only
    token muted 16 devices (each request counted the others before any committed). The
    check holds the mute revision's row lock: MAX_DEPLOY_MUTED_DEVICES at most."""
    from concurrent.futures import ThreadPoolExecutor

    from fleet_server.db import Database
    from fleet_server.migrations import upgrade
    from fleet_server.mute_rules import WideMuteRefused
    from fleet_server.mutes import (
        MAX_DEPLOY_MUTED_DEVICES,
        AlertMuteRow,
        mute_alert,
    )
    from tests.support.alert_rows import stored_alert

    db = Database(pg.new_database())
    upgrade(db)
    try:
        ids = [stored_alert(db, "Connection closed by 192.0.2.7 port 4711 [preauth]",
                            device=f"gw-{n}") for n in range(30)]

        def mute(alert_id: int) -> bool:
            try:
                with db.session() as session:
                    mute_alert(session, alert_id, days=1, all_devices=False, any_source=True,
                               reason="", actor=f"ci-{alert_id % 3}", deploy_only=True)
                return True
            except WideMuteRefused:
                return False

        with ThreadPoolExecutor(max_workers=10) as pool:
            made = list(pool.map(mute, ids))
        with db.session() as session:
            muted = session.query(AlertMuteRow).count()
        assert sum(made) == muted == MAX_DEPLOY_MUTED_DEVICES
    finally:
        db.dispose()
