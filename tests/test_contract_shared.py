"""Knowledge both sides share lives once, in the contract: reason codes, the strict
base model, atomic file replacement. These tests check the shared pieces and that an
agent newer than the server (a reason code this version does not know) is still heard."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.ota.record import OtaRecord, UpdateTarget
from agent.ota.state import Failed, transition
from agent.ota.store import OtaStore
from contract.files import replacing, write_atomic
from contract.messages import OtaEvent
from contract.reasons import TRANSIENT_REASONS, OtaReason, is_transient
from contract.strict import FrozenStrict, Strict
from fleet_server import migrations
from fleet_server.db import Database, Device, OtaEventRow
from fleet_server.device_reports import parse_report
from fleet_server.device_views import device_summary
from fleet_server.inventory import ingest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]


def _ota_payload(reason: str | None, device: str = "dev-1") -> bytes:
    return json.dumps({"kind": "ota", "seq": 7, "device_id": device, "slot": "main",
                       "state": "failed", "to_version": 2, "reason": reason,
                       "detail": "from a newer agent"}).encode()


def test_reason_codes_are_the_strings_on_the_wire() -> None:
    event = OtaEvent(seq=1, device_id="d", slot="main", state="failed",
                     reason=OtaReason.NO_SPACE)
    wire = json.loads(event.model_dump_json())
    assert wire["reason"] == "no-space"
    back = OtaEvent.model_validate(wire)
    assert back.reason is OtaReason.NO_SPACE
    # Every value is a lowercase, hyphenated word, as docs/updates.md lists them.
    for reason in OtaReason:
        assert reason.value == reason.name.lower().replace("_", "-")


def test_unknown_reason_from_a_newer_agent_is_stored_and_shown(tmp_path: Path) -> None:
    report = parse_report("nanofleet/v1/dev/dev-1/ota", _ota_payload("flux-capacitor"), 100.0)
    assert isinstance(report.message, OtaEvent)
    assert report.message.reason == "flux-capacitor"
    assert not isinstance(report.message.reason, OtaReason)
    db = Database(f"sqlite:///{tmp_path / 'fleet.db'}")
    migrations.upgrade(db)
    with db.session() as session:
        assert ingest(session, [report]) == 1
    with db.session() as session:
        device = session.get(Device, "dev-1")
        assert device is not None
        assert device_summary(device)["last_ota"]["reason"] == "flux-capacitor"
        row = session.query(OtaEventRow).one()
        assert row.reason == "flux-capacitor"
    db.dispose()


def test_a_reason_that_is_not_text_is_still_refused() -> None:
    with pytest.raises(ValueError, match="reason"):
        parse_report("nanofleet/v1/dev/dev-1/ota", _ota_payload(42), 100.0)  # type: ignore[arg-type]


def test_transient_reasons_are_one_set_for_agent_and_server() -> None:
    assert {r.value for r in TRANSIENT_REASONS} == {
        "unavailable", "incomplete-download", "expired-metadata", "not-found", "no-space"}
    assert is_transient("unavailable")  # a plain string from the database counts too
    assert not is_transient("flux-capacitor")
    assert not is_transient(None)


@pytest.mark.parametrize(("reason", "retry_at"), [
    (OtaReason.UNAVAILABLE, 1300.0), (OtaReason.HASH_MISMATCH, None)])
def test_agent_retries_exactly_the_transient_failures(reason: OtaReason,
                                                      retry_at: float | None) -> None:
    target = UpdateTarget(model="m", version=2, revision=1)
    rec = OtaRecord(slot="main", state="downloading", target=target)
    step = transition(rec, Failed(reason, "x"), now=1000.0, retry_after_s=300.0)
    assert step.record.state == "failed"
    assert step.record.retry_at == retry_at


def test_record_with_a_reason_from_a_newer_agent_still_loads(tmp_path: Path) -> None:
    """A downgraded agent reads the record its newer self wrote instead of discarding it."""
    store = OtaStore(tmp_path, "main")
    data = OtaRecord(slot="main", state="failed").model_dump(mode="json")
    data["reason"] = "flux-capacitor"
    store.record_path.write_text(json.dumps(data))
    record = store.load()
    assert record.state == "failed" and record.reason == "flux-capacitor"
    assert not store.record_path.with_suffix(".json.unreadable").exists()


def test_strict_forbids_unknown_fields() -> None:
    class Thing(Strict):
        a: int

    class Frozen(FrozenStrict):
        a: int

    with pytest.raises(ValidationError, match="extra"):
        Thing.model_validate({"a": 1, "b": 2})
    with pytest.raises(ValidationError, match="frozen"):
        Frozen(a=1).a = 2  # type: ignore[misc]


def test_no_package_defines_its_own_strict_base() -> None:
    """One base in contract/strict.py: a second copy would drift (e.g. lose extra=forbid)."""
    copies = []
    for package in ("agent", "contract", "fleet_server", "hil", "nanomodel"):
        for path in (REPO / package).rglob("*.py"):
            if path == REPO / "contract" / "strict.py":
                continue
            tree = ast.parse(path.read_text(), str(path))
            copies += [f"{path.relative_to(REPO)}:{node.lineno}" for node in ast.walk(tree)
                       if isinstance(node, ast.ClassDef) and "Strict" in node.name]
    assert copies == []


def test_write_atomic_replaces_with_the_mode_asked(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


@pytest.mark.parametrize("single_writer", [False, True])
def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path,
                                                          single_writer: bool) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(target, single_writer=single_writer) as fh:
        fh.write(b"half")
        raise RuntimeError("power cut")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_single_writer_reuses_one_temporary_name(tmp_path: Path) -> None:
    """A cut mid-write (simulated: the temporary is left) is overwritten next time."""
    target = tmp_path / "rec.json"
    (tmp_path / ".rec.json.tmp").write_bytes(b"torn")
    write_atomic(target, b"whole", single_writer=True)
    assert sorted(os.listdir(tmp_path)) == ["rec.json"]
    assert target.read_bytes() == b"whole"
