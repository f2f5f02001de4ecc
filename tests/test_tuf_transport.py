"""HttpTransport against a real local HTTP server: ranges, bounds, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ota.transport import (
    ArtifactNotFound,
    ArtifactTooLarge,
    HttpTransport,
    TransferTimeout,
    TransportError,
)
from tests.support.tuf_http import Fault, RepoServer

pytestmark = pytest.mark.unit

DATA = bytes(range(256)) * 400  # 102400 bytes


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RepoServer]:
    (tmp_path / "f.bin").write_bytes(DATA)
    with RepoServer(tmp_path) as srv:
        yield srv


def fetch(server: RepoServer, start: int = 0, max_length: int | None = None) -> bytes:
    return b"".join(HttpTransport(chunk_size=4096).fetch(f"{server.url}/f.bin", start,
                                                         max_length))


def test_range_and_bounds(server: RepoServer) -> None:
    assert fetch(server) == DATA
    assert fetch(server, 1000) == DATA[1000:]
    assert server.requests[-1].range == "bytes=1000-" and server.requests[-1].status == 206
    assert fetch(server, 1000, len(DATA) - 1000) == DATA[1000:]
    with pytest.raises(ArtifactTooLarge, match="announces"):  # refused before the body
        fetch(server, 0, 100)
    server.faults["f.bin"] = Fault(ignore_range=True)
    assert fetch(server, 5000) == DATA[5000:]  # full body, leading bytes dropped
    server.faults["f.bin"] = Fault(endless=True)  # no Content-Length: counted as it comes
    with pytest.raises(ArtifactTooLarge, match="sent more"):
        fetch(server, 0, len(DATA))


def test_errors(server: RepoServer) -> None:
    with pytest.raises(ArtifactNotFound):
        fetch_missing = HttpTransport().fetch(f"{server.url}/missing", 0, 10)
        b"".join(fetch_missing)
    with pytest.raises(TransportError, match="416"):
        fetch(server, len(DATA))
    with pytest.raises(TransportError, match="only http"):
        b"".join(HttpTransport().fetch("file:///etc/passwd"))
    server.faults["f.bin"] = Fault(cut_after=50_000)
    assert len(fetch(server)) == 50_000  # an early end is the caller's to judge


def test_slow_loris_server_is_cut_off(server: RepoServer) -> None:
    """16 bytes every 0.2 s never trips the 1 s read timeout; the rate bound (10 kB/s
    once the transfer is 1 s old) ends it. Without it, 100 kB would take 20 minutes."""
    server.faults["f.bin"] = Fault(drip=0.2)
    outcome: list[BaseException | bytes] = []

    def run() -> None:
        try:
            outcome.append(b"".join(HttpTransport(timeout=1.0, min_rate=10_000).fetch(
                f"{server.url}/f.bin", 0, len(DATA))))
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(20)
    assert outcome, "the transfer was still running after 20 s"
    assert isinstance(outcome[0], TransferTimeout) and "minimum rate" in str(outcome[0])
    assert time.monotonic() - started < 10
