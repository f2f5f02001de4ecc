"""Schema migrations: a database made before migrations (today's ``create_all``, frozen
as SQL in tests/data) is adopted and upgraded with its rows; a fresh one gets exactly the
models' schema; one upgraded by a newer nanofleet is refused with a clear message; the
table list is complete; revisions form one numbered chain. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from contract.messages import ModelInfo, Status
from fleet_server import migrations
from fleet_server.app import create_app  # noqa: F401 - every module a server loads
from fleet_server.cli import main as nanofleet
from fleet_server.db import Base, Database, Device, OtaEventRow
from fleet_server.device_reports import Report
from fleet_server.device_views import device_summary
from fleet_server.inventory import ingest
from fleet_server.metrics_store import DeviceAlertRow
from fleet_server.mutes import active_mutes, current_revision, mute_alert, unmute
from fleet_server.schema import TABLES, metadata
from hil import postgres

DATA = Path(__file__).parent / "data"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fleet.db'}"
    else:
        server: postgres.Postgres = request.getfixturevalue("pg")  # tests/conftest.py
        url = server.new_database()
    database = Database(url)
    try:
        yield database
    finally:
        database.dispose()


def load_sql(db: Database, path: Path) -> None:
    statements = [s.strip() for s in re.sub(r"^--.*$", "", path.read_text(), flags=re.M)
                  .split(";") if s.strip()]
    with db.engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


def schema_differences(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, metadata()))


def test_fresh_database_gets_exactly_the_models_schema(db: Database) -> None:
    result = migrations.upgrade(db)
    assert (result.before, result.after, result.adopted) == (None, migrations.head_revision(),
                                                              False)
    assert schema_differences(db) == []
    again = migrations.upgrade(db)
    assert not again.changed


def test_the_mute_revision_counter_is_made_with_its_table(db: Database) -> None:
    """0003 inserts the counter's one row (revision 0), so every change is an UPDATE of it:
    replicas never race to create it."""
    migrations.upgrade(db)
    with db.session() as session:
        assert current_revision(session) == 0
        session.add(DeviceAlertRow(msg_id="m1", device_id="gw-1", ts=1.0, device_ts=1.0,
                                   slot="logs", model_version=1, label="security", score=0.9,
                                   reason="r", source="sshd", text="Connection closed by "
                                   "192.0.2.1 port 22", repeats=0))
    with db.session() as session:
        alert_id = session.scalars(text("SELECT id FROM device_alerts")).one()
        mute = mute_alert(session, alert_id, days=1, all_devices=True, any_source=False,
                          reason="", actor="op", now=1000.0).mute
    with db.session() as session:
        assert [m.id for m in active_mutes(session, 1000.0, "gw-2")] == [mute.id]
        unmute(session, mute.id, "op", now=1000.0)
    with db.session() as session:
        assert current_revision(session) == 2 and active_mutes(session, 1000.0) == []


def test_database_made_before_migrations_is_adopted_and_upgraded(db: Database) -> None:
    load_sql(db, DATA / f"fleet_schema_before_migrations.{db.engine.dialect.name}.sql")
    assert migrations.current_revision(db) is None
    result = migrations.upgrade(db)
    assert result.adopted and result.before is None
    assert result.after == migrations.head_revision()
    assert schema_differences(db) == []
    # Its rows are still there and the server's code reads and writes them.
    status = Status(seq=9, device_id="old-dev-1", state="online", agent_version="1.0.0",
                    models=[ModelInfo(slot="logs", name="nano", version=2, label="v2",
                                      runtime="onnxruntime", sha256="bb")])
    with db.session() as session:
        ingest(session, [Report("old-dev-1", "status", status, 1200.0)])
    with db.session() as session:
        device = session.get(Device, "old-dev-1")
        assert device is not None
        summary = device_summary(device)
        assert summary["models"]["logs"]["version"] == 2
        assert summary["last_ota"]["reason"] == "unavailable"
        assert (summary["group"], summary["tags"]) == ("lab", ["shelf-a"])
        assert session.query(OtaEventRow).filter_by(msg_id="m-old-1").one().seq == 3


def test_adoption_creates_tables_the_old_database_lacked(db: Database,
                                                         tmp_path: Path) -> None:
    """A database from before some table existed: create_all would have added it at the
    next start; the baseline does too."""
    sql = (DATA / f"fleet_schema_before_migrations.{db.engine.dialect.name}.sql").read_text()
    without_replicas = re.sub(r"CREATE TABLE server_replicas \(.*?\);", "", sql, flags=re.S)
    assert without_replicas != sql
    scratch = tmp_path / "older.sql"
    scratch.write_text(without_replicas)
    load_sql(db, scratch)
    assert migrations.upgrade(db).adopted
    assert schema_differences(db) == []


def test_database_older_than_the_baseline_is_named_not_mangled(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE devices (device_id VARCHAR(64) PRIMARY KEY)")
    with pytest.raises(RuntimeError, match=r"no column devices\.first_seen"):
        migrations.upgrade(db)
    db.dispose()


def test_database_upgraded_by_a_newer_nanofleet_is_refused(db: Database,
                                                           tmp_path: Path) -> None:
    migrations.upgrade(db)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(migrations.SchemaTooNew, match=r"'0999'.*newer nanofleet"):
        migrations.upgrade(db)
    assert migrations.current_revision(db) == "0999"  # nothing touched


def test_server_migrate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "server.toml"
    assert nanofleet(["server", "init", "--config", str(config), "--data-dir",
                      str(tmp_path / "data")]) == 0
    capsys.readouterr()
    assert nanofleet(["server", "migrate", "--config", str(config), "--check"]) == 1
    assert "upgrades it to " + migrations.head_revision() in capsys.readouterr().out
    assert nanofleet(["server", "migrate", "--config", str(config)]) == 0
    assert f"from empty to {migrations.head_revision()}" in capsys.readouterr().out
    assert nanofleet(["server", "migrate", "--config", str(config), "--check"]) == 0
    assert "up to date" in capsys.readouterr().out
    db = Database(f"sqlite:///{tmp_path / 'data' / 'fleet.db'}")
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    db.dispose()
    assert nanofleet(["server", "migrate", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "newer nanofleet" in err and "restore" in err


def test_every_mapped_table_is_in_the_schema_list() -> None:
    mapped = {mapper.class_ for mapper in Base.registry.mappers}
    assert mapped == set(TABLES)


def test_revisions_are_one_numbered_chain() -> None:
    """0001 <- 0002 <- ...: one head, each file NNNN_<what>.py naming the one before."""
    scripts = migrations.scripts()
    assert len(scripts.get_heads()) == 1
    chain = list(reversed(list(scripts.walk_revisions())))
    assert chain[0].revision == migrations.BASELINE and chain[0].down_revision is None
    for number, rev in enumerate(chain, start=1):
        assert rev.revision == f"{number:04d}"
        assert Path(rev.path).name.startswith(f"{number:04d}_")
        if number > 1:
            assert rev.down_revision == f"{number - 1:04d}"
