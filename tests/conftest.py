from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet_server.db import Database
from fleet_server.migrations import upgrade
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


# --- the fast tier: ./scripts/test --fast (CONTRIBUTING.md, "Tests") ---------------------
# A module joins it with `pytestmark = pytest.mark.unit`: logic and in-process work only,
# each test well under a few seconds. What makes a test slow cannot be marked unit: these
# fixtures start servers, so a unit test asking for one is refused at collection.
SERVER_FIXTURES = frozenset({"broker", "tls_broker", "prod_broker", "pg"})
UNIT_BUDGET_S = 5.0  # a unit test slower than this is reported at the end of the run


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        servers = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("unit") is not None and servers:
            raise pytest.UsageError(
                f"{item.nodeid} is marked unit but starts {', '.join(sorted(servers))}: "
                "move it to a module without the unit mark (the full suite runs it)")


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[object],
                         request: pytest.FixtureRequest) -> None:
    # Also when asked for at run time (request.getfixturevalue), which collection cannot see.
    if fixturedef.argname in SERVER_FIXTURES and request.node.get_closest_marker("unit"):
        pytest.fail(f"{request.node.nodeid} is marked unit but starts {fixturedef.argname}: "
                    "move it to a module without the unit mark", pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    slow = [(report.duration, report.nodeid) for report in terminalreporter.stats.get("passed", [])
            if report.when == "call" and "unit" in report.keywords
            and report.duration > UNIT_BUDGET_S]
    if slow:
        terminalreporter.section("unit tests over their budget")
        for duration, nodeid in sorted(slow, reverse=True):
            terminalreporter.write_line(f"{duration:6.1f} s  {nodeid} (budget {UNIT_BUDGET_S:g} s: "
                                        "make it faster or drop its unit mark)")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fleet server database on each database the server supports, migrated to the
    newest schema (PostgreSQL: a new database on the module's throwaway server,
    hil/postgres.py). Modules whose checks must hold on both alias it as ``db``."""
    url = f"sqlite:///{tmp_path / 'fleet.db'}" if request.param == "sqlite" else \
        request.getfixturevalue("pg").new_database()
    database = Database(url)
    upgrade(database)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A fleet server database on SQLite, migrated to the newest schema (modules that run
    on PostgreSQL too alias ``any_db``)."""
    database = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    upgrade(database)
    try:
        yield database
    finally:
        database.dispose()
