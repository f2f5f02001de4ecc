"""``nanofleet-tuf-client`` (TUF client-conformance CLI) as a real subprocess against
a real repository over HTTP on 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.tuf_http import Fault, RepoServer
from tests.support.tuf_repo import RepoKit, make_bundle, make_repo


def cli() -> list[str]:
    exe = shutil.which("nanofleet-tuf-client", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "agent.ota.conformance_cli"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[RepoKit, RepoServer]]:
    kit = make_repo(tmp_path)
    kit.publish(make_bundle(version=1))
    with RepoServer(kit.path) as server:
        yield kit, server


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli(), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_init_refresh_download(served: tuple[RepoKit, RepoServer], tmp_path: Path) -> None:
    kit, server = served
    md, td = tmp_path / "md", tmp_path / "td"
    md.mkdir()
    root_file = tmp_path / "initial_root.json"
    root_file.write_bytes(kit.repo.root_bytes())
    assert run("--metadata-dir", md, "init", root_file).returncode == 0
    assert not server.requests  # init must not touch the network
    murl = f"{server.url}/metadata"
    done = run("--metadata-dir", md, "--metadata-url", murl, "refresh")
    assert done.returncode == 0, done.stderr
    assert {"root.json", "timestamp.json", "snapshot.json", "targets.json"} <= {
        p.name for p in md.iterdir()}
    names = ["models/logcls/1/logcls-1.nfb", "slots/logs.json"]
    done = run("--metadata-dir", md, "--metadata-url", murl, "--target-name", names[0],
               "--target-name", names[1], "--target-base-url", f"{server.url}/targets",
               "--target-dir", td, "download")
    assert done.returncode == 0, done.stderr
    visible = sorted(p.name for p in td.iterdir() if not p.name.startswith("."))
    assert visible == ["models%2Flogcls%2F1%2Flogcls-1.nfb", "slots%2Flogs.json"]
    assert (td / visible[0]).read_bytes() == make_bundle(version=1)

    # Failures exit 1 with the reason on stderr.
    missing = run("--metadata-dir", md, "--metadata-url", murl, "--target-name", "nope",
                  "--target-base-url", f"{server.url}/targets", "--target-dir", td, "download")
    assert missing.returncode == 1 and "not-found" in missing.stderr
    server.faults["logs.json"] = Fault(replace=b'{"tampered": true, "x": 1234567890}')
    (td / visible[1]).unlink()
    tampered = run("--metadata-dir", md, "--metadata-url", murl, "--target-name", names[1],
                   "--target-base-url", f"{server.url}/targets", "--target-dir", td, "download")
    assert tampered.returncode == 1 and "refused" in tampered.stderr
    assert not (td / visible[1]).exists()
    server.faults["/metadata/timestamp.json"] = Fault(replace=b"garbage")
    bad = run("--metadata-dir", md, "--metadata-url", murl, "refresh")
    assert bad.returncode == 1 and "invalid-metadata" in bad.stderr


def test_refresh_without_init_fails(served: tuple[RepoKit, RepoServer], tmp_path: Path) -> None:
    _, server = served
    done = run("--metadata-dir", tmp_path / "empty", "--metadata-url",
               f"{server.url}/metadata", "refresh")
    assert done.returncode == 1 and "not-initialized" in done.stderr
