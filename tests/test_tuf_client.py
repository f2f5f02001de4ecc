"""The device's TUF client against a real repository over real HTTP (127.0.0.1):
the publish flow end to end, deltas, resume, and every attack refused with a reason."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, TargetFile, Targets, Timestamp

from agent.ota.errors import UpdateRefused
from agent.ota.policy import InstalledBundle, choose_artifact, rebuilt_refusal, version_refusal
from agent.ota.tuf_client import TufClient
from contract.delta import apply_delta
from contract.tuf_targets import ModelTargetInfo
from fleet_server.deltas import build_delta
from fleet_server.repository.keys import generate_key
from fleet_server.repository.operator import (
    TargetsUpdateError,
    add_targets,
    fetch_verified_targets,
)
from fleet_server.repository.repo import DeltaUpload
from fleet_server.repository.rotation import rotate_root
from tests.support.tuf_http import Fault, RepoServer
from tests.support.tuf_repo import RepoKit, make_bundle, make_repo

pytestmark = pytest.mark.unit


@dataclass
class Env:
    kit: RepoKit
    server: RepoServer
    base: Path
    provisioned_root: bytes

    def client(self, name: str = "device", root: bytes | None = None) -> TufClient:
        return TufClient(self.base / name / "metadata", f"{self.server.url}/metadata",
                         trusted_root=root or self.provisioned_root,
                         target_base_url=f"{self.server.url}/targets")

    def metadata(self, name: str) -> bytes:
        return (self.kit.path / "metadata" / name).read_bytes()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    kit = make_repo(tmp_path)
    with RepoServer(kit.path) as server:
        yield Env(kit, server, tmp_path, kit.repo.root_bytes())


def refused(fn: object, reason: str) -> UpdateRefused:
    assert callable(fn)
    with pytest.raises(UpdateRefused) as info:
        fn()
    assert info.value.reason == reason, str(info.value)
    return info.value


def test_publish_then_verified_download(env: Env) -> None:
    bundle = make_bundle(version=1)
    env.kit.publish(bundle)
    client = env.client()
    client.refresh()
    found = client.find_model_targets("logcls", 1)
    path = client.download_target(found.full.target, env.base / "dl")
    assert path.read_bytes() == bundle
    assert found.full.info.kind == "full" and found.full.sha256 == found.full.info.result_sha256
    assert client.slot_record("logs") is not None
    assert client.minimum_version("logs") == 0
    assert client.minimum_version("other") == 0
    assert client.get_target("models/nope/1/nope-1.nfb") is None
    # A second download reuses the verified file without touching the network.
    before = len(env.server.requests)
    assert client.download_target(found.full.target, env.base / "dl") == path
    assert len(env.server.requests) == before
    assert {"root.json", "timestamp.json", "snapshot.json", "targets.json"} <= {
        p.name for p in (env.base / "device" / "metadata").iterdir()}


def test_server_made_delta_is_found_and_chosen(env: Env) -> None:
    v1, v2 = make_bundle(version=1), make_bundle(version=2)
    env.kit.publish(v1)
    env.kit.publish(v2)
    full2 = env.kit.repo.targets().signed.targets["models/logcls/2/logcls-2.nfb"]
    full1 = env.kit.repo.targets().signed.targets["models/logcls/1/logcls-1.nfb"]

    info = ModelTargetInfo(kind="delta", model="logcls", slot="logs", version=2,
                           result_sha256=full2.hashes["sha256"], result_length=full2.length,
                           base_version=1, base_sha256=full1.hashes["sha256"],
                           delta_format="test-1")
    env.kit.repo.add_delta_targets([DeltaUpload(b"small delta", info)])
    client = env.client()
    client.refresh()
    found = client.find_model_targets("logcls", 2, installed_version=1)
    assert found.delta is not None and found.delta.info.base_version == 1
    installed = InstalledBundle("logcls", 1, full1.hashes["sha256"])
    assert choose_artifact(found.full, found.delta, installed) is found.delta
    assert client.download_target(found.delta.target, env.base / "dl").read_bytes() == \
        b"small delta"
    # No delta from a version nobody made one for: full bundle, with the reason.
    other = client.find_model_targets("logcls", 2, installed_version=None)
    assert other.delta is None


def test_tampered_target_bytes_refused(env: Env) -> None:
    bundle = make_bundle(version=1)
    env.kit.publish(bundle)
    client = env.client()
    client.refresh()
    target = client.find_model_targets("logcls", 1).full.target
    evil = bytearray(bundle)
    evil[1000] ^= 0xFF
    env.server.faults["logcls-1.nfb"] = Fault(replace=bytes(evil))
    err = refused(lambda: client.download_target(target, env.base / "dl"), "hash-mismatch")
    assert "models/logcls/1/logcls-1.nfb" in err.detail
    assert list((env.base / "dl").iterdir()) == []  # nothing kept, not even the partial


def test_endless_data_refused(env: Env) -> None:
    env.kit.publish(make_bundle(version=1))
    client = env.client()
    client.refresh()
    target = client.find_model_targets("logcls", 1).full.target
    env.server.faults["logcls-1.nfb"] = Fault(endless=True)
    err = refused(lambda: client.download_target(target, env.base / "dl"), "too-long")
    assert str(target.length) in err.detail
    assert list((env.base / "dl").iterdir()) == []
    # Endless metadata too: ngclient's bound on timestamp size is enforced by the transport.
    env.server.faults["timestamp.json"] = Fault(endless=True)
    refused(env.client("other").refresh, "too-long")


def forge_targets(env: Env, signer: CryptoSigner) -> None:
    """A compromised server: lists a target signed by a key root does not trust, and
    re-signs snapshot/timestamp with the (stolen) online keys."""
    md = env.kit.repo.targets()
    md.signed.version += 1
    md.signed.targets.clear()
    md.signatures.clear()
    md.sign(signer)
    (env.kit.path / "metadata" / f"{md.signed.version}.targets.json").write_bytes(md.to_bytes())
    env.kit.repo.write_snapshot_and_timestamp({Targets.type: md.signed.version})


def test_targets_signed_by_unknown_key_refused(env: Env) -> None:
    env.kit.publish(make_bundle(version=1))
    forge_targets(env, CryptoSigner.generate_ed25519())
    err = refused(env.client().refresh, "bad-signature")
    assert "targets" in err.detail


def test_expired_timestamp_refused_then_recovered(env: Env) -> None:
    env.kit.publish(make_bundle(version=1))
    ts = env.kit.repo.timestamp()
    ts.signed.version += 1
    ts.signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    ts.signatures.clear()
    ts.sign(env.kit.signer("timestamp"))
    (env.kit.path / "metadata" / "timestamp.json").write_bytes(ts.to_bytes())
    err = refused(env.client().refresh, "expired-metadata")
    assert "timestamp" in err.detail
    assert env.kit.repo.refresh_timestamp() is True  # the server's timer re-signs it
    env.client().refresh()


def test_replayed_older_metadata_refused(env: Env) -> None:
    env.kit.publish(make_bundle(version=1))
    old_timestamp = env.metadata("timestamp.json")
    env.kit.publish(make_bundle(version=2))
    client = env.client()
    client.refresh()  # the device has seen the newer state
    env.server.faults["/metadata/timestamp.json"] = Fault(replace=old_timestamp)
    err = refused(env.client().refresh, "rollback")
    assert "timestamp version" in err.detail


def test_mix_and_match_refused(env: Env) -> None:
    env.kit.publish(make_bundle(version=1))
    old_targets = env.metadata("2.targets.json")
    old_snapshot = env.metadata("2.snapshot.json")
    env.kit.publish(make_bundle(version=2))
    # Old targets served under the name the new snapshot points at.
    env.server.faults["/metadata/3.targets.json"] = Fault(replace=old_targets)
    err = refused(env.client("a").refresh, "mix-and-match")
    # the snapshot names the targets file's length and hash: refused before parsing
    assert "does not match its signed hash" in err.detail
    env.server.faults.clear()
    # Old snapshot under the new snapshot's name: its hash is not the one timestamp signed.
    env.server.faults["/metadata/3.snapshot.json"] = Fault(replace=old_snapshot)
    refused(env.client("b").refresh, "mix-and-match")


def test_downgrade_below_signed_minimum_refused(env: Env) -> None:
    for version in (1, 2, 3):
        env.kit.publish(make_bundle(version=version), minimum_version=2 if version == 3 else None)
    client = env.client()
    client.refresh()
    minimum = client.minimum_version("logs")
    assert minimum == 2
    assert client.find_model_targets("logcls", 1).full.info.version == 1  # still listed...
    refusal = version_refusal(1, live_version=None, minimum_version=minimum)
    assert refusal is not None and refusal.reason == "below-minimum"  # ...but refused
    refusal = version_refusal(2, live_version=3, minimum_version=minimum)
    assert refusal is not None and refusal.reason == "downgrade"
    assert version_refusal(3, live_version=2, minimum_version=minimum) is None


def test_root_rotation_followed_by_old_provisioned_client(env: Env) -> None:
    env.kit.publish(make_bundle(version=1))
    client = env.client()
    client.refresh()
    new_root_files = [env.base / "keys2" / f"root-{i}.pem" for i in range(3)]
    new_signers = [generate_key(p) for p in new_root_files]
    old = env.kit.root_signers
    version = rotate_root(env.kit.repo, [s.public_key for s in new_signers], 2,
                          old_signers=old[:2], new_signers=new_signers[:2])
    assert version == 2
    env.kit.publish(make_bundle(version=2))
    # Provisioned with root v1 long ago: walks to v2, then sees v2 of the model.
    fresh = env.client("old-device", root=env.provisioned_root)
    fresh.refresh()
    assert fresh.find_model_targets("logcls", 2).full.info.version == 2
    stored = Metadata.from_bytes((env.base / "old-device/metadata/root.json").read_bytes())
    assert stored.signed.version == 2
    client.refresh()  # the already-running device follows too


def test_forged_root_signed_only_by_new_keys_refused(env: Env) -> None:
    env.kit.publish(make_bundle(version=1))
    root = env.kit.repo.root()
    attacker = CryptoSigner.generate_ed25519()
    root.signed.version = 2
    for keyid in list(root.signed.roles["root"].keyids):
        root.signed.revoke_key(keyid, "root")
    root.signed.add_key(attacker.public_key, "root")
    root.signed.roles["root"].threshold = 1
    root.signatures.clear()
    root.sign(attacker)
    (env.kit.path / "metadata" / "2.root.json").write_bytes(root.to_bytes())
    err = refused(env.client().refresh, "bad-signature")
    assert "root" in err.detail


def test_resume_across_restart_after_cut_connection(env: Env) -> None:
    bundle = make_bundle(version=1, size=1 << 20)
    env.kit.publish(bundle)
    client = env.client()
    client.refresh()
    target = client.find_model_targets("logcls", 1).full.target
    env.server.faults["logcls-1.nfb"] = Fault(cut_after=300_000, times=1)
    err = refused(lambda: client.download_target(target, env.base / "dl", attempts=1),
                  "incomplete-download")
    assert "300000" in err.detail
    part = TufClient.partial_path(target, env.base / "dl")
    assert part.stat().st_size == 300_000
    # "Restart": a new client, new process state; only the .part file survived.
    again = env.client()
    again.refresh()
    target = again.find_model_targets("logcls", 1).full.target
    path = again.download_target(target, env.base / "dl")
    assert path.read_bytes() == bundle and not part.exists()
    ranged = [r for r in env.server.requests if r.path.endswith("logcls-1.nfb")]
    assert [r.range for r in ranged] == [None, "bytes=300000-"]
    assert ranged[-1].status == 206


def test_resume_within_one_call_and_without_range_support(env: Env) -> None:
    bundle = make_bundle(version=1, size=512 * 1024)
    env.kit.publish(bundle)
    client = env.client()
    client.refresh()
    target = client.find_model_targets("logcls", 1).full.target
    env.server.faults["logcls-1.nfb"] = Fault(cut_after=100_000, times=1)
    # The retry lands on a server that ignores Range: the client skips what it has.
    env.server.faults[".nfb"] = Fault(ignore_range=True)
    path = client.download_target(target, env.base / "dl", attempts=3, retry_delay=0)
    assert path.read_bytes() == bundle


def test_delta_role_signed_by_unknown_key_falls_back_to_full(env: Env) -> None:
    env.kit.publish(make_bundle(version=1))
    env.kit.publish(make_bundle(version=2))
    md = env.kit.repo.targets("deltas")
    md.signed.version += 1
    md.signatures.clear()
    md.sign(CryptoSigner.generate_ed25519())
    (env.kit.path / "metadata" / f"{md.signed.version}.deltas.json").write_bytes(md.to_bytes())
    env.kit.repo.write_snapshot_and_timestamp({"deltas": md.signed.version})
    client = env.client()
    client.refresh()
    found = client.find_model_targets("logcls", 2, installed_version=1)
    assert found.delta is None and found.delta_problem and "bad-signature" in found.delta_problem
    assert found.full.info.version == 2


def test_timestamp_is_rewritten_by_refresh(env: Env) -> None:
    before = Metadata[Timestamp].from_bytes(env.metadata("timestamp.json")).signed.version
    assert env.kit.repo.refresh_timestamp() is False  # fresh: nothing to do
    assert env.kit.repo.refresh_timestamp(force=True) is True
    after = Metadata[Timestamp].from_bytes(env.metadata("timestamp.json")).signed.version
    assert after == before + 1
    env.client().refresh()


def test_unusual_target_names_are_quoted(env: Env) -> None:

    md = env.kit.repo.targets()
    files = {name: name.encode() * 3 for name in ("odd dir/ä b?.txt", "x/100%#.bin")}
    for name, data in files.items():
        md.signed.targets[name] = TargetFile.from_data(name, data, ["sha256"])
    md.signed.version += 1
    md.signatures.clear()
    md.sign(env.kit.signer("targets"))
    env.kit.repo.publish_targets(md.to_bytes(), files)
    client = env.client()
    for name, data in files.items():
        target = client.get_target(name)
        assert target is not None
        assert client.download_target(target, env.base / "dl").read_bytes() == data


def test_real_delta_verified_applied_and_checked_against_signed_full(env: Env) -> None:

    v1, v2 = make_bundle(version=1, size=256 * 1024), make_bundle(version=2, size=256 * 1024)
    env.kit.publish(v1)
    env.kit.publish(v2)
    top = env.kit.repo.targets().signed.targets
    full1, full2 = (top[f"models/logcls/{v}/logcls-{v}.nfb"] for v in (1, 2))
    info = ModelTargetInfo(kind="delta", model="logcls", slot="logs", version=2,
                           result_sha256=full2.hashes["sha256"], result_length=full2.length,
                           base_version=1, base_sha256=full1.hashes["sha256"],
                           delta_format="nfd-1")
    env.kit.repo.add_delta_targets([DeltaUpload(build_delta(v1, v2), info)])

    installed_path = env.base / "live.nfb"
    installed_path.write_bytes(v1)
    installed = InstalledBundle("logcls", 1, full1.hashes["sha256"])
    client = env.client()
    client.refresh()
    found = client.find_model_targets("logcls", 2, installed_version=1)
    chosen = choose_artifact(found.full, found.delta, installed)
    assert chosen is found.delta
    delta_file = client.download_target(chosen.target, env.base / "dl")
    out = env.base / "rebuilt.nfb"
    apply_delta(installed_path, delta_file, out, found.full.sha256, found.full.length)

    rebuilt = out.read_bytes()
    assert rebuilt_refusal(found.full, hashlib.sha256(rebuilt).hexdigest(), len(rebuilt)) is None
    assert rebuilt == v2

    # A server serving other bytes for the delta: refused, and the full bundle is next.
    (env.base / "dl" / delta_file.name).unlink()
    env.server.faults["delta-from-1.nfd"] = Fault(replace=b"\0" * chosen.length)
    refused(lambda: client.download_target(chosen.target, env.base / "dl"), "hash-mismatch")
    fallback = choose_artifact(found.full, found.delta, installed, delta_failed=True)
    assert client.download_target(fallback.target, env.base / "dl").read_bytes() == v2


def test_operator_builds_on_verified_remote_targets(env: Env) -> None:
    env.kit.publish(make_bundle(version=1))
    murl = f"{env.server.url}/metadata"
    current = fetch_verified_targets(murl, env.provisioned_root, env.base / "operator")
    update = add_targets(current, [env.kit.signer("targets")], bundle=make_bundle(version=2),
                         trusted_root=env.provisioned_root)
    assert env.kit.repo.publish_targets(update.metadata, update.files) == 3
    forge_targets(env, CryptoSigner.generate_ed25519())  # the server turns hostile
    with pytest.raises(TargetsUpdateError, match="UnsignedMetadataError"):
        fetch_verified_targets(murl, env.provisioned_root, env.base / "operator2")
