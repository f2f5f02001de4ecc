"""Every attack on the update path is refused with a clear reason on the ota topic while
the old model keeps serving: one real agent, one real repository over real HTTP that
turns hostile in different ways, one after the other."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner

from hil.models import finetuned, traffic, v1_bundle
from tests.support.mosquitto import Mosquitto
from tests.support.ota_rig import LineWriter, Repo, Reports, make_agent, shuffled
from tests.support.tuf_http import Fault

DEV = "ota-attacked"
FINISHED = ("committed", "failed", "rolled_back")


def expired_timestamp(repo: Repo) -> bytes:
    ts = repo.kit.repo.timestamp()
    ts.signed.version += 1
    ts.signed.expires = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    ts.signatures.clear()
    ts.sign(repo.kit.signer("timestamp"))
    return ts.to_bytes()


def forged_targets(repo: Repo) -> tuple[str, bytes]:
    """The current targets, re-signed by a key root never listed."""
    md = repo.kit.repo.targets()
    md.signatures.clear()
    md.sign(CryptoSigner.generate_ed25519())
    return f"/metadata/{md.signed.version}.targets.json", md.to_bytes()


def test_attacks_refused_while_old_model_serves(tmp_path: Path, broker: Mosquitto) -> None:
    repo = Repo(tmp_path / "tuf")
    repo.publish(v1_bundle())
    replayable_timestamp = repo.metadata("timestamp.json")  # older than what comes next
    repo.publish(finetuned(2), delta_from=(1,))
    log = tmp_path / "device.log"
    log.write_text("")
    agent = make_agent(tmp_path, DEV, broker.port, repo, log, duration_s=0.5)
    reports = Reports(broker.port, DEV)
    writer = LineWriter(log, shuffled(traffic(200)), per_second=100).start()
    revision = 0
    last_seq = 0

    def attempt(version: int, faults: dict[str, Fault]) -> dict[str, Any]:
        nonlocal revision, last_seq
        repo.server.faults.clear()
        repo.server.faults.update(faults)
        revision += 1
        reports.set_desired(revision, version)
        done = reports.wait_ota(lambda e: e["state"] in FINISHED and e["to_version"] == version,
                                after=last_seq)
        last_seq = done["seq"]
        live = agent.query("models")["result"][0]
        if done["state"] != "committed":
            assert live["version"] == 1, "the old model must keep serving"
        return done

    try:
        agent.start()
        v2 = repo.bundles[2]
        evil = bytearray(v2)
        evil[len(evil) // 2] ^= 0xFF

        # Tampered delta *and* tampered full bundle: the delta is refused, the full
        # bundle is tried and refused too; nothing is installed.
        done = attempt(2, {"delta-from-1.nfd": Fault(replace=b"\0" * 300),
                           "nano-logs-2.nfb": Fault(replace=bytes(evil))})
        assert (done["state"], done["reason"]) == ("failed", "hash-mismatch"), done
        assert "models/nano-logs/2/nano-logs-2.nfb" in done["detail"]
        fell_back = [e for e in reports.ota() if e["state"] == "downloading" and e["reason"]]
        assert fell_back and "delta refused" in fell_back[-1]["detail"]

        # Endless data: more bytes than signed, for the delta and the bundle.
        done = attempt(2, {".nfd": Fault(endless=True), ".nfb": Fault(endless=True)})
        assert (done["state"], done["reason"]) == ("failed", "too-long"), done

        # A frozen/stale server: timestamp past its expiry.
        done = attempt(2, {"/metadata/timestamp.json": Fault(replace=expired_timestamp(repo))})
        assert (done["state"], done["reason"]) == ("failed", "expired-metadata"), done
        assert "timestamp" in done["detail"]

        # Replay of older (validly signed) metadata.
        done = attempt(2, {"/metadata/timestamp.json": Fault(replace=replayable_timestamp)})
        assert (done["state"], done["reason"]) == ("failed", "rollback"), done

        # Mix-and-match: a new release; old targets served under the new version's name.
        old_targets = repo.metadata(f"{repo.kit.repo.targets().signed.version}.targets.json")
        repo.publish(finetuned(3, seed=8), delta_from=(1,))
        new_name = f"/metadata/{repo.kit.repo.targets().signed.version}.targets.json"
        done = attempt(3, {new_name: Fault(replace=old_targets)})
        assert (done["state"], done["reason"]) == ("failed", "mix-and-match"), done

        # v4 raises the signed minimum to 4. Its targets arrive signed by an unknown key.
        repo.publish(finetuned(4, seed=9), delta_from=(1,), minimum_version=4)
        path, forged = forged_targets(repo)
        done = attempt(4, {path: Fault(replace=forged)})
        assert (done["state"], done["reason"]) == ("failed", "bad-signature"), done
        assert "targets" in done["detail"]

        # Downgrade below the signed minimum: v3 is validly signed, but below minimum 4.
        done = attempt(3, {})
        assert (done["state"], done["reason"]) == ("failed", "below-minimum"), done
        assert "minimum 4" in done["detail"]

        # A flaky link: the delta and the bundle transfers are cut. A transient failure:
        # the partial bundle is kept...
        done = attempt(4, {"delta-from-1.nfd": Fault(cut_after=10),
                           "nano-logs-4.nfb": Fault(cut_after=200_000, times=1)})
        assert (done["state"], done["reason"]) == ("failed", "incomplete-download"), done
        partial = (tmp_path / f"state-{DEV}" / "ota" / "downloads" / "logs").iterdir()
        assert sorted(p.stat().st_size for p in partial) == [10, 200_000]

        # ...and resumed with a Range request by the next attempt, where a tampered delta
        # (right length, wrong bytes) is refused and the full bundle is used: committed.
        delta_length = repo.kit.repo.targets("deltas").signed.targets[
            "models/nano-logs/4/delta-from-1.nfd"].length
        done = attempt(4, {"delta-from-1.nfd": Fault(replace=b"\x01" * delta_length)})
        assert done["state"] == "committed", reports.summary()
        fell_back = [e for e in reports.ota() if e["state"] == "downloading" and e["reason"]]
        assert fell_back[-1]["reason"] == "hash-mismatch" and fell_back[-1]["to_version"] == 4
        verifying = [e for e in reports.ota() if e["state"] == "verifying"][-1]
        assert verifying["artifact"] == "full" and verifying["to_version"] == 4
        assert agent.query("models")["result"][0]["version"] == 4
        ranged = [r.range for r in repo.server.requests if r.path.endswith("nano-logs-4.nfb")]
        assert ranged[-1] == "bytes=200000-", ranged

        lines = writer.stop()
        reports.wait_results(lines)
        counters = agent.query("metrics")["result"]["counters"]
        assert counters.get("inference_errors", 0) == 0
        assert counters["ota_failed"] == 8 and counters["ota_committed"] == 1
        versions = [v for v, _ in reports.result_items()]
        assert set(versions) == {1, 4} and versions.index(4) > 0
        installed = list((tmp_path / f"state-{DEV}" / "models" / "logs").iterdir())
        assert [p.name for p in installed] == [agent.query("ota")["result"]["committed"]["file"]]
    finally:
        writer.stop()
        agent.stop()
        reports.close()
        repo.close()

