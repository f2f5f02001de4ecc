"""HttpTransport against a real local HTTP server: ranges, bounds, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ota.transport import ArtifactNotFound, ArtifactTooLarge, HttpTransport, TransportError
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
