"""Which installed bundle a starting agent runs (agent/ota/boot.py): the committed one,
else the previous one, else the configured bundle, and the record that says so. The
engine's tests run the same choice with real bundles (test_ota_engine.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from agent.ota.boot import bundle_loads, choose_boot_bundle, read_boot_id
from agent.ota.record import InstalledRef, OtaRecord, VersionFloor
from contract.reasons import OtaReason
from nanomodel import default_bundle_path

V1 = InstalledRef(model="m", version=1, sha256="1" * 64, file="m-1.nfb")
V2 = InstalledRef(model="m", version=2, sha256="2" * 64, file="m-2.nfb")
RECORD = OtaRecord(slot="logs", state="idle", committed=V2, previous=V1)


def _paths(*present: InstalledRef) -> Callable[[InstalledRef], Path | None]:
    return lambda ref: Path(ref.file) if ref in present else None


def _loading(*good: InstalledRef) -> tuple[Callable[[Path, InstalledRef], bool], list[str]]:
    tried: list[str] = []

    def loads(path: Path, ref: InstalledRef) -> bool:
        tried.append(ref.file)
        return ref in good
    return loads, tried


def test_an_intact_committed_bundle_is_run_and_the_record_is_left_alone() -> None:
    loads, tried = _loading(V1, V2)
    choice = choose_boot_bundle(RECORD, _paths(V1, V2), loads)
    assert choice.path == Path("m-2.nfb") and choice.record is None and tried == ["m-2.nfb"]


def test_before_any_commit_the_configured_bundle_runs() -> None:
    loads, tried = _loading()
    choice = choose_boot_bundle(OtaRecord(slot="logs"), _paths(), loads)
    assert choice.path is None and choice.record is None and tried == []


def test_a_committed_bundle_that_fails_falls_back_to_the_previous_one() -> None:
    for present, good in (((V1,), (V1,)), ((V1, V2), (V1,))):  # missing, then unloadable
        loads, _ = _loading(*good)
        choice = choose_boot_bundle(RECORD, _paths(*present), loads)
        assert choice.path == Path("m-1.nfb")
        assert choice.record is not None
        assert choice.record.committed == V1 and choice.record.previous is None
        assert choice.record.reason == OtaReason.LIVE_BUNDLE_DAMAGED
        assert choice.record.detail == "m-2.nfb could not be loaded; fell back"


def test_the_version_that_fell_over_becomes_the_floor_of_its_model() -> None:
    loads, _ = _loading(V1)
    choice = choose_boot_bundle(RECORD, _paths(V1, V2), loads)
    assert choice.record is not None
    assert choice.record.floor == VersionFloor(model="m", version=2)
    # A second fall back (v2's older neighbour fails too) keeps the higher floor.
    high = RECORD.model_copy(update={"floor": VersionFloor(model="m", version=7)})
    choice = choose_boot_bundle(high, _paths(V1, V2), loads)
    assert choice.record is not None
    assert choice.record.floor == VersionFloor(model="m", version=7)


def test_when_neither_loads_the_configured_bundle_runs() -> None:
    loads, tried = _loading()
    choice = choose_boot_bundle(RECORD, _paths(V1, V2), loads)
    assert choice.path is None and tried == ["m-2.nfb", "m-1.nfb"]
    assert choice.record is not None and choice.record.committed is None
    loads, tried = _loading(V1)
    choice = choose_boot_bundle(RECORD.model_copy(update={"previous": None}), _paths(V2), loads)
    assert choice.path is None and choice.record is not None and choice.record.committed is None


def test_the_load_check_tries_twice_and_reads_the_real_bundle(tmp_path: Path) -> None:
    bundle = default_bundle_path()
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    ref = InstalledRef(model="m", version=1, sha256=digest, file=bundle.name)
    assert bundle_loads(bundle, ref, "onnxruntime", 1, pause_s=0.0)
    wrong = ref.model_copy(update={"sha256": "0" * 64})  # fails both attempts
    assert not bundle_loads(bundle, wrong, "onnxruntime", 1, pause_s=0.0)
    assert not bundle_loads(tmp_path / "absent.nfb", ref, "onnxruntime", 1, pause_s=0.0)


def test_the_boot_id_is_read_from_the_kernel_or_not_at_all(tmp_path: Path) -> None:
    real = read_boot_id(Path("/proc/sys/kernel/random/boot_id"))
    assert real is not None and len(real) == 36  # a UUID, new at every boot
    assert read_boot_id(tmp_path / "absent") is None
    for junk in (b"", b"\n", b"x" * 65, b"id\x1b[2Jwith escapes"):
        (tmp_path / "junk").write_bytes(junk)
        assert read_boot_id(tmp_path / "junk") is None
