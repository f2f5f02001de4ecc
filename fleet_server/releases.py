"""Publishing releases: operator-signed targets in, server-made deltas out, index in the DB.

:meth:`Releases.publish` is what ``POST /api/v1/models/publish`` runs:

1. :meth:`Repository.publish_targets` checks the operators' signature, version,
   expiry and every uploaded file, and stores them (the repository re-signs
   snapshot and timestamp);
2. for each new full bundle, deltas from the previous K listed versions of the
   same model (:func:`fleet_server.deltas.choose_delta`: only when smaller than
   the configured fraction, and verified with the device's own applier);
3. those deltas are listed in the delegated ``deltas`` role with the server's
   online key (:meth:`Repository.add_delta_targets`); deltas that lead to versions
   no longer among the newest ones are removed there at the same time;
4. the database index of releases is brought in line with the repository.

Which bases and which stale deltas are pure functions (:func:`delta_bases`,
:func:`stale_deltas`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from tuf.api.metadata import Metadata, Targets
from tuf.api.serialization import DeserializationError

from contract.bundle import BundleError, read_bundle
from contract.bundle_features import features_needed
from contract.delta import FORMAT_VERSION
from contract.tuf_targets import (
    DELTA_SUFFIX,
    DELTAS_ROLE,
    RUNTIME_FORMATS,
    ModelTargetInfo,
    parse_model_info,
)
from fleet_server.config import DeltaSettings
from fleet_server.db import AuditEntry, Database, DeltaArtifact, ModelVersion
from fleet_server.deltas import choose_delta
from fleet_server.repository.metadata_store import RepositoryError
from fleet_server.repository.repo import DeltaUpload, PublishRejected, Repository

log = logging.getLogger("nanofleet.server.releases")
DELTA_FORMAT = f"nfd-{FORMAT_VERSION}"


class VersionConflict(PublishRejected):
    """The uploaded targets metadata is not exactly current + 1 (someone published first)."""


@dataclass(frozen=True)
class DeltaOutcome:
    model: str
    version: int
    base_version: int
    status: str  # listed | too-large | failed | no-delta-key | over-budget
    length: int | None = None
    fraction: float | None = None
    detail: str | None = None
    runtime: str | None = None  # the runtime variant's deltas; None: the combined bundle


@dataclass
class DeltaBudget:
    """How long a publish may keep building deltas. The first delta of the publish (in
    :func:`delta_jobs` order: a runtime variant's from the newest earlier version, where
    most devices are) is always built; another only if it can end before the deadline,
    judged by the slowest delta so far (the bundles of one publish are about the same
    size), so one delta at most ends past it."""

    deadline: float
    slowest: float = 0.0
    built: int = 0

    def allows(self, now: float) -> bool:
        return self.built == 0 or now + self.slowest <= self.deadline

    def spent(self, seconds: float) -> None:
        self.built += 1
        self.slowest = max(self.slowest, seconds)


@dataclass(frozen=True)
class PublishOutcome:
    targets_version: int
    new_versions: list[ModelTargetInfo]
    deltas: list[DeltaOutcome]
    removed_deltas: list[str]


def model_targets(targets: Targets) -> dict[str, ModelTargetInfo]:
    """Target path -> parsed custom, for model targets (slot records and junk skipped)."""
    out = {}
    for path, target in targets.targets.items():
        if not path.startswith("models/"):
            continue
        try:
            out[path] = parse_model_info(path, target.custom)
        except ValueError as exc:
            log.warning("ignoring target with unusable custom fields: %s", exc)
    return out


def delta_bases(listed: list[ModelTargetInfo], new: ModelTargetInfo, k: int) -> list[int]:
    """Versions to compute deltas from: the ``k`` newest listed full versions of the same
    model and the same runtime variant (None: combined) below ``new.version``, newest first."""
    versions = sorted({i.version for i in listed if i.kind == "full" and i.model == new.model
                       and i.runtime == new.runtime and i.version < new.version},
                      reverse=True)
    return versions[:k]


def delta_jobs(listed: list[ModelTargetInfo], new: list[ModelTargetInfo],
               k: int) -> list[tuple[ModelTargetInfo, int]]:
    """The deltas a publish builds, (new full target, base version), in the order the time
    budget spends on them: every new target's newest base before any older one, and among
    those the runtime variants first (agents download their runtime's variant and its
    delta; the combined bundle serves only agents that predate variants)."""
    bases = {i.target_path(): delta_bases(listed, i, k) for i in new}
    order = sorted(new, key=lambda i: (i.runtime is None, i.model, i.version, i.runtime or ""))
    depth = max((len(b) for b in bases.values()), default=0)
    return [(i, bases[i.target_path()][rank]) for rank in range(depth) for i in order
            if rank < len(bases[i.target_path()])]


def stale_deltas(deltas: Mapping[str, ModelTargetInfo], full: list[ModelTargetInfo],
                 keep_target_versions: int) -> list[str]:
    """Delta paths to drop: those leading to a version that is not among the newest
    ``keep_target_versions`` listed versions of its model, or whose result is unlisted."""
    newest: dict[str, list[int]] = {}
    for info in full:
        newest.setdefault(info.model, []).append(info.version)
    keep = {(m, v) for m, vs in newest.items()
            for v in sorted(vs, reverse=True)[:keep_target_versions]}
    return sorted(p for p, i in deltas.items() if (i.model, i.version) not in keep)


def _targets_version(metadata: bytes) -> int:
    try:
        return Metadata[Targets].from_bytes(metadata).signed.version
    except (DeserializationError, ValueError, TypeError) as exc:
        raise PublishRejected(f"not TUF targets metadata: {exc}") from None


class Releases:
    def __init__(self, db: Database, repo: Repository, settings: DeltaSettings) -> None:
        self.db = db
        self.repo = repo
        self.settings = settings
        self._lock = threading.Lock()  # one publish at a time in this process

    def publish(self, metadata: bytes, files: Mapping[str, Path], actor: str) -> PublishOutcome:
        with self._lock:
            current = self.repo.targets().signed
            uploaded = _targets_version(metadata)
            if uploaded != current.version + 1:
                raise VersionConflict(
                    f"targets version {uploaded} must be {current.version + 1} (the server has "
                    f"v{current.version}): publish again so it is built on the current targets")
            before = set(model_targets(current))
            version = self.repo.publish_targets(metadata, dict(files))
            after = self.repo.targets().signed
            listed = model_targets(after)
            new = [i for p, i in listed.items() if p not in before and i.kind == "full"]
            combined = [i for i in new if i.runtime is None]  # one entry per release
            outcomes: list[DeltaOutcome] = []
            uploads: list[DeltaUpload] = []
            # The release is live already; its deltas are an optimisation, and the operator's
            # CLI waits for this answer (300 s): bounded, so a big bundle cannot hold it.
            budget = DeltaBudget(time.monotonic() + self.settings.time_budget_s)
            jobs = delta_jobs(list(listed.values()), new, self.settings.previous_versions)
            made, results = self._deltas_for(after, list(listed.values()), jobs, budget)
            uploads += made
            outcomes += results
            removed = self._list_deltas(uploads, outcomes, list(listed.values()))
            self.sync(actor=actor)
            with self.db.session() as session:
                session.add(AuditEntry(actor=actor, action="publish",
                                       subject=f"targets v{version}",
                                       detail={"versions": [f"{i.model} v{i.version}"
                                                            for i in combined],
                                               "deltas": [asdict(o) for o in outcomes],
                                               "removed_deltas": removed}))
            return PublishOutcome(version, combined, outcomes, removed)

    def _deltas_for(self, targets: Targets, listed: list[ModelTargetInfo],
                    jobs: list[tuple[ModelTargetInfo, int]], budget: DeltaBudget,
                    ) -> tuple[list[DeltaUpload], list[DeltaOutcome]]:
        if not jobs:
            return [], []
        if self.repo.online is None or self.repo.online.deltas is None:
            return [], [DeltaOutcome(new.model, new.version, b, "no-delta-key",
                                     detail="the server has no deltas.pem: no deltas",
                                     runtime=new.runtime)
                        for new, b in jobs]
        uploads, outcomes = [], []
        bundles: dict[str, bytes] = {}
        for new, base_version in jobs:
            if not budget.allows(time.monotonic()):
                # Their devices download the full bundle; the publish answers in time.
                outcomes.append(DeltaOutcome(
                    new.model, new.version, base_version, "over-budget",
                    detail=f"the publish's delta time budget ([deltas] time_budget_s = "
                    f"{self.settings.time_budget_s:g} s) was used: devices on v{base_version} "
                    "download the full bundle", runtime=new.runtime))
                continue
            base_info = next(i for i in listed if i.kind == "full" and i.model == new.model
                             and i.runtime == new.runtime and i.version == base_version)
            base_target = targets.targets[base_info.target_path()]
            started = time.monotonic()
            try:
                path = new.target_path()
                if path not in bundles:
                    bundles[path] = self.repo.target_file_path(targets.targets[path]).read_bytes()
                old_bytes = self.repo.target_file_path(base_target).read_bytes()
                delta = choose_delta(old_bytes, bundles[path], self.settings.max_fraction,
                                     self.settings.level)
            except Exception as exc:  # a delta is an optimisation: never fail the release
                budget.spent(time.monotonic() - started)
                log.exception("delta %s v%d -> v%d failed", new.model, base_version,
                              new.version)
                outcomes.append(DeltaOutcome(new.model, new.version, base_version, "failed",
                                             detail=f"{type(exc).__name__}: {exc}",
                                             runtime=new.runtime))
                continue
            took = time.monotonic() - started
            budget.spent(took)
            if delta is None:
                outcomes.append(DeltaOutcome(
                    new.model, new.version, base_version, "too-large",
                    detail=f"not below {self.settings.max_fraction:.0%} of the bundle",
                    runtime=new.runtime))
                continue
            info = ModelTargetInfo(
                kind="delta", model=new.model, slot=new.slot, version=new.version,
                result_sha256=new.result_sha256, result_length=new.result_length,
                base_version=base_version, base_sha256=base_info.result_sha256,
                delta_format=DELTA_FORMAT, runtime=new.runtime)
            uploads.append(DeltaUpload(delta, info))
            outcomes.append(DeltaOutcome(new.model, new.version, base_version, "listed",
                                         len(delta), len(delta) / new.result_length,
                                         detail=f"built in {took:.2f} s", runtime=new.runtime))
        return uploads, outcomes

    def _list_deltas(self, uploads: list[DeltaUpload], outcomes: list[DeltaOutcome],
                     listed: list[ModelTargetInfo]) -> list[str]:
        if self.repo.online is None or self.repo.online.deltas is None:
            return []
        try:
            current = model_targets(self.repo.targets(DELTAS_ROLE).signed)
        except RepositoryError:
            return []  # repository made without a delta role
        full = [i for i in listed if i.kind == "full"]
        remove = stale_deltas(current, full, self.settings.keep_target_versions)
        if uploads or remove:
            try:
                self.repo.add_delta_targets(uploads, remove=remove)
            except (RepositoryError, PublishRejected) as exc:
                log.error("listing deltas failed: %s", exc)
                outcomes[:] = [o if o.status != "listed" else DeltaOutcome(
                    o.model, o.version, o.base_version, "failed", o.length, o.fraction,
                    f"listing refused: {exc}", o.runtime) for o in outcomes]
                return []
        return remove

    # --- the database index --------------------------------------------------------------
    def _needs(self, top: Targets, path: str, sha256: str) -> list[str] | None:
        """The manifest features the operator-signed bundle at ``path`` needs, or None when
        it cannot be read here (left to the devices, which check it anyway)."""
        try:
            data = self.repo.target_file_path(top.targets[path]).read_bytes()
            return sorted(features_needed(read_bundle(data, sha256).manifest))
        except (OSError, KeyError, BundleError) as exc:
            log.warning("cannot read the manifest of %s: %s", path, exc)
            return None

    def sync(self, actor: str | None = None) -> None:
        """Make ``model_versions``/``delta_artifacts`` match the repository's current lists."""
        top = self.repo.targets().signed
        targets_version = top.version
        entries: dict[str, tuple[ModelTargetInfo, int, str]] = {}
        for path, info in model_targets(top).items():
            t = top.targets[path]
            entries[path] = (info, t.length, t.hashes["sha256"])
        try:
            delegated = self.repo.targets(DELTAS_ROLE).signed
            for path, info in model_targets(delegated).items():
                t = delegated.targets[path]
                entries[path] = (info, t.length, t.hashes["sha256"])
        except RepositoryError:
            pass
        with self.db.session() as session:
            versions = {m.target_path: m for m in session.scalars(select(ModelVersion))}
            deltas = {d.target_path: d for d in session.scalars(select(DeltaArtifact))}
            for path, (info, length, sha) in entries.items():
                if info.kind == "full" and info.runtime is not None:
                    continue  # a variant of a release: models_view reads it from the targets
                if info.kind == "full":
                    row = versions.get(path)
                    if row is None:
                        session.add(ModelVersion(
                            model=info.model, slot=info.slot, version=info.version,
                            sha256=sha, length=length, target_path=path,
                            targets_version=targets_version, published_at=time.time(),
                            published_by=actor, listed=True,
                            needs=self._needs(top, path, sha)))
                    else:
                        row.listed = True
                        if row.needs is None:  # published before the server read them
                            row.needs = self._needs(top, path, sha)
                else:
                    drow = deltas.get(path)
                    if drow is None or drow.sha256 != sha:
                        if drow is not None:
                            session.delete(drow)
                            session.flush()
                        assert info.base_version is not None
                        session.add(DeltaArtifact(
                            model=info.model, version=info.version,
                            base_version=info.base_version, target_path=path, sha256=sha,
                            length=length, delta_format=info.delta_format or "",
                            created_at=time.time(), listed=True))
                    else:
                        drow.listed = True
            for path, row in versions.items():
                row.listed = path in entries
            for path, drow in deltas.items():
                drow.listed = path in entries


def _delta_runtime(target_path: str) -> str | None:
    """The runtime variant a delta path names (``delta-from-3.onnx.nfd``), None: combined."""
    for fmt in RUNTIME_FORMATS:
        if target_path.endswith(f".{fmt}{DELTA_SUFFIX}"):
            return fmt
    return None


def models_view(db: Database, repo: Repository) -> list[dict[str, Any]]:
    """Published models, newest version first, with their deltas and signed minimum."""
    from contract.tuf_targets import parse_slot_record

    minimums: dict[str, int] = {}
    variants: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for path, target in repo.targets().signed.targets.items():
        if path.startswith("models/"):
            try:
                info = parse_model_info(path, target.custom)
            except ValueError:
                continue
            if info.kind == "full" and info.runtime is not None:
                variants.setdefault((info.model, info.version), []).append(
                    {"runtime": info.runtime, "length": target.length,
                     "sha256": info.result_sha256, "target_path": path})
        elif path.startswith("slots/"):
            try:
                record = parse_slot_record(path, target.custom)
            except ValueError:
                continue
            minimums[record.model] = record.minimum_version
    with db.session() as session:
        versions = list(session.scalars(select(ModelVersion).where(ModelVersion.listed)
                                        .order_by(ModelVersion.model,
                                                  ModelVersion.version.desc())))
        deltas = list(session.scalars(select(DeltaArtifact).where(DeltaArtifact.listed)))
    by_model: dict[str, dict[str, Any]] = {}
    for v in versions:
        entry = by_model.setdefault(v.model, {"model": v.model, "slot": v.slot,
                                              "minimum_version": minimums.get(v.model, 0),
                                              "versions": []})
        entry["versions"].append({
            "version": v.version, "sha256": v.sha256, "length": v.length,
            "target_path": v.target_path, "published_at": v.published_at,
            "published_by": v.published_by,
            # Manifest features an agent must read (None: not read yet; rollouts skip
            # devices whose agent cannot, contract.bundle_features).
            "needs": v.needs,
            "variants": sorted(variants.get((v.model, v.version), []),
                               key=lambda x: str(x["runtime"])),
            "deltas": [{"base_version": d.base_version, "length": d.length,
                        "target_path": d.target_path, "format": d.delta_format,
                        "runtime": _delta_runtime(d.target_path)}
                       for d in sorted(deltas, key=lambda d: -d.base_version)
                       if d.model == v.model and d.version == v.version]})
    return list(by_model.values())
