"""The device's TUF metadata client: python-tuf's ngclient plus resumable downloads.

Trust starts from the root the device was provisioned with (``trusted_root``);
ngclient walks root rotations, then timestamp -> snapshot -> targets (and the
delegated delta role on demand), refusing expired, unsigned, rolled-back or
mismatched metadata. Full bundles and slot records are taken from the top-level
``targets`` role only (the operators' offline key): ngclient's lookup walks
delegations, so a delegated role whose pattern reaches a full bundle's path (an
old repository's, or a misconfigured one) could otherwise sign one.

Target bytes are fetched by :meth:`TufClient.download_target`, which the client
inherits from :class:`~agent.ota.target_downloads.TargetDownloads` (resumable ``.part``
files, bounded by the signed length, hash-checked before the final name).

The conformance CLI (:mod:`agent.ota.conformance_cli`) drives this same class.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import Metadata, TargetFile, Targets
from tuf.ngclient import Updater, UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface

from agent.ota.errors import UpdateRefused
from agent.ota.policy import SignedArtifact
from agent.ota.target_downloads import TargetDownloads
from agent.ota.transport import (
    ArtifactNotFound,
    ArtifactTooLarge,
    ArtifactTransport,
    HttpTransport,
    TransferTimeout,
    TransportError,
)
from contract.files import write_atomic
from contract.reasons import OtaReason
from contract.tuf_targets import (
    RuntimeFormat,
    SlotRecord,
    delta_target_path,
    full_target_path,
    parse_model_info,
    parse_slot_record,
    slot_target_path,
)

log = logging.getLogger("nanofleet.agent.ota")


def device_updater_config() -> UpdaterConfig:
    """ngclient's bounds, tightened to what a nanofleet repository needs: roots are a
    few kB and rotate rarely, one delegated role (``deltas``), and the snapshot names
    each targets file's length (these caps only apply where a length is not signed)."""
    return UpdaterConfig(max_root_rotations=64, max_delegations=4,
                         root_max_length=256 << 10, timestamp_max_length=16 << 10,
                         snapshot_max_length=1 << 20, targets_max_length=4 << 20)
T = TypeVar("T")


def classify(exc: Exception) -> UpdateRefused:
    """Map python-tuf and transport errors to a refusal with a stable reason code."""
    if isinstance(exc, UpdateRefused):
        return exc
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        return UpdateRefused(OtaReason.EXPIRED_METADATA, msg)
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return UpdateRefused(OtaReason.BAD_SIGNATURE, msg)
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        # "Expected snapshot version X, got Y" / "Expected targets vX, got vY": the file
        # is not the one the newer role names. Everything else is a version going down.
        mixed = msg.startswith("Expected snapshot version") or (
            msg.startswith("Expected ") and " v" in msg and ", got v" in msg)
        return UpdateRefused(OtaReason.MIX_AND_MATCH if mixed else OtaReason.ROLLBACK, msg)
    if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
        return UpdateRefused(OtaReason.MIX_AND_MATCH,
                             f"metadata does not match its signed hash: {msg}")
    if isinstance(exc, tuf_errors.DownloadLengthMismatchError | ArtifactTooLarge):
        return UpdateRefused(OtaReason.TOO_LONG, msg)
    if isinstance(exc, tuf_errors.DownloadHTTPError) and exc.status_code in (403, 404):
        return UpdateRefused(OtaReason.NOT_FOUND, msg)
    if isinstance(exc, ArtifactNotFound):
        return UpdateRefused(OtaReason.NOT_FOUND, msg)
    if isinstance(exc, tuf_errors.DownloadError | TransportError):
        cause = exc.__cause__
        return UpdateRefused(OtaReason.UNAVAILABLE, f"{msg}: {cause}" if cause else msg)
    if isinstance(exc, tuf_errors.RepositoryError):
        return UpdateRefused(OtaReason.INVALID_METADATA, msg)
    if isinstance(exc, FileNotFoundError):
        return UpdateRefused(OtaReason.NOT_INITIALIZED, f"no trusted root: {exc.filename}")
    return UpdateRefused(OtaReason.INVALID_METADATA, f"{type(exc).__name__}: {msg}")


class TransportFetcher(FetcherInterface):
    """ngclient's fetcher on top of an :class:`ArtifactTransport` (HTTP today, MQTT later).

    ``download_file``/``download_bytes`` pass ngclient's length bound down to the
    transport, so an endless metadata response is cut at the bound + 1 byte."""

    def __init__(self, transport: ArtifactTransport) -> None:
        self.transport = transport

    def _fetch(self, url: str) -> Iterator[bytes]:
        return self._translated(url, None)

    def _translated(self, url: str, max_length: int | None) -> Iterator[bytes]:
        try:
            yield from self.transport.fetch(url, 0, max_length)
        except ArtifactTooLarge as exc:
            raise tuf_errors.DownloadLengthMismatchError(str(exc)) from None
        except TransferTimeout as exc:
            raise tuf_errors.SlowRetrievalError(str(exc)) from None
        except TransportError as exc:
            if exc.status is not None:
                raise tuf_errors.DownloadHTTPError(str(exc), exc.status) from None
            raise tuf_errors.DownloadError(str(exc)) from None

    @contextmanager
    def download_file(self, url: str, max_length: int) -> Iterator[IO[bytes]]:
        with tempfile.TemporaryFile() as fh:
            for chunk in self._translated(url, max_length):
                fh.write(chunk)
            fh.seek(0)
            yield fh

    def download_bytes(self, url: str, max_length: int) -> bytes:
        return b"".join(self._translated(url, max_length))


@dataclass(frozen=True)
class ModelTargets:
    """What the signed repository offers for one model version."""

    full: SignedArtifact
    delta: SignedArtifact | None
    delta_problem: str | None = None  # why no delta could be used, if one was looked for
    runtime: RuntimeFormat | None = None  # full/delta are this runtime's variant


class TufClient(TargetDownloads):
    """One device's view of the signed repository. Call :meth:`refresh` before each
    update check: each refresh re-verifies everything from the trusted root."""

    ROOT_FILE = "root.json"

    def __init__(self, metadata_dir: Path, metadata_url: str, *, trusted_root: bytes | None,
                 target_base_url: str | None = None, transport: ArtifactTransport | None = None,
                 config: UpdaterConfig | None = None) -> None:
        self.metadata_dir = Path(metadata_dir)
        self.metadata_url = metadata_url
        self.trusted_root = trusted_root
        self.target_base_url = target_base_url
        self.transport = transport or HttpTransport()
        self.config = config or device_updater_config()
        self._updater: Updater | None = None
        self._top_level: Targets | None = None

    @classmethod
    def initialize(cls, metadata_dir: Path, root: bytes) -> None:
        """Store ``root`` as the trusted root of an empty metadata dir (provisioning)."""
        metadata_dir = Path(metadata_dir)
        metadata_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(metadata_dir / cls.ROOT_FILE, root, single_writer=True)

    def _guard(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except UpdateRefused:
            raise
        except Exception as exc:  # python-tuf raises many types; all become refusals
            raise classify(exc) from exc

    def refresh(self) -> None:
        """Verify root rotations, timestamp, snapshot and top-level targets."""
        self.metadata_dir.mkdir(parents=True, exist_ok=True)

        def run() -> Updater:
            updater = Updater(str(self.metadata_dir), self.metadata_url,
                              target_base_url=self.target_base_url,
                              fetcher=TransportFetcher(self.transport), config=self.config,
                              bootstrap=self.trusted_root)
            updater.refresh()
            return updater

        self._updater = None
        self._top_level = None
        updater = self._guard(run)
        self._top_level = self._guard(self._load_top_level)
        self._updater = updater

    def _load_top_level(self) -> Targets:
        # ngclient persists a role's metadata only after verifying it, and keeps a valid
        # local copy it just verified: after refresh() this file is the trusted one.
        raw = (self.metadata_dir / f"{Targets.type}.json").read_bytes()
        return Metadata[Targets].from_bytes(raw).signed

    def top_level_target(self, path: str) -> TargetFile | None:
        """Signed info for ``path`` as the top-level ``targets`` role lists it, or None.

        Raises ``wrong-role`` when only a delegated role lists it: full bundles and
        slot records need the operators' offline key."""
        if self._top_level is None:
            self.refresh()
        assert self._top_level is not None
        target = self._top_level.targets.get(path)
        if target is None and self.get_target(path) is not None:
            raise UpdateRefused(OtaReason.WRONG_ROLE, f"{path} is listed only by a delegated role; "
                                "full bundles and slot records must be signed by the "
                                "top-level targets role")
        return target

    def get_target(self, path: str) -> TargetFile | None:
        """Signed info for ``path`` (walking delegations), or None if no role lists it."""
        if self._updater is None:
            self.refresh()
        updater = self._updater
        assert updater is not None
        return self._guard(lambda: updater.get_targetinfo(path))

    def slot_record(self, slot: str) -> SlotRecord | None:
        path = slot_target_path(slot)
        target = self.top_level_target(path)
        if target is None:
            return None
        try:
            return parse_slot_record(path, target.custom)
        except ValueError as exc:
            raise UpdateRefused(OtaReason.INVALID_METADATA, str(exc)) from None

    def minimum_version(self, slot: str) -> int:
        """Signed minimum version for ``slot`` (0 when the repository names none)."""
        record = self.slot_record(slot)
        return record.minimum_version if record else 0

    def _artifact(self, target: TargetFile) -> SignedArtifact:
        try:
            info = parse_model_info(target.path, target.custom)
        except ValueError as exc:
            raise UpdateRefused(OtaReason.INVALID_METADATA, str(exc)) from None
        sha256 = target.hashes.get("sha256")
        if sha256 is None:
            raise UpdateRefused(OtaReason.INVALID_METADATA, f"{target.path}: no sha256 hash")
        return SignedArtifact(path=target.path, length=target.length, sha256=sha256, info=info,
                              target=target)

    def find_model_targets(self, model: str, version: int,
                           installed_version: int | None = None,
                           runtime: RuntimeFormat | None = None) -> ModelTargets:
        """The full bundle of ``model`` v``version`` and, if ``installed_version`` is given,
        the delta from it. Delta problems never block: the full bundle is the fallback.

        With ``runtime``, the release's variant for that runtime (full and delta) when
        the operators signed one, else the combined bundle (``ModelTargets.runtime``
        says which)."""
        try:
            path = full_target_path(model, version)
            variant_path = full_target_path(model, version, runtime) if runtime else None
        except ValueError as exc:
            raise UpdateRefused(OtaReason.WRONG_MODEL, str(exc)) from None
        target = self.top_level_target(variant_path) if variant_path else None
        if target is None:
            runtime = None
            target = self.top_level_target(path)
        else:
            path = variant_path or path
        if target is None:
            raise UpdateRefused(OtaReason.NOT_FOUND, f"{path} is not in the signed targets")
        full = self._artifact(target)
        if full.info.runtime != runtime:
            raise UpdateRefused(OtaReason.INVALID_METADATA,
                                f"{path}: signed as runtime {full.info.runtime!r}")
        if installed_version is None or installed_version >= version:
            return ModelTargets(full=full, delta=None, runtime=runtime)
        delta_path = delta_target_path(model, version, installed_version, runtime)
        try:
            delta_target = self.get_target(delta_path)
            if delta_target is None:
                return ModelTargets(full, None, f"no delta {delta_path}", runtime)
            return ModelTargets(full, self._artifact(delta_target), runtime=runtime)
        except UpdateRefused as exc:
            log.warning("delta %s unusable, full bundle instead: %s", delta_path, exc)
            return ModelTargets(full, None, str(exc), runtime)
