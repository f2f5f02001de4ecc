"""The OTA attack rig (one device under attack: repository, agent, reports, traffic) and
what each attacker can do with the keys it holds (tests/test_ota_attacks.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, TargetFile, Targets

from contract.bundle import BundleManifest, pack_bundle, read_bundle
from contract.delta import DataOp, DeltaHeader, encode_delta
from contract.files import write_atomic
from contract.tuf_targets import DELTAS_ROLE, ModelTargetInfo, full_target_path
from fleet_server.repository.repo import DeltaUpload
from hil.models import traffic
from tests.support.ota_rig import LineWriter, Repo, Reports, make_agent, shuffled
from tests.support.tuf_http import Fault

DEV = "ota-attacked"
FINISHED = ("committed", "failed", "rolled_back")


class Rig:
    """One device under attack: its repository, agent, reports and traffic."""

    def __init__(self, tmp: Path, port: int, releases: dict[int, bytes]) -> None:
        self.tmp = tmp
        self.releases = releases
        self.repo = Repo(tmp / "tuf")
        log = tmp / "device.log"
        log.write_text("")
        self.agent = make_agent(tmp, DEV, port, self.repo, log, duration_s=0.5)
        self.reports = Reports(port, DEV)
        self.writer = LineWriter(log, shuffled(traffic(200)), per_second=100)
        self.revision = 0
        self.last_seq = 0
        self.serving = 1  # the version live before the next attempt

    def publish(self, version: int, *, delta_from: tuple[int, ...] = (1,),
                minimum_version: int | None = None) -> None:
        if 1 not in self.repo.bundles:
            self.repo.publish(self.releases[1])
        if version != 1:
            self.repo.publish(self.releases[version], delta_from=delta_from,
                              minimum_version=minimum_version)

    def attempt(self, version: int, faults: dict[str, Fault] | None = None,
                model: str = "nano-logs") -> dict[str, Any]:
        """Ask for ``model`` v``version`` (with these faults on the server) until it ends."""
        self.repo.server.faults.clear()
        self.repo.server.faults.update(faults or {})
        self.revision += 1
        self.reports.set_desired(self.revision, version, model=model)
        done = self.reports.wait_ota(
            lambda e: e["state"] in FINISHED and e["to_version"] == version, after=self.last_seq)
        self.last_seq = done["seq"]
        live = self.agent.query("models")["result"][0]
        if done["state"] == "committed":
            self.serving = version
        else:
            assert (live["name"], live["version"]) == ("nano-logs", self.serving), \
                "the old model must keep serving"
        return done

    def fallbacks(self) -> list[dict[str, Any]]:
        """OTA reports of a refused delta (the full bundle comes next)."""
        return [e for e in self.reports.ota() if e["state"] == "downloading" and e["reason"]]

    def counters(self) -> dict[str, int]:
        result: dict[str, int] = self.agent.query("metrics")["result"]["counters"]
        return result

    def peak_rss(self) -> int:
        assert self.agent.proc is not None
        status = Path(f"/proc/{self.agent.proc.pid}/status").read_text()
        line = next(ln for ln in status.splitlines() if ln.startswith("VmHWM:"))
        return int(line.split()[1]) << 10

    def still_serving(self) -> None:
        """Every line written during the attack got a result; no inference failed."""
        lines = self.writer.stop()
        self.reports.wait_results(lines)
        assert self.counters().get("inference_errors", 0) == 0

    def close(self) -> None:
        self.writer.stop()
        self.agent.stop()
        self.reports.close()
        self.repo.close()


# --- what a compromised fleet server can do with its online keys ------------------------

def server_lists_in_deltas_role(repo: Repo, files: dict[str, tuple[bytes, dict[str, Any]]]
                                ) -> None:
    """Sign ``files`` into the deltas role with the online deltas key, then snapshot and
    timestamp: everything the server's keys allow, bypassing the server's own checks."""
    kit = repo.kit
    md = kit.repo.targets(DELTAS_ROLE)
    for path, (data, custom) in files.items():
        target = TargetFile.from_data(path, data, ["sha256"])
        target.unrecognized_fields["custom"] = custom
        md.signed.targets[path] = target
        write_atomic(kit.repo.target_file_path(target), data)
    md.signed.version += 1
    md.signatures.clear()
    md.sign(kit.signer(DELTAS_ROLE))
    write_atomic(kit.path / "metadata" / f"{md.signed.version}.{DELTAS_ROLE}.json",
                         md.to_bytes())
    kit.repo.write_snapshot_and_timestamp({DELTAS_ROLE: md.signed.version})


def operators_delegate(repo: Repo, paths: list[str]) -> None:
    """Targets metadata, signed with the operators' key, whose deltas delegation reaches
    ``paths`` (what older tooling signed, or a misconfiguration), served by the server."""
    kit = repo.kit
    md: Metadata[Targets] = kit.repo.targets()
    assert md.signed.delegations is not None and md.signed.delegations.roles is not None
    md.signed.delegations.roles[DELTAS_ROLE].paths = paths
    md.signed.version += 1
    md.signatures.clear()
    md.sign(kit.signer("targets"))
    write_atomic(kit.path / "metadata" / f"{md.signed.version}.targets.json",
                         md.to_bytes())
    kit.repo.write_snapshot_and_timestamp({"targets": md.signed.version})


def renamed(bundle: bytes, **fields: Any) -> bytes:
    """A valid bundle (the same model files) with other manifest fields."""
    parsed = read_bundle(bundle)
    manifest = BundleManifest.model_validate(parsed.manifest.model_dump() | fields)
    return pack_bundle(manifest, parsed.files)


def full_custom(bundle: bytes) -> dict[str, Any]:
    manifest = read_bundle(bundle).manifest
    info = ModelTargetInfo.model_construct(
        kind="full", model=manifest.name, slot=manifest.slot, version=manifest.version,
        result_sha256=read_bundle(bundle).sha256, result_length=len(bundle))
    return info.model_dump(mode="json", exclude_none=True)


def bomb_frame(produce: int, declared: int) -> bytes:
    """A magicless zstd frame of RLE blocks (4 bytes per 128 KiB) declaring ``declared``."""
    out = bytearray([0xC0, 13 << 3]) + declared.to_bytes(8, "little")
    left = produce
    while left:
        n = min(128 << 10, left)
        left -= n
        out += ((n << 3) | (1 << 1) | (0 if left else 1)).to_bytes(3, "little") + b"\x00"
    return bytes(out)


def server_lists_bomb(rig: Rig, version: int, frame: bytes) -> None:
    """A delta from v1 to ``version`` whose one DATA op is ``frame``, listed with the real
    server code and the online deltas key (the payload is whatever the server wants)."""
    repo = rig.repo
    top = repo.kit.repo.targets().signed.targets
    base, full = top[full_target_path("nano-logs", 1)], top[full_target_path("nano-logs", version)]
    header = DeltaHeader(base.length, base.hashes["sha256"], full.length, full.hashes["sha256"])
    delta = encode_delta(header, [DataOp(0, 0, 1000, frame)])
    info = ModelTargetInfo(kind="delta", model="nano-logs", slot="logs", version=version,
                           result_sha256=full.hashes["sha256"], result_length=full.length,
                           base_version=1, base_sha256=base.hashes["sha256"],
                           delta_format="nfd-1")
    repo.kit.repo.add_delta_targets([DeltaUpload(delta, info)])


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
