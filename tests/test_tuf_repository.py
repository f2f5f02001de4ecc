"""Server/operator side of the TUF repository: keys, init, publish checks, deltas,
expiry refresh, root rotation refusals. Real keys and files; no network needed."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from contract.tuf_targets import ModelTargetInfo, SlotRecord, delta_target_path
from fleet_server.repository.keys import (
    KeyFileError,
    generate_key,
    load_public_key,
    load_signer,
)
from fleet_server.repository.metadata_store import RepositoryError
from fleet_server.repository.operator import DeltaFile, TargetsUpdateError, add_targets
from fleet_server.repository.repo import (
    DeltaUpload,
    ExpiryPolicy,
    PublishRejected,
    ReleaseChangeRefused,
    Repository,
)
from fleet_server.repository.rotation import RotationError, rotate_root
from tests.support.tuf_repo import RepoKit, make_bundle, make_repo

pytestmark = pytest.mark.unit


@pytest.fixture
def kit(tmp_path: Path) -> RepoKit:
    return make_repo(tmp_path)


def sign_update(kit: RepoKit, bundle: bytes, **kw: object) -> tuple[bytes, dict[str, bytes]]:
    update = add_targets(kit.repo.targets_bytes(), [kit.signer("targets")], bundle=bundle,
                         trusted_root=kit.repo.root_bytes(), **kw)  # type: ignore[arg-type]
    return update.metadata, update.files


def _resign(kit: RepoKit, md: Metadata[Targets]) -> bytes:
    """``md`` as the server's next targets version, signed with the operators' key."""
    md.signed.version = kit.repo.targets().signed.version + 1
    md.signatures.clear()
    md.sign(kit.signer("targets"))
    return md.to_bytes()


def test_key_files_are_private_and_reload(tmp_path: Path) -> None:
    signer = generate_key(tmp_path / "k.pem")
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert load_signer(tmp_path / "k.pem").public_key == signer.public_key
    assert load_public_key(tmp_path / "k.pub.pem") == signer.public_key
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        generate_key(tmp_path / "k.pem")
    (tmp_path / "k.pem").chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_signer(tmp_path / "k.pem")
    generate_key(tmp_path / "enc.pem", passphrase=b"secret")
    assert load_signer(tmp_path / "enc.pem", b"secret").public_key.keytype == "ed25519"
    with pytest.raises(KeyFileError, match="not a usable PEM"):
        load_signer(tmp_path / "enc.pem", b"wrong")


def test_init_layout_and_root_threshold(kit: RepoKit) -> None:
    meta = kit.path / "metadata"
    names = {p.name for p in meta.iterdir()}
    assert {"1.root.json", "root.json", "1.targets.json", "1.deltas.json", "1.snapshot.json",
            "timestamp.json"} <= names
    root = Metadata[Root].from_bytes((meta / "1.root.json").read_bytes()).signed
    assert root.roles["root"].threshold == 2 and len(root.roles["root"].keyids) == 3
    assert root.consistent_snapshot
    with pytest.raises(RepositoryError, match="already holds"):
        Repository.create(kit.path, root_signers=kit.root_signers, root_threshold=2,
                          targets_signers=[kit.signer("targets")], online=kit.repo.online)  # type: ignore[arg-type]


def test_publish_stores_consistent_files_and_slot_record(kit: RepoKit) -> None:
    bundle = make_bundle(version=1)
    assert kit.publish(bundle, minimum_version=1) == 2
    targets = kit.repo.targets().signed
    full = targets.targets["models/logcls/1/logcls-1.nfb"]
    stored = kit.repo.target_file_path(full)
    assert stored.read_bytes() == bundle
    assert stored.name == f"{full.hashes['sha256']}.logcls-1.nfb"
    record = SlotRecord.model_validate(targets.targets["slots/logs.json"].custom)
    assert (record.minimum_version, record.latest_version, record.model) == (1, 1, "logcls")
    snapshot = kit.repo.snapshot().signed
    assert snapshot.meta["targets.json"].version == 2 and snapshot.version == 2
    # The minimum carries over unless the operator changes it.
    kit.publish(make_bundle(version=2))
    record = SlotRecord.model_validate(kit.repo.targets().signed.targets["slots/logs.json"]
                                       .custom)
    assert (record.minimum_version, record.latest_version) == (1, 2)


def test_publish_refusals(kit: RepoKit) -> None:
    bundle = make_bundle(version=1)
    metadata, files = sign_update(kit, bundle)
    # Signed by a key root does not list for targets.
    md = Metadata[Targets].from_bytes(metadata)
    md.signatures.clear()
    md.sign(CryptoSigner.generate_ed25519())
    with pytest.raises(PublishRejected, match="not signed by the targets keys"):
        kit.repo.publish_targets(md.to_bytes(), files)
    with pytest.raises(PublishRejected, match="does not match its signed"):
        kit.repo.publish_targets(metadata, {**files, "models/logcls/1/logcls-1.nfb": b"x"})
    with pytest.raises(PublishRejected, match="has no file"):
        kit.repo.publish_targets(metadata, {})
    with pytest.raises(PublishRejected, match="not listed"):
        kit.repo.publish_targets(metadata, {**files, "extra.bin": b"x"})
    with pytest.raises(PublishRejected, match="not TUF targets"):
        kit.repo.publish_targets(b"{}", files)
    assert kit.repo.publish_targets(metadata, files) == 2
    with pytest.raises(PublishRejected, match="must be 3"):  # replay of the same upload
        kit.repo.publish_targets(metadata, files)


def test_publish_refuses_paths_escaping_targets_dir(kit: RepoKit) -> None:
    md = kit.repo.targets()
    from tuf.api.metadata import TargetFile

    md.signed.targets["../../evil"] = TargetFile.from_data("../../evil", b"x", ["sha256"])
    with pytest.raises(PublishRejected, match="not a plain relative path"):
        kit.repo.publish_targets(_resign(kit, md), {"../../evil": b"x"})


def test_operator_refuses_tampered_current_targets_and_republish(kit: RepoKit) -> None:
    kit.publish(make_bundle(version=1))
    md = kit.repo.targets()
    md.signatures.clear()
    md.sign(CryptoSigner.generate_ed25519())  # what a compromised server might hand out
    with pytest.raises(TargetsUpdateError, match="not signed by the targets keys"):
        add_targets(md.to_bytes(), [kit.signer("targets")], bundle=make_bundle(version=2),
                    trusted_root=kit.repo.root_bytes())
    with pytest.raises(TargetsUpdateError, match="already published"):
        sign_update(kit, make_bundle(version=1))
    with pytest.raises(TargetsUpdateError, match="served by model"):
        sign_update(kit, make_bundle(name="other", version=5))


def test_operator_deltas_listed_with_result_hash(kit: RepoKit) -> None:
    v1 = make_bundle(version=1)
    kit.publish(v1)
    base_sha = kit.repo.targets().signed.targets["models/logcls/1/logcls-1.nfb"].hashes["sha256"]
    kit.publish(make_bundle(version=2), deltas=(DeltaFile(b"d", 1, base_sha, "nfd-1"),))
    targets = kit.repo.targets().signed.targets
    delta = ModelTargetInfo.model_validate(targets[delta_target_path("logcls", 2, 1)].custom)
    assert delta.result_sha256 == targets["models/logcls/2/logcls-2.nfb"].hashes["sha256"]


def test_server_delta_checks(kit: RepoKit) -> None:
    kit.publish(make_bundle(version=1))
    kit.publish(make_bundle(version=2))
    targets = kit.repo.targets().signed.targets
    full1, full2 = (targets[f"models/logcls/{v}/logcls-{v}.nfb"] for v in (1, 2))
    good = ModelTargetInfo(kind="delta", model="logcls", slot="logs", version=2,
                           result_sha256=full2.hashes["sha256"], result_length=full2.length,
                           base_version=1, base_sha256=full1.hashes["sha256"],
                           delta_format="nfd-1")
    wrong_result = good.model_copy(update={"result_sha256": "0" * 64})
    with pytest.raises(PublishRejected, match="differ from the signed full"):
        kit.repo.add_delta_targets([DeltaUpload(b"d", wrong_result)])
    wrong_base = good.model_copy(update={"base_sha256": "1" * 64})
    with pytest.raises(PublishRejected, match="base_sha256"):
        kit.repo.add_delta_targets([DeltaUpload(b"d", wrong_base)])
    unsigned = good.model_copy(update={"version": 3, "base_version": 2})
    with pytest.raises(PublishRejected, match="have not signed"):
        kit.repo.add_delta_targets([DeltaUpload(b"d", unsigned)])
    assert kit.repo.add_delta_targets([DeltaUpload(b"d", good)]) == 2
    assert kit.repo.snapshot().signed.meta["deltas.json"].version == 2


def test_refresh_resigns_before_expiry(tmp_path: Path) -> None:
    kit = make_repo(tmp_path, expiry=ExpiryPolicy(timestamp_hours=1, snapshot_days=1))
    ts_before = kit.repo.timestamp().signed
    assert kit.repo.refresh_timestamp() is False
    later = datetime.now(UTC) + timedelta(minutes=40)  # past half of the 1 h lifetime
    assert kit.repo.refresh_timestamp(now=later) is True
    ts_after = kit.repo.timestamp().signed
    assert ts_after.version == ts_before.version + 1
    snapshot = Metadata[Snapshot].from_bytes(
        (kit.path / "metadata" / f"{ts_after.snapshot_meta.version}.snapshot.json").read_bytes())
    assert snapshot.signed.version == ts_after.snapshot_meta.version
    much_later = datetime.now(UTC) + timedelta(days=20)  # deltas role (30 d) too
    assert kit.repo.refresh_timestamp(now=much_later) is True
    assert kit.repo.snapshot().signed.meta["deltas.json"].version == 2
    assert isinstance(kit.repo.timestamp().signed, Timestamp)


def test_rotation_refusals_and_online_key_rotation(kit: RepoKit, tmp_path: Path) -> None:
    new = [generate_key(tmp_path / "new" / f"root-{i}.pem") for i in range(3)]
    old = kit.root_signers
    keys = [s.public_key for s in new]
    with pytest.raises(RotationError, match="OLD root keys"):
        rotate_root(kit.repo, keys, 2, old_signers=old[:1], new_signers=new[:2])
    with pytest.raises(RotationError, match="NEW root keys"):
        rotate_root(kit.repo, keys, 2, old_signers=old[:2], new_signers=new[:1])
    with pytest.raises(RotationError, match="neither an old nor a new"):
        rotate_root(kit.repo, keys, 2, old_signers=old[:2],
                             new_signers=[*new[:2], CryptoSigner.generate_ed25519()])
    assert kit.repo.root_version() == 1  # nothing written by refused attempts
    # Rotate the timestamp key too: the repository must already hold the new one.
    new_ts = generate_key(tmp_path / "new" / "timestamp.pem")
    with pytest.raises(RotationError, match="online timestamp key"):
        rotate_root(kit.repo, keys, 2, old[:2], new[:2],
                             role_keys={"timestamp": [new_ts.public_key]})
    from dataclasses import replace

    assert kit.repo.online is not None
    kit.repo.online = replace(kit.repo.online, timestamp=new_ts)
    assert rotate_root(kit.repo, keys, 2, old[:2], new[:2],
                                role_keys={"timestamp": [new_ts.public_key]}) == 2
    root2 = kit.repo.root().signed
    root2.verify_delegate("timestamp", kit.repo.timestamp().signed_bytes,
                          kit.repo.timestamp().signatures)


def test_targets_key_rotation_resigns_targets(kit: RepoKit, tmp_path: Path) -> None:
    kit.publish(make_bundle(version=1))
    new_targets = generate_key(tmp_path / "t2.pem")
    old = kit.root_signers
    root_keys = [s.public_key for s in old]
    with pytest.raises(RotationError, match="targets_signers"):
        rotate_root(kit.repo, root_keys, 2, old[:2], old[:2],
                             role_keys={"targets": [new_targets.public_key]})
    rotate_root(kit.repo, root_keys, 2, old[:2], old[:2],
                         role_keys={"targets": [new_targets.public_key]},
                         targets_signers=[new_targets])
    targets = kit.repo.targets()
    assert targets.signed.version == 3 and "models/logcls/1/logcls-1.nfb" in targets.signed.targets
    kit.repo.root().signed.verify_delegate("targets", targets.signed_bytes, targets.signatures)


@pytest.mark.parametrize("name", ["delta-from-edge", "Delta-From-1", "delta-from-"])
def test_reserved_model_names_refused_at_publish(kit: RepoKit, name: str) -> None:
    """Issue 8.4: no model may be named like a delta file, neither by the operator tool
    nor in metadata the server is asked to publish."""
    from tuf.api.metadata import TargetFile

    from contract.bundle import pack_bundle, read_bundle

    parsed = read_bundle(make_bundle(version=1))
    bundle = pack_bundle(parsed.manifest.model_copy(update={"name": name}), parsed.files)
    with pytest.raises(TargetsUpdateError, match="reserved"):
        sign_update(kit, bundle)
    md = kit.repo.targets()
    path = f"models/{name}/1/{name}-1.nfb"
    target = TargetFile.from_data(path, bundle, ["sha256"])
    target.unrecognized_fields["custom"] = {
        "kind": "full", "model": name, "slot": "logs", "version": 1,
        "result_sha256": target.hashes["sha256"], "result_length": len(bundle)}
    md.signed.targets[path] = target
    with pytest.raises(PublishRejected, match="reserved"):
        kit.repo.publish_targets(_resign(kit, md), {path: bundle})


@pytest.mark.parametrize("paths", [["models/*/*/delta-from-*"], ["models/*/*/*"], ["*"],
                                   ["models/*/*/delta-from-[0-9]*.nfd", "slots/*"]])
def test_wider_delta_delegation_refused_and_rewritten(kit: RepoKit, paths: list[str]) -> None:
    """Issue 8.4: the server publishes no targets metadata that lets the online deltas key
    reach more than delta files; the operator tool re-anchors an old delegation."""
    from contract.tuf_targets import DELTA_PATH_PATTERN, DELTAS_ROLE

    md = kit.repo.targets()
    assert md.signed.delegations and md.signed.delegations.roles
    md.signed.delegations.roles[DELTAS_ROLE].paths = paths
    with pytest.raises(PublishRejected, match="only \\['models"):
        kit.repo.publish_targets(_resign(kit, md), {})
    update = add_targets(md.to_bytes(), [kit.signer("targets")], bundle=make_bundle(version=1))
    roles = Metadata[Targets].from_bytes(update.metadata).signed.delegations.roles  # type: ignore[union-attr]
    assert roles is not None and roles[DELTAS_ROLE].paths == [DELTA_PATH_PATTERN]


def _signed_model_target(kit: RepoKit, data: bytes, version: int,
                         model: str = "logcls") -> tuple[bytes, str]:
    """Targets metadata listing ``data`` as the full bundle of ``model`` v``version``,
    signed with the operators' key whatever it holds (another signing tool, a leaked key)."""
    from tuf.api.metadata import TargetFile

    md = kit.repo.targets()
    path = f"models/{model}/{version}/{model}-{version}.nfb"
    target = TargetFile.from_data(path, data, ["sha256"])
    target.unrecognized_fields["custom"] = {
        "kind": "full", "model": model, "slot": "logs", "version": version,
        "result_sha256": target.hashes["sha256"], "result_length": len(data)}
    md.signed.targets[path] = target
    return _resign(kit, md), path


def test_the_server_publishes_only_the_bundle_the_target_names(kit: RepoKit) -> None:
    """Review, December 2026: signed random bytes, or another version's bundle, were
    published as a release (and deltas built to them); a version past the database's
    integers was published, then every later publish and the server's start failed."""
    v2 = make_bundle(version=2)
    for data, version, message in (
            (b"\x00" * 4096, 3, "not a valid model bundle"),
            (v2, 3, "signed as logcls v3 .* but its bundle is logcls v2"),
            (make_bundle(version=2), 2**31, "invalid custom fields")):
        metadata, path = _signed_model_target(kit, data, version)
        with pytest.raises(PublishRejected, match=message):
            kit.repo.publish_targets(metadata, {path: data})
    metadata, path = _signed_model_target(kit, v2, 2)
    assert kit.repo.publish_targets(metadata, {path: v2}) == 2


def test_a_published_release_never_changes(kit: RepoKit) -> None:
    """Review, December 2026: the operators' key could re-sign a published version's
    target with other bytes (devices that had it kept the old model under the same
    version, deltas from it stopped applying), or publish a version below the slot's
    signed minimum that every device refuses. The server refuses both and says what to
    do. (A second bundle of a version under another name cannot be listed: a model
    target's path is the one its fields name.)"""
    kit.publish(make_bundle(version=1))
    kit.publish(make_bundle(version=5), minimum_version=5)
    # v1 again, other bytes (a bundle of v1 whose model is v3's), same path
    forged = make_bundle(version=1, size=32 * 1024)
    metadata, path = _signed_model_target(kit, forged, 1)
    # its own kind: the API does not tell the operator to sign again (that does not help)
    with pytest.raises(ReleaseChangeRefused, match="was published with other bytes"):
        kit.repo.publish_targets(metadata, {path: forged})
    # the same contents listed again are fine (every publish lists the earlier releases)
    v1 = kit.repo.targets().signed.targets["models/logcls/1/logcls-1.nfb"]
    assert kit.repo.target_file_path(v1).read_bytes() == make_bundle(version=1)
    # a version under the slot's minimum (v5): devices refuse it, so does the server
    v3 = make_bundle(version=3)
    metadata, path = _signed_model_target(kit, v3, 3)
    with pytest.raises(PublishRejected, match="below the minimum version 5 of slot 'logs'"):
        kit.repo.publish_targets(metadata, {path: v3})
    assert kit.repo.targets().signed.version == 3  # nothing was published
    # a later version publishes as before
    v6 = make_bundle(version=6)
    metadata, path = _signed_model_target(kit, v6, 6)
    assert kit.repo.publish_targets(metadata, {path: v6}) == 4



def test_a_retired_release_cannot_come_back_with_other_bytes(kit: RepoKit) -> None:
    """Review of the first version of the check: it compared against the current targets
    only, so v1 retired in one update could be listed again with other bytes in the next."""
    kit.publish(make_bundle(version=1))
    update = add_targets(kit.repo.targets_bytes(), [kit.signer("targets")],
                         bundle=make_bundle(version=2), trusted_root=kit.repo.root_bytes(),
                         remove=["models/logcls/1/logcls-1.nfb"])
    kit.repo.publish_targets(update.metadata, update.files)
    assert "models/logcls/1/logcls-1.nfb" not in kit.repo.targets().signed.targets
    forged = make_bundle(version=1, size=32 * 1024)
    metadata, path = _signed_model_target(kit, forged, 1)
    with pytest.raises(PublishRejected, match="even after it was retired"):
        kit.repo.publish_targets(metadata, {path: forged})
    # the same bytes may be listed again (a retirement undone)
    original = make_bundle(version=1)
    metadata, path = _signed_model_target(kit, original, 1)
    assert kit.repo.publish_targets(metadata, {path: original}) == 4


def test_slot_records_keep_their_model_and_their_minimum_holds(kit: RepoKit) -> None:
    """Review: the minimum was read from the new slot record only, so lowering it in the
    same update let an old version in (and devices obey the signed minimum, so lowering it
    at all lets old versions back); a dropped slot record or another model for the slot
    was accepted."""
    kit.publish(make_bundle(version=1))
    kit.publish(make_bundle(version=5), minimum_version=5)
    v3 = make_bundle(version=3)
    metadata, path = _signed_model_target(kit, v3, 3)
    md = Metadata[Targets].from_bytes(metadata)
    record = md.signed.targets["slots/logs.json"]
    record.unrecognized_fields["custom"] = {**record.custom, "minimum_version": 1}
    with pytest.raises(PublishRejected, match="a minimum is never lowered"):
        kit.repo.publish_targets(_resign(kit, md), {path: v3})
    with pytest.raises(TargetsUpdateError, match="a minimum is never lowered"):
        sign_update(kit, make_bundle(version=6), minimum_version=0)
    md = Metadata[Targets].from_bytes(metadata)
    del md.signed.targets["slots/logs.json"]
    del md.signed.targets[path]
    with pytest.raises(PublishRejected, match="cannot be dropped"):
        kit.repo.publish_targets(_resign(kit, md), {})
    md = kit.repo.targets()
    record = md.signed.targets["slots/logs.json"]
    record.unrecognized_fields["custom"] = {**record.custom, "model": "other"}
    with pytest.raises(PublishRejected, match="served by model 'logcls'"):
        kit.repo.publish_targets(_resign(kit, md), {})


def test_a_runtime_variant_must_be_its_combined_bundles_variant(kit: RepoKit) -> None:
    """Review: a variant with other weights than the combined bundle of its version was
    accepted; devices on that runtime would install other weights under the same version."""
    from tuf.api.metadata import TargetFile

    from contract.bundle import runtime_variant
    from hil.models import finetuned, v1_bundle

    kit.publish(v1_bundle(), variants=True)
    good = finetuned(2)
    update = add_targets(kit.repo.targets_bytes(), [kit.signer("targets")], bundle=good,
                         trusted_root=kit.repo.root_bytes(), variants=True)
    md = Metadata[Targets].from_bytes(update.metadata)
    onnx = next(p for p in md.signed.targets if p.endswith(".onnx.nfb") and "/2/" in p)
    forged = runtime_variant(finetuned(2, seed=9), "onnx")
    target = TargetFile.from_data(onnx, forged, ["sha256"])
    target.unrecognized_fields["custom"] = {
        **md.signed.targets[onnx].custom, "result_sha256": target.hashes["sha256"],
        "result_length": len(forged)}
    md.signed.targets[onnx] = target
    files = {**update.files, onnx: forged}
    with pytest.raises(PublishRejected, match="is not the onnx variant"):
        kit.repo.publish_targets(_resign(kit, md), files)
    # a variant without its combined bundle beside it
    md = Metadata[Targets].from_bytes(update.metadata)
    combined = next(p for p in md.signed.targets if p.endswith("-2.nfb"))
    del md.signed.targets[combined]
    files = {p: d for p, d in update.files.items() if p != combined}
    with pytest.raises(PublishRejected, match="which is not listed"):
        kit.repo.publish_targets(_resign(kit, md), files)
    assert kit.repo.publish_targets(update.metadata, update.files) == 3


def test_history_is_what_was_published_and_a_damaged_file_is_named(kit: RepoKit) -> None:
    """Review: a targets file a failed publish left beyond the current version counted as
    published (a corrected retry was refused); a damaged old file failed every publish
    without naming it."""
    kit.publish(make_bundle(version=1))
    current = kit.repo.targets().signed.version
    leftover = kit.repo.targets()
    forged = make_bundle(version=2, size=16 * 1024)
    from tuf.api.metadata import TargetFile
    leftover.signed.targets["models/logcls/2/logcls-2.nfb"] = TargetFile.from_data(
        "models/logcls/2/logcls-2.nfb", forged, ["sha256"])
    (kit.repo.metadata_dir / f"{current + 1}.targets.json").write_bytes(leftover.to_bytes())
    assert kit.publish(make_bundle(version=2)) == current + 1  # the retry publishes
    fresh = Repository(kit.repo.path, kit.repo.online)
    (kit.repo.metadata_dir / "1.targets.json").write_text("{not json")
    with pytest.raises(RepositoryError, match=r"1\.targets\.json cannot be read"):
        fresh.publish_targets(*sign_update(kit, make_bundle(version=3)))


def test_a_repository_changed_before_the_check_can_still_publish(kit: RepoKit) -> None:
    """Second review: a repository where a release had been re-signed with other bytes
    before this check existed (its first publication differs from its current listing)
    could publish nothing: every publish lists that target again. Listing it as it is now
    is no change; changing it again is still refused."""
    kit.publish(make_bundle(version=1))
    # what the old server accepted: v1 re-signed with other bytes, written directly
    changed = make_bundle(version=1, size=16 * 1024)
    metadata, path = _signed_model_target(kit, changed, 1)
    kit.repo._store_target(Metadata[Targets].from_bytes(metadata).signed.targets[path], changed)
    (kit.repo.metadata_dir / "3.targets.json").write_bytes(metadata)
    kit.repo.write_snapshot_and_timestamp({Targets.type: 3})
    assert kit.publish(make_bundle(version=2)) == 4
    again = make_bundle(version=1, size=8 * 1024)
    metadata, path = _signed_model_target(kit, again, 1)
    with pytest.raises(PublishRejected, match="was published with other bytes"):
        kit.repo.publish_targets(metadata, {path: again})


def test_a_release_for_a_slot_of_another_model_is_refused(kit: RepoKit) -> None:
    """Second review: a model's release signed for a slot whose record names another model
    was accepted; every device refused it, and its path was taken for good."""
    kit.publish(make_bundle(version=1))
    kit.publish(make_bundle(name="other", slot="logs2", version=1))
    v3 = make_bundle(version=3, slot="logs2")
    metadata, path = _signed_model_target(kit, v3, 3)
    md = Metadata[Targets].from_bytes(metadata)
    md.signed.targets[path].unrecognized_fields["custom"] = {
        **md.signed.targets[path].custom, "slot": "logs2"}
    with pytest.raises(PublishRejected, match="whose record names model 'other'"):
        kit.repo.publish_targets(_resign(kit, md), {path: v3})
