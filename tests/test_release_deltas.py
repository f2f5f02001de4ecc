"""The server's delta building on publish (fleet_server/releases.py): bounded in time, the
newest base always tried. A real repository, real signatures, a real SQLite database
(conftest's ``db``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.tuf_targets import ModelTargetInfo
from fleet_server.config import DeltaSettings
from fleet_server.db import Database
from fleet_server.releases import DeltaBudget, PublishOutcome, Releases
from fleet_server.repository.operator import add_targets
from tests.support.tuf_repo import RepoKit, make_bundle, make_repo

pytestmark = pytest.mark.unit


@pytest.fixture
def kit(tmp_path: Path) -> RepoKit:
    return make_repo(tmp_path)


def publish(releases: Releases, kit: RepoKit, version: int, tmp: Path,
            bundle: bytes | None = None) -> PublishOutcome:
    update = add_targets(kit.repo.targets_bytes(), [kit.signer("targets")],
                         bundle=bundle or make_bundle(version=version),
                         trusted_root=kit.repo.root_bytes(), variants=bundle is not None)
    files: dict[str, Path] = {}
    for path, data in update.files.items():
        files[path] = tmp / f"upload-{version}-{len(files)}"
        files[path].write_bytes(data)
    return releases.publish(update.metadata, files, actor="ops")


@pytest.mark.parametrize("budget, tried", [(120.0, [3, 2, 1]), (1e-9, [3])])
def test_delta_building_is_bounded_and_tries_the_newest_base_first(
        kit: RepoKit, db: Database, tmp_path: Path, budget: float, tried: list[int]) -> None:
    """Review, December 2026: delta building after a publish had no time budget (about
    340 s estimated for the largest bundles, past the CLI's 300 s): the release was live but
    the operator saw a timeout. Past ``[deltas] time_budget_s`` the older bases are skipped
    (their devices download the full bundle); the newest one, where most devices are, is
    always tried."""
    releases = Releases(db, kit.repo, DeltaSettings(time_budget_s=budget))
    for version in (1, 2, 3):
        publish(releases, kit, version, tmp_path)
    outcome = publish(releases, kit, 4, tmp_path)
    assert [o.base_version for o in outcome.deltas] == [3, 2, 1]
    assert [o.base_version for o in outcome.deltas if o.status != "over-budget"] == tried
    skipped = [o for o in outcome.deltas if o.status == "over-budget"]
    assert all("time_budget_s" in (o.detail or "") and f"v{o.base_version}" in (o.detail or "")
               for o in skipped)
    # the release itself is published either way
    assert "models/logcls/4/logcls-4.nfb" in kit.repo.targets().signed.targets


def test_one_delta_at_most_runs_past_the_budget_with_runtime_variants(
        kit: RepoKit, db: Database, tmp_path: Path) -> None:
    """Review of the first version: "the newest base is always tried" held per full target,
    and ``nanofleet model publish`` signs three (combined, onnx, tflite), so three deltas
    ran past the budget. Now only the publish's first delta does, and it is a runtime
    variant's (what agents download), not the combined bundle's (a second review)."""
    from hil.models import finetuned, v1_bundle

    releases = Releases(db, kit.repo, DeltaSettings(time_budget_s=1e-9))
    publish(releases, kit, 1, tmp_path, v1_bundle())
    outcome = publish(releases, kit, 2, tmp_path, finetuned(2))
    assert [o.runtime for o in outcome.deltas] == ["onnx", "tflite", None]
    assert [(o.runtime, o.status) for o in outcome.deltas if o.status != "over-budget"] == [
        ("onnx", "listed")]


def test_newest_bases_first_variants_before_the_combined_bundle() -> None:
    from fleet_server.releases import delta_jobs

    def full(version: int, runtime: str | None = None) -> ModelTargetInfo:
        return ModelTargetInfo(kind="full", model="m", slot="logs", version=version,
                               result_sha256="0" * 64, result_length=1, runtime=runtime)

    listed = [full(v, r) for v in (1, 2, 3) for r in (None, "onnx", "tflite")]
    new = [full(4, None), full(4, "tflite"), full(4, "onnx")]
    assert [(i.runtime, b) for i, b in delta_jobs(listed + new, new, 2)] == [
        ("onnx", 3), ("tflite", 3), (None, 3), ("onnx", 2), ("tflite", 2), (None, 2)]


def test_another_delta_only_if_it_can_end_within_the_budget() -> None:
    budget = DeltaBudget(deadline=100.0)
    assert budget.allows(now=99.9)  # the first, whatever the time
    budget.spent(30.0)
    assert budget.allows(now=70.0) and not budget.allows(now=70.1)
    budget.spent(10.0)  # the slowest so far is what the next may take
    assert not budget.allows(now=75.0) and budget.allows(now=69.0)
