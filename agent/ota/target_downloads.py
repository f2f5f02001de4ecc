"""How :class:`~agent.ota.tuf_client.TufClient` fetches a target's bytes once its
metadata is trusted: the URL (hash-prefixed under consistent snapshots, path bytes
percent-encoded), a hidden ``.part`` file that survives restarts and resumes with an
HTTP range, bounded by the signed length, and python-tuf's
``TargetFile.verify_length_and_hashes`` before the file gets its final name.

A base class of the client rather than a module of functions, so that
``TufClient.download_target`` and ``TufClient.partial_path`` stay where the fetch step,
the conformance CLI and the tests call them; the metadata walk (ngclient, roles,
refusal codes) stays in :mod:`agent.ota.tuf_client`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile
from tuf.ngclient import UpdaterConfig

from agent.ota.errors import UpdateRefused
from agent.ota.transport import (
    ArtifactNotFound,
    ArtifactTooLarge,
    ArtifactTransport,
    TransportError,
)
from contract.files import fsync_dir
from contract.reasons import OtaReason

# The update path's logger (tuf_client's too): one name to filter by.
log = logging.getLogger("nanofleet.agent.ota")
_FSYNC_EVERY = 4 << 20


class TargetDownloads:
    """Resumable, hash-checked target downloads; :class:`~agent.ota.tuf_client.TufClient`
    sets the attributes below."""

    ROOT_FILE: ClassVar[str]
    metadata_dir: Path
    target_base_url: str | None
    transport: ArtifactTransport
    config: UpdaterConfig

    def _consistent_snapshot(self) -> bool:
        # root.json in the metadata dir is ngclient's cache of the newest *verified* root.
        try:
            root = json.loads((self.metadata_dir / self.ROOT_FILE).read_bytes())
            return bool(root["signed"].get("consistent_snapshot", False))
        except (OSError, ValueError, KeyError, TypeError):
            return True

    def target_url(self, target: TargetFile, base_url: str | None = None) -> str:
        base = base_url or self.target_base_url
        if base is None:
            raise ValueError("no target base URL given")
        base = base if base.endswith("/") else base + "/"
        path = target.path
        if self._consistent_snapshot() and self.config.prefix_targets_with_hash:
            digest = target.hashes.get("sha256") or next(iter(target.hashes.values()))
            dirname, sep, name = path.rpartition("/")
            path = f"{dirname}{sep}{digest}.{name}"
        # Target paths are file paths, not URL fragments: "?", "#", "%", spaces and
        # non-ASCII must reach the server as path bytes, so they are percent-encoded.
        return base + quote(path, safe="/:@!$&'()*+,;=~")

    @staticmethod
    def partial_path(target: TargetFile, dest_dir: Path) -> Path:
        """Hidden resume file, named after the target's path and signed hashes."""
        key = json.dumps([target.path, target.length, target.hashes], sort_keys=True)
        return Path(dest_dir) / f".{hashlib.sha256(key.encode()).hexdigest()[:40]}.part"

    def download_target(self, target: TargetFile, dest_dir: Path, *,
                        target_base_url: str | None = None, attempts: int = 3,
                        retry_delay: float = 1.0) -> Path:
        """Fetch ``target`` into ``dest_dir`` (file name: the URL-quoted target path).

        An existing file that already matches is reused. Interrupted transfers resume
        from the ``.part`` file (this call retries up to ``attempts`` times; a later
        call, even after a restart, resumes too). Raises :class:`UpdateRefused`:
        ``too-long``/``hash-mismatch`` (partial data discarded) or
        ``incomplete-download``/``unavailable``/``not-found`` (partial data kept)."""
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        final = dest_dir / quote(target.path, "")
        if final.is_file() and self._matches(target, final):
            return final
        url = self.target_url(target, target_base_url)
        part = self.partial_path(target, dest_dir)
        for attempt in range(1, attempts + 1):
            try:
                self._fetch_into(target, url, part)
                break
            except UpdateRefused as exc:
                if exc.reason not in (OtaReason.INCOMPLETE_DOWNLOAD,
                                      OtaReason.UNAVAILABLE) or attempt == attempts:
                    raise
                log.info("download of %s interrupted (%s); resuming", target.path, exc.detail)
                time.sleep(retry_delay * attempt)
        if not self._matches(target, part):
            part.unlink(missing_ok=True)
            raise UpdateRefused(OtaReason.HASH_MISMATCH,
                                f"{target.path}: downloaded bytes do not match "
                                "the signed hashes; discarded")
        os.replace(part, final)
        fsync_dir(dest_dir)
        return final

    @staticmethod
    def _matches(target: TargetFile, path: Path) -> bool:
        try:
            with open(path, "rb") as fh:
                target.verify_length_and_hashes(fh)
            return True
        except (OSError, tuf_errors.LengthOrHashMismatchError):
            return False

    def _fetch_into(self, target: TargetFile, url: str, part: Path) -> None:
        have = part.stat().st_size if part.exists() else 0
        if have > target.length:
            part.unlink()
            have = 0
        if have == target.length:
            return
        since_sync = 0
        with open(part, "ab") as fh:
            try:
                for chunk in self.transport.fetch(url, have, target.length - have):
                    fh.write(chunk)
                    have += len(chunk)
                    since_sync += len(chunk)
                    if since_sync >= _FSYNC_EVERY:
                        fh.flush()
                        os.fsync(fh.fileno())
                        since_sync = 0
            except ArtifactTooLarge as exc:
                fh.close()
                part.unlink(missing_ok=True)
                raise UpdateRefused(OtaReason.TOO_LONG, f"{target.path}: more than the signed "
                                    f"{target.length} bytes ({exc}); discarded") from None
            except ArtifactNotFound as exc:
                raise UpdateRefused(OtaReason.NOT_FOUND, f"{target.path}: {exc}") from None
            except TransportError as exc:
                if exc.status == 416:  # our offset is past the remote file: stale partial
                    fh.close()
                    part.unlink(missing_ok=True)
                cut_short = OtaReason.INCOMPLETE_DOWNLOAD if have else OtaReason.UNAVAILABLE
                raise UpdateRefused(cut_short,
                                    f"{target.path}: {exc} after {have} of {target.length} "
                                    "bytes") from None
            finally:
                if not fh.closed:
                    fh.flush()
                    os.fsync(fh.fileno())
        if have < target.length:
            raise UpdateRefused(OtaReason.INCOMPLETE_DOWNLOAD,
                                f"{target.path}: transfer ended at {have} "
                                f"of {target.length} bytes; partial kept for resume")
