"""Builders for TUF tests: real keys on disk, a real repository, real bundles."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from securesystemslib.signer import CryptoSigner

from contract.bundle import (
    BundleManifest,
    TensorSignature,
    TokenizerSpec,
    file_entry,
    pack_bundle,
)
from fleet_server.repository.keys import generate_role_keys, load_signer
from fleet_server.repository.metadata_store import OnlineSigners
from fleet_server.repository.operator import DeltaFile, add_targets
from fleet_server.repository.repo import ExpiryPolicy, Repository


def make_bundle(name: str = "logcls", slot: str = "logs", version: int = 1,
                size: int = 64 * 1024) -> bytes:
    """A valid bundle whose model bytes depend on (name, version): deterministic."""
    seed = hashlib.sha256(f"{name}/{version}".encode()).digest()
    blob = (seed * (size // len(seed) + 1))[:size]
    files = {"model.onnx": blob}
    manifest = BundleManifest(
        name=name, slot=slot, version=version, version_label=f"v{version}",
        task="text-classification", labels=["normal", "error"], normal_label="normal",
        tokenizer=TokenizerSpec(kind="hashed-ngrams-v1", buckets=64, char_ngrams=[3],
                                word_ngrams=[1]),
        inputs=[TensorSignature(name="x", dtype="float32", shape=[None, 64])],
        outputs=[TensorSignature(name="p", dtype="float32", shape=[None, 2])],
        files=[file_entry("model.onnx", blob)], runtimes={"onnx": "model.onnx"},
    )
    return pack_bundle(manifest, files)


@dataclass
class RepoKit:
    path: Path
    keys: dict[str, list[Path]]
    repo: Repository

    def signer(self, role: str, index: int = 0) -> CryptoSigner:
        return load_signer(self.keys[role][index])

    @property
    def root_signers(self) -> list[CryptoSigner]:
        return [load_signer(p) for p in self.keys["root"]]

    def publish(self, bundle: bytes, *, deltas: tuple[DeltaFile, ...] = (),
                minimum_version: int | None = None, variants: bool = False) -> int:
        """Operator signs (targets key) and the server publishes; returns targets version.
        ``variants``: sign each runtime's variant too (as ``nanofleet model publish``)."""
        update = add_targets(self.repo.targets_bytes(), [self.signer("targets")], bundle=bundle,
                             deltas=deltas, minimum_version=minimum_version,
                             trusted_root=self.repo.root_bytes(), variants=variants)
        return self.repo.publish_targets(update.metadata, update.files)


def online_signers(keys: dict[str, list[Path]]) -> OnlineSigners:
    return OnlineSigners.from_key_dir(keys["snapshot"][0].parent)


def make_repo(base: Path, *, expiry: ExpiryPolicy | None = None, root_threshold: int = 2,
              root_keys: int = 3) -> RepoKit:
    keys = generate_role_keys(base / "keys", root_keys=root_keys)
    repo = Repository.create(
        base / "repo", root_signers=[load_signer(p) for p in keys["root"]],
        root_threshold=root_threshold, targets_signers=[load_signer(keys["targets"][0])],
        online=online_signers(keys), expiry=expiry)
    return RepoKit(base / "repo", keys, repo)
