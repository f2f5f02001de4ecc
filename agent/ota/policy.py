"""OTA decisions as pure functions: which version may be installed, which artifact
to fetch, whether a rebuilt bundle is the signed one. No I/O here.

Each check returns ``None`` when fine, or the :class:`UpdateRefused` to raise
(so callers can also just report it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.ota.errors import UpdateRefused
from contract.bundle import BundleManifest
from contract.reasons import OtaReason
from contract.tuf_targets import ModelTargetInfo


@dataclass(frozen=True)
class SignedArtifact:
    """A target from verified metadata: where it is, its signed length/sha256, what it is."""

    path: str
    length: int
    sha256: str
    info: ModelTargetInfo
    target: Any = None  # the python-tuf TargetFile, for downloading; not used by policy


@dataclass(frozen=True)
class InstalledBundle:
    """The live model of a slot, as the device knows it."""

    model: str
    version: int
    sha256: str


def version_refusal(candidate: int, *, live_version: int | None,
                    minimum_version: int, floor_version: int | None = None,
                    ) -> UpdateRefused | None:
    """Refuse a candidate below the slot's signed minimum, not above the live version, or
    below the version this device fell back from at boot (``floor_version``: the record's
    floor of the same model; that version itself may come back)."""
    if candidate < minimum_version:
        return UpdateRefused(OtaReason.BELOW_MINIMUM,
                             f"version {candidate} is below the signed minimum "
                             f"{minimum_version} for this slot")
    if live_version is not None and candidate <= live_version:
        return UpdateRefused(OtaReason.DOWNGRADE,
                             f"version {candidate} is not above the live version "
                             f"{live_version}")
    if floor_version is not None and candidate < floor_version:
        return UpdateRefused(OtaReason.DOWNGRADE,
                             f"version {candidate} is below version {floor_version}, "
                             "committed here before its bundle failed to load")
    return None


def full_target_refusal(full: SignedArtifact, *, model: str, slot: str,
                        version: int) -> UpdateRefused | None:
    """The full target must be exactly the model/slot/version asked for, and self-consistent."""
    info = full.info
    if info.kind != "full":
        return UpdateRefused(OtaReason.WRONG_MODEL,
                             f"{full.path}: is a {info.kind}, not a full bundle")
    if (info.model, info.slot, info.version) != (model, slot, version):
        return UpdateRefused(OtaReason.WRONG_MODEL,
                             f"{full.path}: signed as {info.model}/{info.slot} "
                             f"v{info.version}, wanted {model}/{slot} v{version}")
    if (info.result_sha256, info.result_length) != (full.sha256, full.length):
        return UpdateRefused(OtaReason.INVALID_METADATA, f"{full.path}: custom result hash/length "
                             "differ from the target's own")
    return None


def delta_problem(full: SignedArtifact, delta: SignedArtifact,
                  installed: InstalledBundle) -> str | None:
    """Why ``delta`` cannot turn ``installed`` into ``full`` (None: it can)."""
    info = delta.info
    if info.kind != "delta":
        return f"{delta.path} is not a delta"
    if (info.model, info.slot, info.version) != (full.info.model, full.info.slot,
                                                 full.info.version):
        return f"{delta.path} leads to {info.model}/{info.slot} v{info.version}, not the release"
    if (info.result_sha256, info.result_length) != (full.sha256, full.length):
        return f"{delta.path} does not rebuild the signed full bundle"
    if installed.model != info.model or info.base_version != installed.version:
        return (f"{delta.path} applies to {info.model} v{info.base_version}, installed is "
                f"{installed.model} v{installed.version}")
    if info.base_sha256 != installed.sha256:
        return f"{delta.path} expects a different base bundle (sha256 mismatch)"
    if delta.length >= full.length:
        return f"{delta.path} is not smaller than the full bundle"
    return None


def choose_artifact(full: SignedArtifact, delta: SignedArtifact | None,
                    installed: InstalledBundle | None,
                    delta_failed: bool = False) -> SignedArtifact:
    """Delta from the installed version when it is usable (and has not failed), else full."""
    if delta is None or installed is None or delta_failed:
        return full
    return full if delta_problem(full, delta, installed) else delta


def rebuilt_refusal(full: SignedArtifact, sha256: str, length: int) -> UpdateRefused | None:
    """A bundle rebuilt from a delta must be byte-identical to the signed full bundle."""
    if (sha256, length) != (full.sha256, full.length):
        return UpdateRefused(OtaReason.HASH_MISMATCH, f"bundle rebuilt for {full.path} has sha256 "
                             f"{sha256[:16]}… ({length} bytes), signed is {full.sha256[:16]}… "
                             f"({full.length} bytes)")
    return None


def labels_refusal(live: BundleManifest, candidate: BundleManifest) -> str | None:
    """Why ``candidate`` may not replace ``live`` by its labels (None: it may). Alert rules,
    mutes and the alert policy's "normal" go by label name: a label gone or "normal" moved
    would silently turn them into an alert storm or nothing (review, December 2026). New
    labels are fine."""
    dropped = [label for label in live.labels if label not in candidate.labels]
    if candidate.normal_label == live.normal_label and not dropped:
        return None
    return (f"{candidate.name} v{candidate.version} has normal label "
            f"{candidate.normal_label!r} and labels {candidate.labels}; the live model has "
            f"{live.normal_label!r} and {live.labels} (dropped: {dropped})")
