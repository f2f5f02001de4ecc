"""The fleet server's background duties, in-process against real files and a real broker:
re-signing the timestamp before it expires, and desired state surviving a broker outage."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from contract.files import write_atomic
from contract.messages import DesiredState
from contract.topics import desired
from fleet_server.config import ServerConfig, load_config
from fleet_server.repository.expiry import ExpiryPolicy
from fleet_server.repository.metadata_store import OnlineSigners
from fleet_server.repository.repo import Repository
from fleet_server.repository.storage import METADATA_DIR
from fleet_server.service import FleetService, ServerSetupError
from hil.fleet import setup_fleet
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector


def _wait(pred: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def expire_timestamp(config: ServerConfig) -> None:
    """What a server down for longer than the timestamp's lifetime finds when it starts:
    the current timestamp, signed with its real key, expired a second ago (no waiting)."""
    online = OnlineSigners.from_key_dir(config.keys_path)
    timestamp = Repository(config.repo_path, online).timestamp()
    timestamp.signed.version += 1
    timestamp.signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    timestamp.signatures.clear()
    timestamp.sign(online.timestamp)
    write_atomic(config.repo_path / METADATA_DIR / "timestamp.json", timestamp.to_bytes())


def test_timestamp_is_resigned_before_it_expires(tmp_path: Path) -> None:
    # A 2-second timestamp, re-signed once less than half of it is left.
    expiry = ExpiryPolicy(timestamp_hours=2 / 3600)
    setup = setup_fleet(tmp_path, mqtt_port=1, expiry=expiry, timestamp_check_s=0.1)
    no_broker = setup.config.mqtt.model_copy(update={"enabled": False})
    config = load_config(setup.config_path).model_copy(update={"mqtt": no_broker})
    expire_timestamp(config)  # the server was down: its timestamp expired meanwhile
    service = FleetService(config)
    assert service.repo.timestamp().signed.is_expired()
    service.start()
    try:
        first = service.repo.timestamp().signed
        assert not first.is_expired()  # fixed before anything is served
        versions = {first.version}
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            ts = service.repo.timestamp().signed
            assert ts.expires > datetime.now(UTC), "a client could have seen it expired"
            versions.add(ts.version)
            time.sleep(0.05)
        assert len(versions) >= 2, versions
        assert service.health()["repository"]["refreshes"] >= 2
    finally:
        service.stop()


def test_desired_state_reaches_a_broker_that_was_down(tmp_path: Path, broker: Mosquitto) -> None:
    setup = setup_fleet(tmp_path / "fleet", mqtt_port=broker.port)
    service = FleetService(setup.config)
    service.start()
    try:
        bridge = service.bridge
        assert bridge is not None and bridge.wait_connected(10)
        broker.stop()
        _wait(lambda: not bridge.connected.is_set(), what="disconnect")
        [outcome] = service.desired.deploy(["pump-07"], slot="logs", model="nano-logs",
                                           version=2, actor="test")
        assert (outcome.changed, outcome.published) == (True, False)
        # Restarted without persistence: the broker lost every retained message, and
        # the server publishes the documents again when it is back.
        broker.start()
        watcher = Collector(broker.port, [desired("pump-07")])
        try:
            [msg] = watcher.wait_for(lambda m: len(m) >= 1, timeout=20)
            doc = DesiredState.model_validate_json(msg.payload)
            assert doc.revision == outcome.revision and doc.slots["logs"].version == 2
        finally:
            watcher.close()

        def acknowledged() -> bool:
            with service.db.session() as session:
                row = service.desired.current(session, "pump-07")
                return row is not None and row.published_revision == outcome.revision

        _wait(acknowledged, what="the broker's PUBACK recorded")
    finally:
        service.stop()


def test_server_without_a_repository_says_what_to_run(tmp_path: Path) -> None:
    setup = setup_fleet(tmp_path, mqtt_port=1)
    config = setup.config.model_copy(update={"repository_dir": tmp_path / "elsewhere"})
    try:
        FleetService(config)
    except ServerSetupError as exc:
        assert "nanofleet repo init" in str(exc)
    else:
        raise AssertionError("no error")
    (setup.keys_dir / "timestamp.pem").unlink()
    try:
        FleetService(setup.config)
    except ServerSetupError as exc:
        assert "timestamp.pem" in str(exc) and "online keys" in str(exc)
    else:
        raise AssertionError("no error")
