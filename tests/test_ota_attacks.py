"""Every attack on the update path is refused with a clear reason on the ota topic while
the old model keeps serving: a real agent process, a real signed repository over real
HTTP that turns hostile, a real broker. One test case per attack, each with its own
repository and agent, so one failing attack cannot hide another.

The attackers (docs/security-updates.md): a network attacker or mirror (serves any
bytes: :class:`Fault`), and a compromised fleet server, which holds the online keys
(snapshot, timestamp, deltas) and so can sign anything those roles may sign."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from securesystemslib.signer import CryptoSigner

from contract.files import write_atomic
from contract.tuf_targets import DELTAS_ROLE, full_target_path
from hil.models import finetuned, v1_bundle
from tests.support.mosquitto import Mosquitto
from tests.support.ota_attackers import (
    DEV,
    Rig,
    bomb_frame,
    expired_timestamp,
    forged_targets,
    full_custom,
    operators_delegate,
    renamed,
    server_lists_bomb,
    server_lists_in_deltas_role,
)
from tests.support.tuf_http import Fault

LEGACY_DELTA_PATTERN = "models/*/*/delta-from-*"  # what repositories delegated before
AGENT_PEAK_RSS = 600 << 20  # the agent with onnxruntime peaks near 200 MB here


@pytest.fixture(scope="module")
def releases() -> dict[int, bytes]:
    """The shipped v1 and three head-only fine-tunes, trained once for every case."""
    return {1: v1_bundle(), 2: finetuned(2), 3: finetuned(3, seed=8), 4: finetuned(4, seed=9)}


# --- the attacks --------------------------------------------------------------------------

def tampered_delta_and_full(rig: Rig) -> None:
    """Both artifacts tampered: the delta is refused, the full bundle too; nothing installed."""
    rig.publish(2)
    evil = bytearray(rig.repo.bundles[2])
    evil[len(evil) // 2] ^= 0xFF
    done = rig.attempt(2, {"delta-from-1.nfd": Fault(replace=b"\0" * 300),
                           "nano-logs-2.nfb": Fault(replace=bytes(evil))})
    assert (done["state"], done["reason"]) == ("failed", "hash-mismatch"), done
    assert "models/nano-logs/2/nano-logs-2.nfb" in done["detail"]
    assert "delta refused" in rig.fallbacks()[-1]["detail"]


def endless_data(rig: Rig) -> None:
    rig.publish(2)
    done = rig.attempt(2, {".nfd": Fault(endless=True), ".nfb": Fault(endless=True)})
    assert (done["state"], done["reason"]) == ("failed", "too-long"), done


def expired_timestamp_served(rig: Rig) -> None:
    """A frozen or stale server: the timestamp is past its expiry."""
    rig.publish(2)
    done = rig.attempt(2, {"/metadata/timestamp.json": Fault(replace=expired_timestamp(rig.repo))})
    assert (done["state"], done["reason"]) == ("failed", "expired-metadata"), done
    assert "timestamp" in done["detail"]


def replayed_timestamp(rig: Rig) -> None:
    """Older, validly signed metadata after the device has seen newer."""
    rig.publish(1)
    old = rig.repo.metadata("timestamp.json")
    rig.publish(2)
    done = rig.attempt(2)
    assert done["state"] == "committed", rig.reports.summary()
    rig.publish(3)
    done = rig.attempt(3, {"/metadata/timestamp.json": Fault(replace=old)})
    assert (done["state"], done["reason"]) == ("failed", "rollback"), done
    live = rig.agent.query("models")["result"][0]
    assert live["version"] == 2


def mix_and_match(rig: Rig) -> None:
    """A new release; the old targets served under the new version's name."""
    rig.publish(2)
    old_targets = rig.repo.metadata(f"{rig.repo.kit.repo.targets().signed.version}.targets.json")
    rig.publish(3)
    new_name = f"/metadata/{rig.repo.kit.repo.targets().signed.version}.targets.json"
    done = rig.attempt(3, {new_name: Fault(replace=old_targets)})
    assert (done["state"], done["reason"]) == ("failed", "mix-and-match"), done


def forged_targets_served(rig: Rig) -> None:
    """A mirror serves targets re-signed by an unknown key: its hash is not the one the
    snapshot names, so it is refused before its signature is even read."""
    rig.publish(2)
    path, forged = forged_targets(rig.repo)
    done = rig.attempt(2, {path: Fault(replace=forged)})
    assert (done["state"], done["reason"]) == ("failed", "mix-and-match"), done


def forged_targets_signature(rig: Rig) -> None:
    """The server forges targets (a key root never listed) and names them in a snapshot
    signed with its real online key: the signature check refuses them."""
    rig.publish(2)
    kit = rig.repo.kit
    md = kit.repo.targets()
    md.signed.version += 1
    md.signatures.clear()
    md.sign(CryptoSigner.generate_ed25519())
    write_atomic(kit.path / "metadata" / f"{md.signed.version}.targets.json", md.to_bytes())
    kit.repo.write_snapshot_and_timestamp({"targets": md.signed.version})
    done = rig.attempt(2)
    assert (done["state"], done["reason"]) == ("failed", "bad-signature"), done
    assert "targets" in done["detail"]


def below_signed_minimum(rig: Rig) -> None:
    """v3 is validly signed, but v4 raised the slot's signed minimum to 4."""
    rig.publish(3)
    rig.publish(4, minimum_version=4)
    done = rig.attempt(3)
    assert (done["state"], done["reason"]) == ("failed", "below-minimum"), done
    assert "minimum 4" in done["detail"]


def cut_transfers_resume(rig: Rig) -> None:
    """A flaky link cuts both transfers: the partial bundle is kept, and the next attempt
    resumes it with a Range request (the delta, tampered this time, falls back)."""
    rig.publish(4)
    done = rig.attempt(4, {"delta-from-1.nfd": Fault(cut_after=10),
                           "nano-logs-4.nfb": Fault(cut_after=200_000, times=1)})
    assert (done["state"], done["reason"]) == ("failed", "incomplete-download"), done
    partial = (rig.tmp / f"state-{DEV}" / "ota" / "downloads" / "logs").iterdir()
    assert sorted(p.stat().st_size for p in partial) == [10, 200_000]
    delta_length = rig.repo.kit.repo.targets(DELTAS_ROLE).signed.targets[
        "models/nano-logs/4/delta-from-1.nfd"].length
    done = rig.attempt(4, {"delta-from-1.nfd": Fault(replace=b"\x01" * delta_length)})
    assert done["state"] == "committed", rig.reports.summary()
    assert rig.fallbacks()[-1]["reason"] == "hash-mismatch"
    ranged = [r.range for r in rig.repo.server.requests if r.path.endswith("nano-logs-4.nfb")]
    assert ranged[-1] == "bytes=200000-", ranged


def tampered_delta_falls_back(rig: Rig) -> None:
    """A delta of the right length with wrong bytes: refused, full bundle committed."""
    rig.publish(2)
    length = rig.repo.kit.repo.targets(DELTAS_ROLE).signed.targets[
        "models/nano-logs/2/delta-from-1.nfd"].length
    done = rig.attempt(2, {"delta-from-1.nfd": Fault(replace=b"\x01" * length)})
    assert done["state"] == "committed", rig.reports.summary()
    verifying = [e for e in rig.reports.ota() if e["state"] == "verifying"][-1]
    assert verifying["artifact"] == "full"
    installed = list((rig.tmp / f"state-{DEV}" / "models" / "logs").iterdir())
    assert [p.name for p in installed] == [rig.agent.query("ota")["result"]["committed"]["file"]]


def delta_bomb(declared: int) -> Callable[[Rig], None]:
    def attack(rig: Rig) -> None:
        """Finding 8.3: the server's deltas key signs a 32 KB delta whose zstd frame
        declares ``declared`` bytes. The device refuses it within bounded memory, counts
        it, reports it, and installs the operator-signed full bundle instead."""
        rig.publish(2, delta_from=())
        server_lists_bomb(rig, 2, bomb_frame(min(declared, 1 << 30), declared))
        done = rig.attempt(2)
        assert rig.peak_rss() < AGENT_PEAK_RSS, f"agent peaked at {rig.peak_rss() >> 20} MiB"
        assert done["state"] == "committed", rig.reports.summary()
        fell_back = rig.fallbacks()[-1]
        assert fell_back["reason"] == "delta-invalid" and "declares" in fell_back["detail"]
        assert rig.counters()["ota_delta_refused"] == 1
    return attack


def deltas_key_signs_reserved_name(legacy_pattern: bool) -> Callable[[Rig], None]:
    def attack(rig: Rig) -> None:
        """Finding 8.4: with the deltas key only, a full bundle of a model named like a
        delta file (``delta-from-edge``), in a slot the operators never published to."""
        if legacy_pattern:
            operators_delegate(rig.repo, [LEGACY_DELTA_PATTERN])
        evil = renamed(rig.releases[1], name="delta-from-edge")
        server_lists_in_deltas_role(rig.repo, {
            "models/delta-from-edge/1/delta-from-edge-1.nfb": (evil, full_custom(evil))})
        done = rig.attempt(1, model="delta-from-edge")
        assert (done["state"], done["reason"]) in (("failed", "wrong-model"),
                                                   ("failed", "wrong-role")), done
    return attack


def deltas_key_signs_full_bundle(rig: Rig) -> None:
    """Finding 8.4: operators' targets delegate the deltas role a pattern that reaches
    full bundles (``models/*/*/*``); the server's key signs nano-logs v7 with it."""
    rig.publish(2, delta_from=())
    operators_delegate(rig.repo, ["models/*/*/*"])
    evil = renamed(rig.releases[2], version=7, version_label="v7")
    server_lists_in_deltas_role(rig.repo, {
        full_target_path("nano-logs", 7): (evil, full_custom(evil))})
    done = rig.attempt(7)
    assert (done["state"], done["reason"]) == ("failed", "wrong-role"), done
    assert "top-level targets role" in done["detail"]


def deltas_key_signs_slot_record(rig: Rig) -> None:
    """Finding 8.4: a delegation reaching ``slots/*``; the server's key signs a slot
    record giving the slot to its own model, plus that model's full bundle."""
    operators_delegate(rig.repo, ["slots/*", "models/*/*/*"])
    evil = renamed(rig.releases[1], name="edge-evil")
    record = {"kind": "slot", "slot": "logs", "model": "edge-evil", "minimum_version": 0,
              "latest_version": 1}
    server_lists_in_deltas_role(rig.repo, {
        "slots/logs.json": (b'{"evil": 1}', record),
        full_target_path("edge-evil", 1): (evil, full_custom(evil))})
    done = rig.attempt(1, model="edge-evil")
    assert (done["state"], done["reason"]) == ("failed", "wrong-role"), done


def slow_loris_mirror(rig: Rig) -> None:
    """A mirror that sends 16 bytes every 0.2 s: never silent for the 5 s read timeout,
    but 550 kB would take two hours. The rate bound ends each transfer after ~5 s."""
    rig.publish(2)
    started = time.monotonic()
    done = rig.attempt(2, {".nfd": Fault(drip=0.2), ".nfb": Fault(drip=0.2)})
    assert done["state"] == "failed", done
    assert done["reason"] in ("incomplete-download", "unavailable"), done
    assert "minimum rate" in done["detail"]
    assert time.monotonic() - started < 25


@dataclass(frozen=True)
class Attack:
    name: str
    run: Callable[[Rig], None]
    serving_checked: bool = True  # False: the case ends with a committed update


ATTACKS = [
    Attack("tampered-delta-and-full", tampered_delta_and_full),
    Attack("endless-data", endless_data),
    Attack("expired-timestamp", expired_timestamp_served),
    Attack("replayed-timestamp", replayed_timestamp, serving_checked=False),
    Attack("mix-and-match", mix_and_match),
    Attack("forged-targets-served", forged_targets_served),
    Attack("forged-targets-signature", forged_targets_signature),
    Attack("below-signed-minimum", below_signed_minimum),
    Attack("cut-transfers-resume", cut_transfers_resume, serving_checked=False),
    Attack("tampered-delta-falls-back", tampered_delta_falls_back, serving_checked=False),
    Attack("delta-bomb-1GiB", delta_bomb(1 << 30), serving_checked=False),
    Attack("delta-bomb-2**62", delta_bomb(1 << 62), serving_checked=False),
    Attack("deltas-key-reserved-name", deltas_key_signs_reserved_name(False)),
    Attack("deltas-key-reserved-name-legacy-delegation", deltas_key_signs_reserved_name(True)),
    Attack("deltas-key-full-bundle-wide-delegation", deltas_key_signs_full_bundle),
    Attack("deltas-key-slot-record", deltas_key_signs_slot_record),
    Attack("slow-loris-mirror", slow_loris_mirror),
]


@pytest.fixture
def rig(tmp_path: Path, broker: Mosquitto, releases: dict[int, bytes]) -> Iterator[Rig]:
    rig = Rig(tmp_path, broker.port, releases)
    try:
        rig.agent.start()
        rig.writer.start()
        yield rig
    finally:
        rig.close()


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_refused_while_old_model_serves(rig: Rig, attack: Attack) -> None:
    attack.run(rig)
    if attack.serving_checked:
        rig.still_serving()
        assert rig.counters()["ota_failed"] >= 1
