"""Resume files of abandoned versions do not pile up: the real Fetcher against a real
signed repository over real HTTP whose transfers are cut (a flaky link or an on-path
attacker), while operators move on to newer versions. Before (review, December 2026):
each cut version left its ``.part`` file behind for good, and the free-space check asked
for the whole length of the one being resumed, so once those filled the disk every later
update failed for space, even served cleanly."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from agent.ota.config import OtaConfig
from agent.ota.fetch import Fetcher, LiveBundle
from agent.ota.record import OtaRecord, UpdateTarget
from agent.ota.state import Desired, Downloaded, Failed, transition
from agent.ota.store import OtaStore
from contract.reasons import is_transient
from tests.support.tuf_http import Fault, RepoServer
from tests.support.tuf_repo import make_bundle, make_repo

SIZE = 300_000
CUT = 200_000


def test_cut_transfers_of_abandoned_versions_leave_one_resume_file(tmp_path: Path) -> None:
    kit = make_repo(tmp_path / "repo")
    bundles = {v: make_bundle(name="logcls", slot="logs", version=v, size=SIZE)
               for v in range(1, 6)}
    for v in range(1, 6):
        kit.publish(bundles[v])
    server = RepoServer(kit.path).start()
    try:
        root = tmp_path / "root.json"
        root.write_bytes(kit.repo.root_bytes())
        live_path = tmp_path / "live.nfb"
        live_path.write_bytes(bundles[1])
        live = LiveBundle("logcls", 1, hashlib.sha256(bundles[1]).hexdigest(), "logs",
                          live_path)
        cfg = OtaConfig(metadata_url=f"{server.url}/metadata",
                        target_base_url=f"{server.url}/targets", root_file=root,
                        download_attempts=1, http_timeout_s=5, min_free_bytes=0)
        store = OtaStore(tmp_path / "state", "logs")
        fetcher = Fetcher(cfg, store)
        rec = OtaRecord(slot="logs")
        for revision, version in enumerate((2, 3, 4, 5), 1):
            server.faults.clear()
            if version < 5:
                server.faults[f"logcls-{version}.nfb"] = Fault(cut_after=CUT)
            target = UpdateTarget(model="logcls", version=version, revision=revision)
            rec = transition(rec, Desired(target, live.model, live.version), time.time()).record
            out = fetcher.fetch(target, live, rec.delta_failed)
            if version < 5:
                assert isinstance(out, Failed) and is_transient(out.reason), out
                rec = transition(rec, out, time.time()).record
                store.clear_downloads(keep_partial=True)  # what the engine's discard does
                parts = [p for p in store.downloads.iterdir() if p.name.endswith(".part")]
                # the cut version's resume file only: earlier versions' went
                assert len(parts) == 1 and parts[0].stat().st_size <= CUT + 65536, parts
            else:
                assert isinstance(out, Downloaded) and out.length == len(bundles[5]), out
                assert fetcher.fetched is not None
                assert fetcher.fetched.path.read_bytes() == bundles[5]
                assert not [p for p in store.downloads.iterdir() if p.name.endswith(".part")]
    finally:
        server.stop()
