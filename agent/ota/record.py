"""The OTA record of one model slot (``<state_dir>/ota/<slot>.json``): what must survive a
crash, the bundles it names and what the desired state asked for. Pydantic models, no
logic: the transitions are in :mod:`agent.ota.state`, the file in :mod:`agent.ota.store`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from contract.messages import OtaState
from contract.reasons import ReasonCode
from contract.strict import FrozenStrict

RECORD_FORMAT = 1
BOOT_ID_MAX = 64  # characters of a kernel boot id kept (the kernel's is a 36-character UUID)


class InstalledRef(FrozenStrict):
    """A bundle file installed under ``<state_dir>/models/<slot>/``."""

    model: str = Field(description="Model name (bundle manifest `name`).")
    version: int = Field(ge=1, description="Bundle version.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the bundle file.")
    file: str = Field(description="File name inside the slot's models directory.")


class UpdateTarget(FrozenStrict):
    """What the desired state asks for, as far as this slot is concerned."""

    model: str = Field(description="Wanted model name.")
    version: int = Field(ge=1, description="Wanted version.")
    revision: int = Field(ge=0, description="Revision of the desired-state document.")
    rollout_id: str | None = Field(default=None, description="Rollout the change belongs to.")
    metadata_url: str | None = Field(default=None, description="Mirror of the metadata, if any.")
    target_base_url: str | None = Field(default=None, description="Mirror of the targets.")


MAX_REJECTED = 8  # refused versions kept (newest last)


class VersionFloor(FrozenStrict):
    model: str = Field(description="Model name.")
    version: int = Field(ge=1, description="The lowest version of it this device may install.")


class RejectedVersion(FrozenStrict):
    model: str = Field(description="Model name.")
    version: int = Field(description="The version refused.")
    at: float = Field(description="Unix time of the refusal.")


class OtaRecord(FrozenStrict):
    """Everything about a slot's update that must survive a crash (``ota/<slot>.json``)."""

    format: int = Field(default=RECORD_FORMAT, description="Record format version.")
    slot: str = Field(description="The agent's slot name.")
    state: OtaState = Field(default="idle", description="Current state.")
    committed: InstalledRef | None = Field(
        default=None, description="The bundle to run after a restart; None: the configured one.")
    previous: InstalledRef | None = Field(
        default=None, description="The committed bundle before the last commit (kept on disk).")
    target: UpdateTarget | None = Field(default=None, description="Update being/last worked on.")
    from_version: int | None = Field(default=None, description="Live version when it started.")
    candidate: InstalledRef | None = Field(
        default=None, description="Verified bundle being smoke-tested or in trial.")
    artifact: Literal["delta", "full"] | None = Field(
        default=None, description="What was downloaded.")
    bytes_downloaded: int | None = Field(default=None, description="Signed length fetched.")
    delta_failed: bool = Field(
        default=False, description="The delta was refused once: use the full bundle.")
    resumes: int = Field(default=0, ge=0, description="Restarts during this update so far.")
    rejected: list[RejectedVersion] = Field(
        default_factory=list, max_length=MAX_REJECTED,
        description="Versions refused lately for their own fault, newest last.")
    floor: VersionFloor | None = Field(
        default=None, description="A committed version whose bundle failed to load at "
        "boot, so an older bundle runs: no version of that model below it is installed, "
        "although the live one is lower. Cleared by the next commit.")
    trial_boot_id: str | None = Field(
        default=None, max_length=BOOT_ID_MAX, description="The kernel's boot id when the trial "
        "started (read only in state trial): a restart in another boot (power lost, a "
        "reset) tries the candidate again instead of rolling it back.")
    trial_reboots: int = Field(
        default=0, ge=0, description="Restarts of the whole device during this update's "
        "trials so far (tried again at most MAX_TRIAL_REBOOTS times).")
    trial_stopped: bool = Field(
        default=False, description="The agent was stopped cleanly (SIGTERM) during the "
        "trial: the next start runs the trial again instead of rolling back.")
    # ReasonCode: a record written by a newer agent (then downgraded) still loads.
    reason: ReasonCode | None = Field(default=None, description="Machine code of the last problem.")
    detail: str | None = Field(default=None, description="Human explanation.")
    retry_at: float | None = Field(
        default=None, description="Unix time after which a transient failure may be retried.")
    updated_at: float = Field(default=0.0, description="Unix time of the last transition.")
