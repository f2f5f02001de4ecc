"""The artifact stream's decisions, apart from its I/O (:mod:`fleet_server.artifact_stream`):
which chunks answer a request, which repository file a device may read, and each
device's token bucket. Pure functions of their inputs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from contract.artifacts import ArtifactRequest, ChunkError, check_artifact_path


class Refused(Exception):
    def __init__(self, error: ChunkError, detail: str, size: int | None = None) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail
        self.size = size


# --- decisions (pure) -----------------------------------------------------------------------
@dataclass(frozen=True)
class Bucket:
    """Token bucket of one device: ``tokens`` bytes available at ``at`` (monotonic s)."""

    tokens: float
    at: float


def bucket_take(bucket: Bucket | None, now: float, cost: int, rate: float,
                burst: float) -> tuple[Bucket, float]:
    """Take ``cost`` bytes: (new bucket, 0.0) if allowed, else (bucket, seconds to wait).

    A request larger than the burst is allowed from a full bucket and leaves a debt
    (negative tokens), so any request size passes eventually and the long-run rate holds."""
    tokens = burst if bucket is None else min(burst, bucket.tokens + (now - bucket.at) * rate)
    need = min(cost, burst)
    if tokens >= need:
        return Bucket(tokens - cost, now), 0.0
    return Bucket(tokens, now), (need - tokens) / rate


class DeviceBuckets:
    """One token bucket per device (``rate`` per second, up to ``burst``); devices idle
    long enough to be full again are forgotten once more than ``prune_at`` are held.
    Not locked: the caller serialises ``take``."""

    def __init__(self, rate: float, burst: float, prune_at: int = 10_000) -> None:
        self.rate, self.burst, self.prune_at = rate, burst, prune_at
        self._buckets: dict[str, Bucket] = {}

    def take(self, device: str, cost: int, now: float) -> float:
        """Take ``cost`` for ``device`` at ``now`` (monotonic s): 0.0, or seconds to wait."""
        if len(self._buckets) > self.prune_at:
            full_after = self.burst / self.rate
            self._buckets = {d: b for d, b in self._buckets.items() if now - b.at < full_after}
        bucket, wait = bucket_take(self._buckets.get(device), now, cost, self.rate, self.burst)
        self._buckets[device] = bucket
        return wait


def plan_range(size: int, req: ArtifactRequest) -> list[tuple[int, int]]:
    """(offset, length) of each chunk to send for ``req`` on a file of ``size`` bytes.

    An offset at the end of the file gets one empty (final) chunk. Raises
    :class:`Refused` for an offset past the end or a file longer than the bound."""
    if req.offset > size:
        raise Refused("range", f"offset {req.offset} is past the end of the file ({size} "
                      "bytes)", size)
    if req.max_length is not None and size - req.offset > req.max_length:
        raise Refused("too-large", f"{size - req.offset} bytes from offset {req.offset}, more "
                      f"than the {req.max_length} the device accepts", size)
    end = min(size, req.offset + req.chunks * req.chunk_size)
    if end == req.offset:
        return [(req.offset, 0)]
    return [(o, min(req.chunk_size, end - o)) for o in range(req.offset, end, req.chunk_size)]


def artifact_file(root: Path, path: str) -> Path:
    """The repository file a device asked for, or :class:`Refused` (forbidden/not-found)."""
    try:
        parts = check_artifact_path(path)
    except ValueError as exc:
        raise Refused("forbidden", str(exc)) from None
    file = root.joinpath(*parts)
    try:
        real = file.resolve(strict=True)
    except (OSError, RuntimeError):
        # !r, as check_artifact_path's refusals: the device chose the path, and the server
        # logs the refusal (a "\n" in it forged a log line: review, December 2026).
        raise Refused("not-found", f"{path!r}: no such file") from None
    base = root.resolve()
    # A symlink inside the repository must not lead out of it.
    if not real.is_relative_to(base / parts[0]) or not real.is_file():
        raise Refused("not-found", f"{path!r}: no such file")
    return real


def file_version(st: os.stat_result) -> str:
    return f"{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ino:x}"
