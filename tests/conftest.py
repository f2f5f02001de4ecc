from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hil import postgres
from hil.broker import ProductionBroker
from tests.support.mosquitto import Mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A plain Mosquitto on a free loopback port."""
    b = Mosquitto(tmp_path / "broker").start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Mosquitto with a plain listener and a TLS listener requiring client certs + ACL."""
    b = Mosquitto(tmp_path / "tls-broker", tls=True).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def pg() -> Iterator[postgres.Postgres]:
    """A throwaway PostgreSQL server, one per test module (tests make their own databases).
    No skip: scripts/bootstrap.sh installs PostgreSQL; without it this fails loudly."""
    server = postgres.Postgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prod_broker(tmp_path: Path) -> Iterator[ProductionBroker]:
    """Mosquitto running the production configuration (`nanofleet broker-config`): device
    listener with client certificates, client id = CN, ACL and packet limit; the fleet
    server's listener; a read-only loopback plain listener."""
    b = ProductionBroker(tmp_path / "prod-broker").start()
    try:
        yield b
    finally:
        b.stop()
