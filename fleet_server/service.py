"""The running fleet server's parts, wired together (no HTTP here: see app.py).

Database, signed repository (online keys only), release publishing, desired
state, the MQTT bridge, and the timer that re-signs the timestamp before it
expires. Several such servers (replicas) may share one database and broker: each
registers under its MQTT client id first (:mod:`fleet_server.replicas`), and
docs/scaling.md says how to deploy them.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from fleet_server.artifact_stream import ArtifactStreamer
from fleet_server.config import ServerConfig
from fleet_server.db import Database
from fleet_server.desired import DesiredStates
from fleet_server.device_reports import Report
from fleet_server.inventory import ingest
from fleet_server.metrics_store import MetricsStore
from fleet_server.migrations import upgrade_logged
from fleet_server.mqtt_bridge import MqttBridge
from fleet_server.mute_publisher import MutePublisher
from fleet_server.releases import Releases
from fleet_server.replicas import ReplicaConflict, ReplicaRegistry, Sharing
from fleet_server.repository.keys import KeyFileError
from fleet_server.repository.metadata_store import OnlineSigners, RepositoryError
from fleet_server.repository.repo import Repository
from fleet_server.repository.storage import METADATA_DIR
from fleet_server.rollouts.driver import RolloutDriver
from fleet_server.rollouts.manage import Rollouts
from fleet_server.rollouts.tracking import track_reports

if TYPE_CHECKING:  # the identity package is made by the API (fleet_server.api.enroll)
    from fleet_server.identity.quarantine import Quarantines

log = logging.getLogger("nanofleet.server")


class ServerSetupError(RuntimeError):
    """The server cannot start; the message says what to do."""


def open_repository(config: ServerConfig) -> Repository:
    if not (config.repo_path / METADATA_DIR / "root.json").exists():
        raise ServerSetupError(f"no TUF repository in {config.repo_path}: create it with "
                               "`nanofleet repo init --config <this config> --keys <key dir>`")
    try:
        online = OnlineSigners.from_key_dir(config.keys_path)
    except KeyFileError as exc:
        raise ServerSetupError(f"online keys: {exc} (the server needs snapshot.pem and "
                               f"timestamp.pem, and deltas.pem for deltas, in "
                               f"{config.keys_path})") from None
    return Repository(config.repo_path, online, config.expiry)


class FleetService:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.repo = open_repository(config)
        config.uploads_path.mkdir(parents=True, exist_ok=True)
        self.db = Database(config.db_url)
        upgrade_logged(self.db)  # the schema of this version, before anything reads it
        self.releases = Releases(self.db, self.repo, config.deltas)
        # Uploads in progress (api.core.publish): each may hold ~2x max_upload_bytes on disk.
        self.publish_slots = threading.BoundedSemaphore(config.max_concurrent_publishes)
        self.metrics = MetricsStore(self.db, config.metrics)  # history for the console
        self.bridge: MqttBridge | None = None
        if config.mqtt.enabled:
            self.bridge = MqttBridge(config.mqtt, self._store_reports, self._on_broker)
        self.artifacts: ArtifactStreamer | None = None  # artifacts over MQTT
        if config.mqtt.enabled and config.artifacts.enabled:
            self.artifacts = ArtifactStreamer(config.mqtt, config.artifacts, config.repo_path)
        metadata_url, target_url = config.repo_urls()
        self.desired = DesiredStates(self.db, self.bridge, metadata_url=metadata_url,
                                     target_base_url=target_url)
        self.mutes = MutePublisher(self.db, self.bridge)  # alert mutes, retained like desired
        # The lease owner is the replica's MQTT client id (unique per replica), so a
        # restarted server takes its own lease back at once.
        self.rollout_driver = RolloutDriver(self.db, self.desired, tick_s=config.rollout_tick_s,
                                            lease_s=config.rollout_lease_s,
                                            owner=config.mqtt.client_id)
        self.replica = ReplicaRegistry(
            self.db, config.mqtt.client_id, heartbeat_s=max(0.1, config.rollout_lease_s / 5),
            stale_after_s=config.rollout_lease_s, api=f"{config.bind_host}:{config.bind_port}",
            sharing=Sharing(report_group=config.mqtt.shared_group,
                            artifact_group=config.artifacts.shared_group,
                            takes_reports=self.bridge is not None,
                            serves_artifacts=self.artifacts is not None),
            counters=self.work_counters, on_superseded=self._superseded)
        self.rollouts = Rollouts(self.db, self.desired, wake=self.rollout_driver.wake)
        self.quarantines: Quarantines | None = None  # attach_quarantines (the API's identity)
        self._stop = threading.Event()
        self._refresher = threading.Thread(target=self._refresh_loop, name="timestamp-refresh",
                                           daemon=True)
        self.refreshes = 0
        self.last_refresh_error: str | None = None

    def attach_quarantines(self, quarantines: Quarantines) -> None:
        """Quarantine the devices the bridge finds flooding (and end quarantines on time)."""
        self.quarantines = quarantines
        quarantines.on_ended = self._quarantine_ended
        if self.bridge is not None:
            self.bridge.flood_alarm.on_flood = quarantines.flooding
        if self.artifacts is not None:
            self.artifacts.flood_alarm.on_flood = quarantines.flooding

    def _quarantine_ended(self, device_ids: list[str]) -> None:
        """Their desired states and mute lists again: published (retained) while they were
        denied every topic, they were not delivered, and their session goes on."""
        self.desired.publish(device_ids, force=True)
        self.mutes.publish(device_ids)

    def start(self) -> None:
        try:  # before anything connects under the client id
            self.replica.claim()
        except ReplicaConflict as exc:
            raise ServerSetupError(str(exc)) from None
        self.replica.start()
        self.releases.sync()
        self.refresh_metadata()  # an expired timestamp after downtime is fixed before serving
        self._refresher.start()
        self.mutes.start()  # the devices known now get their mute lists on connect
        if self.quarantines is not None:
            self.quarantines.start()
        if self.bridge is not None:
            self.bridge.start()
        if self.artifacts is not None:
            self.artifacts.start()
        self.rollout_driver.start()

    def stop(self) -> None:
        self._stop.set()
        self.rollout_driver.stop()
        if self.artifacts is not None:
            self.artifacts.stop()
        if self.bridge is not None:
            self.bridge.stop()
        if self.quarantines is not None:
            self.quarantines.stop()
        if self._refresher.is_alive():
            self._refresher.join(timeout=10)
        self.replica.stop()
        self.db.dispose()

    # --- callbacks ---------------------------------------------------------------------
    def _store_reports(self, reports: list[Report]) -> None:
        with self.db.session() as session:
            ingest(session, reports, self.metrics.event_rows)
            self.metrics.record(session, reports)
            moved = track_reports(session, reports)  # rollout records, same transaction
        if moved:
            self.rollout_driver.wake()
        # A device that just joined gets the every-device mutes (in the background).
        self.mutes.publish_new({r.device_id for r in reports})
        self.metrics.maybe_compact()

    def _superseded(self) -> None:
        """Another process claimed our client id: stop using it (MQTT, the lease)."""
        self.rollout_driver.enabled = False
        for part in (self.artifacts, self.bridge):
            if part is not None:
                threading.Thread(target=part.stop, name="superseded-stop", daemon=True).start()

    def work_counters(self) -> dict[str, Any]:
        """What this replica did (registered with its heartbeat; shows how work is split)."""
        mqtt = self.bridge.counters.as_dict() if self.bridge is not None else {}
        artifacts = self.artifacts.counters.as_dict() if self.artifacts is not None else {}
        return {"reports_received": mqtt.get("received", 0),
                "reports_ingested": mqtt.get("ingested", 0),
                "artifact_requests": artifacts.get("requests", 0),
                "rollout_ticks": self.rollout_driver.ticks,
                # a device's reports over its store rate ([metrics] *_per_device_minute)
                "alerts_not_stored": self.metrics.alert_rows.refused,
                "ota_events_not_stored": self.metrics.event_rows.refused,
                "drives_rollouts": self.rollout_driver.holding}

    def _on_broker(self) -> None:
        count = self.desired.publish_all()
        if count:
            log.info("re-published %d desired-state documents (retained)", count)
        lists = self.mutes.publish_all()
        if lists:
            log.info("re-published %d alert mute lists (retained)", lists)

    # --- timestamp re-signing ------------------------------------------------------------
    def refresh_metadata(self) -> bool:
        try:
            changed = self.repo.refresh_timestamp()
        except (RepositoryError, OSError) as exc:
            self.last_refresh_error = str(exc)
            log.error("re-signing timestamp/snapshot failed: %s", exc)
            return False
        self.last_refresh_error = None
        if changed:
            self.refreshes += 1
            log.info("re-signed timestamp (now v%d)", self.repo.timestamp().signed.version)
        return changed

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.config.timestamp_check_s):
            self.refresh_metadata()

    # --- views ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        ts = self.repo.timestamp().signed
        return {
            "ok": self.last_refresh_error is None and not self.replica.superseded,
            "replica": {"client_id": self.config.mqtt.client_id,
                        "instance": self.replica.instance, "pid": os.getpid(),
                        "started_at": self.replica.started_at,
                        "superseded": self.replica.superseded},
            "mqtt": None if self.bridge is None else self.bridge.health(),
            "artifacts": None if self.artifacts is None else self.artifacts.health(),
            "rollouts": {"driver": self.rollout_driver.owner,
                         "lease_held": self.rollout_driver.holding,
                         "lease_s": self.rollout_driver.lease_s,
                         "ticks": self.rollout_driver.ticks,
                         "last_error": self.rollout_driver.last_error},
            "repository": {"root_version": self.repo.root_version(),
                           "targets_version": self.repo.targets().signed.version,
                           "timestamp_version": ts.version,
                           "timestamp_expires": ts.expires.isoformat(),
                           "refreshes": self.refreshes,
                           "last_refresh_error": self.last_refresh_error},
        }
