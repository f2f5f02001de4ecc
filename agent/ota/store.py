"""Where a slot's OTA state lives on disk, written so that a power cut cannot tear it.

Layout under the agent's ``state_dir``::

    ota/<slot>.json            the OtaRecord (write tmp, fsync, rename, fsync dir)
    ota/tuf/                   TUF metadata cache (root.json = newest verified root)
    ota/downloads/<slot>/      artifacts and hidden .part files (resumable)
    models/<slot>/             installed bundles: <model>-<version>-<sha12>.nfb

Bundles move from ``downloads`` to ``models`` by rename (same file system), so
an installed file is either complete and verified or absent.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from agent.ota.record import InstalledRef, OtaRecord
from contract.files import fsync_dir, write_atomic

log = logging.getLogger("nanofleet.agent.ota")
_NEWER_FIELDS = ("floor", "trial_boot_id", "trial_reboots")


def file_sha256(path: Path, chunk: int = 1 << 20) -> tuple[str, int]:
    """(hex sha256, length) of a file, streamed."""
    digest = hashlib.sha256()
    length = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            length += len(block)
    return digest.hexdigest(), length


def bundle_file_name(model: str, version: int, sha256: str) -> str:
    return f"{model}-{version}-{sha256[:12]}.nfb"


class OtaStore:
    def __init__(self, state_dir: Path, slot: str) -> None:
        self.slot = slot
        self.ota_dir = Path(state_dir) / "ota"
        self.record_path = self.ota_dir / f"{slot}.json"
        self.tuf_dir = self.ota_dir / "tuf"
        self.downloads = self.ota_dir / "downloads" / slot
        self.models = Path(state_dir) / "models" / slot
        for d in (self.ota_dir, self.tuf_dir, self.downloads, self.models):
            d.mkdir(parents=True, exist_ok=True)

    # --- the record ------------------------------------------------------------------------
    def load(self) -> OtaRecord:
        """The persisted record, or a fresh ``idle`` one. A record that cannot be read
        (only a failing disk can do that: writes are atomic) is moved aside, logged,
        and the agent falls back to its configured bundle."""
        try:
            raw = self.record_path.read_bytes()
        except FileNotFoundError:
            return OtaRecord(slot=self.slot)
        try:
            record = OtaRecord.model_validate_json(raw)
        except ValidationError as exc:
            aside = self.record_path.with_suffix(".json.unreadable")
            os.replace(self.record_path, aside)
            log.error("OTA record %s is unreadable (%s); moved to %s, starting from the "
                      "configured bundle", self.record_path, exc.errors()[0]["msg"], aside)
            return OtaRecord(slot=self.slot)
        if record.slot != self.slot:
            raise ValueError(f"{self.record_path} belongs to slot {record.slot!r}, "
                             f"not {self.slot!r}")
        return record

    def save(self, record: OtaRecord) -> None:
        # Only this agent writes its record: a fixed temporary name, so a power cut
        # leaves no more than one stray file behind.
        # The fields newer than December 2026 are left out while unset: an agent downgraded
        # to a version without them still reads the record (its strict model refuses keys
        # it does not know).
        exclude = {name for name in _NEWER_FIELDS if not getattr(record, name)}
        write_atomic(self.record_path,
                     record.model_dump_json(indent=1, exclude=exclude).encode(),
                     single_writer=True)

    # --- bundle files ------------------------------------------------------------------
    def path_of(self, ref: InstalledRef) -> Path:
        return self.models / ref.file

    def verified_path(self, ref: InstalledRef) -> Path | None:
        """The installed file of ``ref`` if it is present and still has its hash."""
        path = self.path_of(ref)
        try:
            digest, _ = file_sha256(path)
        except OSError:
            return None
        return path if digest == ref.sha256 else None

    def install(self, source: Path, model: str, version: int, sha256: str) -> InstalledRef:
        """Move a verified bundle from the downloads into the models directory."""
        name = bundle_file_name(model, version, sha256)
        with open(source, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(source, self.models / name)
        fsync_dir(self.models)
        fsync_dir(source.parent)
        return InstalledRef(model=model, version=version, sha256=sha256, file=name)

    def remove_bundle(self, ref: InstalledRef) -> None:
        self.path_of(ref).unlink(missing_ok=True)

    def keep_only(self, refs: list[InstalledRef | None]) -> list[str]:
        """Delete installed bundles other than ``refs``; returns the names deleted."""
        keep = {r.file for r in refs if r is not None}
        gone = []
        for path in self.models.iterdir():
            if path.name not in keep:
                path.unlink(missing_ok=True)
                gone.append(path.name)
        if gone:
            fsync_dir(self.models)
        return gone

    def clear_downloads(self, keep_partial: bool = False) -> None:
        """Empty the download area; ``keep_partial`` keeps .part files for a later resume."""
        for path in self.downloads.iterdir():
            if keep_partial and path.name.endswith(".part"):
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def drop_partials_but(self, keep: Iterable[Path]) -> dict[str, int]:
        """Delete the resume files of transfers other than ``keep`` (the artifacts of the
        version being fetched: versions left behind while their download was cut are never
        resumed) and return the bytes each kept one holds, by name. Without this, partial
        files of abandoned versions piled up until every later update failed for space
        (review, December 2026)."""
        names = {p.name for p in keep}
        held: dict[str, int] = {}
        for path in self.downloads.iterdir():
            if not path.name.endswith(".part"):
                continue
            if path.name in names and path.is_file():
                held[path.name] = path.stat().st_size
            else:
                path.unlink(missing_ok=True)
        return held

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.ota_dir).free
