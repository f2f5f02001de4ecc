"""The agent's slot name: the live bundle's manifest slot unless [model] slot overrides it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.bundle_slot import bundle_slot, slot_name
from agent.config import AgentConfig
from contract.bundle import BundleError, read_bundle
from nanomodel import default_bundle_path
from tests.support.tuf_repo import make_bundle

pytestmark = pytest.mark.unit


def config(tmp_path: Path, **model: str) -> AgentConfig:
    return AgentConfig.model_validate({
        "device_id": "pump-07", "state_dir": str(tmp_path / "state"),
        "mqtt": {"host": "127.0.0.1"},
        "sources": [{"kind": "file", "path": str(tmp_path / "log")}],
        "model": model})


def test_default_slot_is_the_bundle_manifest_slot(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert cfg.model.slot is None
    assert slot_name(cfg, default_bundle_path()) == "logs"  # what the fleet deploys to
    (tmp_path / "s.nfb").write_bytes(make_bundle(slot="sensors"))
    assert slot_name(cfg, tmp_path / "s.nfb") == "sensors"


def test_configured_slot_overrides_the_manifest(tmp_path: Path) -> None:
    assert slot_name(config(tmp_path, slot="main"), default_bundle_path()) == "main"
    with pytest.raises(ValueError, match=r"model\.slot"):
        config(tmp_path, slot="Bad Slot!")


def test_unreadable_bundle_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nfb"
    bad.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(BundleError, match="cannot read the bundle manifest"):
        bundle_slot(bad)
    with pytest.raises(BundleError, match="cannot read the bundle manifest"):
        bundle_slot(tmp_path / "missing.nfb")
    damaged = bytearray(make_bundle(slot="sensors"))
    middle = len(damaged) // 2
    damaged[middle:middle + 100] = b"\xff" * 100  # model bytes damaged, the manifest intact
    (tmp_path / "d.nfb").write_bytes(bytes(damaged))
    with pytest.raises(BundleError, match="sha256"):
        read_bundle(bytes(damaged))
    assert bundle_slot(tmp_path / "d.nfb") == "sensors"


def test_a_pax_header_first_is_refused_before_tarfile_parses_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tarfile's pax parsing backtracks quadratically (CVE-2024-6232, Python 3.11.7): the
    configured bundle's first header is walked before tarfile.open reads it."""
    import tarfile

    def refuse(self: tarfile.TarInfo, tar: tarfile.TarFile) -> tarfile.TarInfo:
        raise AssertionError("tarfile parsed a pax header")

    monkeypatch.setattr(tarfile.TarInfo, "_proc_pax", refuse)
    pax = tarfile.TarInfo("PaxHeaders/manifest.json")
    pax.type, pax.size = tarfile.XHDTYPE, 13 * 1000
    hostile = tmp_path / "pax.nfb"
    hostile.write_bytes(pax.tobuf(format=tarfile.USTAR_FORMAT) + b"1 hdrcharset=" * 1000
                        + make_bundle(slot="sensors"))
    with pytest.raises(BundleError, match="extended-header"):
        bundle_slot(hostile)
