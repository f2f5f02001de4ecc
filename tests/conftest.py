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


# The suite runs one module per worker at a time (scripts/test: xdist --dist loadfile). A
# module that takes minutes and starts last keeps one worker busy while the other idles
# (xdist's own order is by number of tests, and the slowest modules have few), so the
# slowest modules start first, longest first (seconds of a run on the 2-core machine,
# December 2026; order only, nothing depends on it); the rest follow by number of tests.
SLOW_MODULES_FIRST = (
    "test_hil_run.py",            # 140 s
    "test_api_schema_fuzz.py",    # 120
    "test_model_real.py",         # 97
    "test_console_browser.py",    # 94
    "test_agent_outage.py",       # 71
    "test_fleet_demo.py",         # 65
    "test_device_package.py",     # 60
    "test_fleet_replicas.py",     # 59
    "test_ota_attacks.py",        # 53
    "test_alert_mutes.py",        # 48
    "test_broker_acl.py",         # 45
    "test_model_cli.py",          # 39
    "test_model_training.py",     # 38
    "test_ota_crash.py",          # 36
    "test_enrollment.py",         # 34
    "test_provisioning_attacks.py",  # 34
    "test_identity_attacks.py",   # 32
)


def _run_order(items: list[pytest.Item]) -> list[pytest.Item]:
    """Items with SLOW_MODULES_FIRST's modules first, then by tests per module, each
    module's own order kept (its module fixtures and the order its tests rely on)."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.path.name] = counts.get(item.path.name, 0) + 1
    rank = {name: i for i, name in enumerate(SLOW_MODULES_FIRST)}

    def key(item: pytest.Item) -> tuple[int, int, str]:
        name = item.path.name
        if name in rank:
            return (0, rank[name], str(item.path))
        return (1, -counts[name], str(item.path))

    return sorted(items, key=key)  # stable: within a module, collection order


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items[:] = _run_order(items)
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
