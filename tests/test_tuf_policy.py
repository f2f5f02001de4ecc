"""Pure OTA policy: allowed versions, delta or full, rebuilt bundle identity, custom fields."""

from __future__ import annotations

import pytest

from agent.ota.policy import (
    InstalledBundle,
    SignedArtifact,
    choose_artifact,
    delta_problem,
    full_target_refusal,
    rebuilt_refusal,
    version_refusal,
)
from contract.tuf_targets import (
    ModelTargetInfo,
    SlotRecord,
    delta_target_path,
    full_target_path,
    parse_model_info,
    parse_slot_record,
    slot_target_path,
)

pytestmark = pytest.mark.unit

SHA_V1, SHA_V2 = "a" * 64, "b" * 64


def full(version: int = 2, sha: str = SHA_V2, length: int = 1000) -> SignedArtifact:
    info = ModelTargetInfo(kind="full", model="m", slot="logs", version=version,
                           result_sha256=sha, result_length=length)
    return SignedArtifact(full_target_path("m", version), length, sha, info)


def delta(base: int = 1, base_sha: str = SHA_V1, result: str = SHA_V2,
          length: int = 100) -> SignedArtifact:
    info = ModelTargetInfo(kind="delta", model="m", slot="logs", version=2, result_sha256=result,
                           result_length=1000, base_version=base, base_sha256=base_sha,
                           delta_format="nfd-1")
    return SignedArtifact(delta_target_path("m", 2, base), length, "c" * 64, info)


def test_version_policy() -> None:
    assert version_refusal(3, live_version=2, minimum_version=2) is None
    assert version_refusal(1, live_version=None, minimum_version=0) is None
    low = version_refusal(1, live_version=None, minimum_version=2)
    assert low is not None and low.reason == "below-minimum" and "minimum 2" in low.detail
    same = version_refusal(2, live_version=2, minimum_version=0)
    assert same is not None and same.reason == "downgrade"
    assert version_refusal(1, live_version=2, minimum_version=0) is not None
    # After a fall back at boot: below the version that fell over is a downgrade, the
    # version itself is not.
    fallen = version_refusal(4, live_version=2, minimum_version=0, floor_version=5)
    assert fallen is not None and fallen.reason == "downgrade" and "version 5" in str(fallen)
    assert version_refusal(5, live_version=2, minimum_version=0, floor_version=5) is None


def test_delta_first_else_full() -> None:
    installed = InstalledBundle("m", 1, SHA_V1)
    f, d = full(), delta()
    assert choose_artifact(f, d, installed) is d
    assert choose_artifact(f, d, installed, delta_failed=True) is f
    assert choose_artifact(f, None, installed) is f
    assert choose_artifact(f, d, None) is f
    assert choose_artifact(f, delta(base_sha="e" * 64), installed) is f
    assert choose_artifact(f, delta(result="e" * 64), installed) is f
    assert choose_artifact(f, d, InstalledBundle("m", 0 + 1, "f" * 64)) is f
    assert choose_artifact(f, delta(length=5000), installed) is f
    problem = delta_problem(f, delta(base_sha="e" * 64), installed)
    assert problem is not None and "base bundle" in problem


def test_full_target_and_rebuilt_checks() -> None:
    f = full()
    assert full_target_refusal(f, model="m", slot="logs", version=2) is None
    wrong = full_target_refusal(f, model="m", slot="logs", version=3)
    assert wrong is not None and wrong.reason == "wrong-model"
    assert rebuilt_refusal(f, SHA_V2, 1000) is None
    bad = rebuilt_refusal(f, SHA_V1, 1000)
    assert bad is not None and bad.reason == "hash-mismatch"
    inconsistent = SignedArtifact(f.path, 999, f.sha256, f.info)
    refusal = full_target_refusal(inconsistent, model="m", slot="logs", version=2)
    assert refusal is not None and refusal.reason == "invalid-metadata"


def test_custom_fields_must_match_their_path() -> None:
    info = full().info.model_dump(mode="json", exclude_none=True)
    assert parse_model_info(full_target_path("m", 2), info).version == 2
    with pytest.raises(ValueError, match="describe"):
        parse_model_info(full_target_path("m", 3), info)  # v2 presented as v3
    with pytest.raises(ValueError, match="invalid custom"):
        parse_model_info(full_target_path("m", 2), {**info, "extra": 1})
    with pytest.raises(ValueError, match="needs base_version"):
        ModelTargetInfo(kind="delta", model="m", slot="logs", version=2, result_sha256=SHA_V2,
                        result_length=1)
    record = SlotRecord(slot="logs", model="m", minimum_version=1, latest_version=2)
    assert parse_slot_record(slot_target_path("logs"), record.model_dump()).minimum_version == 1
    with pytest.raises(ValueError, match="slot record is for"):
        parse_slot_record(slot_target_path("other"), record.model_dump())
    with pytest.raises(ValueError, match="invalid model name"):
        full_target_path("../x", 1)
    with pytest.raises(ValueError, match="must be below"):
        delta_target_path("m", 2, 2)


def test_labels_refusal_allows_new_labels_only() -> None:
    from agent.ota.policy import labels_refusal
    from contract.bundle import load_bundle
    from nanomodel import default_bundle_path

    live = load_bundle(default_bundle_path()).manifest
    assert labels_refusal(live, live) is None
    grown = live.model_copy(update={"labels": [*live.labels, "radio"]})
    assert labels_refusal(live, grown) is None
    moved = live.model_copy(update={"normal_label": "power"})
    assert "normal label 'power'" in (labels_refusal(live, moved) or "")
    fewer = live.model_copy(update={"labels": [x for x in live.labels if x != "storage"]})
    assert "dropped: ['storage']" in (labels_refusal(live, fewer) or "")
