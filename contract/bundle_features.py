"""What a bundle manifest may ask of the agent that reads it, beyond bundle format 1.

A manifest is a strict schema: an agent refuses one with a field it does not know, and one
whose tokenizer names a head it cannot compute. That keeps a device from scoring with
the wrong features, but an older agent learns it only after downloading the bundle, and
its rollout counts a failure per device. So each such part of a manifest is a named
*feature*: :func:`features_needed` says which a manifest uses, every agent says in its
status which it reads (``contract.messages.Status.reads``: :data:`BUNDLE_FEATURES` of its
version), and the fleet server does not send a bundle to a device whose agent said it
cannot read it (the rollout skips it, naming what is missing).

The level offsets live here too: the model's own calibration of the level a program
logged a line at (``agent.level_evidence``), fitted for each released model, so an
update brings its own instead of relying on the defaults of the agent's version. So do
the names of the programs a model was trained on (``agent.keyword_evidence``): a model
that has read a program's lines is left to its words on them, and a site fine-tune that
taught it an application's lines brings that application's name along.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from contract.strict import Strict

if TYPE_CHECKING:
    from contract.bundle import BundleManifest

FEATURE_HEAD_TIME_HOST = "tokenizer.head:time-host-v1"
FEATURE_LEVEL_OFFSETS = "level_offsets"
FEATURE_KNOWN_PROGRAMS = "known_programs"
# Every feature this version of the contract (and so the agent shipped with it) reads.
BUNDLE_FEATURES: frozenset[str] = frozenset({FEATURE_HEAD_TIME_HOST, FEATURE_LEVEL_OFFSETS,
                                             FEATURE_KNOWN_PROGRAMS})
# What an agent that says nothing is taken to read: agents before December 2026 send no
# ``reads``, and the time-host head is older than that field. Agents older than the head
# are not told apart (they refuse such a bundle after downloading it, as before).
READ_BY_SILENT_AGENTS: frozenset[str] = frozenset({FEATURE_HEAD_TIME_HOST})
MAX_FEATURES = 32  # in one status (features are short names; a device's list is bounded)
MAX_FEATURE_CHARS = 64

Offset = Annotated[float, Field(ge=-20.0, le=20.0)]
# A program as a syslog tag names it, lower case (``sshd``, ``postfix``, ``networkmanager``):
# what agent.keyword_evidence.program_of reads from a line, so a name in this shape can match.
MAX_KNOWN_PROGRAMS = 4096
PROGRAM_NAME_PATTERN = r"^[a-z][a-z0-9_.@-]{0,63}$"
ProgramName = Annotated[str, Field(min_length=1, max_length=64, pattern=PROGRAM_NAME_PATTERN)]


class BundleLevelOffsets(Strict):
    """Log-odds added to the model's anomaly for a line its program logged at each syslog
    level (journald's PRIORITY): ``anomaly' = sigmoid(logit(anomaly) + offset)``. Fitted
    for the bundle's model on real daemons' lines held out from it (docs/model.md)."""

    emerg: Offset = Field(description="PRIORITY 0.")
    alert: Offset = Field(description="PRIORITY 1.")
    crit: Offset = Field(description="PRIORITY 2.")
    err: Offset = Field(description="PRIORITY 3.")
    warning: Offset = Field(description="PRIORITY 4.")
    notice: Offset = Field(description="PRIORITY 5.")
    info: Offset = Field(description="PRIORITY 6.")
    debug: Offset = Field(description="PRIORITY 7.")

    def by_priority(self) -> list[float]:
        """The offsets indexed by PRIORITY (0..7)."""
        return [self.emerg, self.alert, self.crit, self.err, self.warning, self.notice,
                self.info, self.debug]


def features_needed(manifest: BundleManifest) -> frozenset[str]:
    """The features an agent must read to use ``manifest`` (empty: any agent can)."""
    needed = set()
    if manifest.tokenizer.head == "time-host-v1":
        needed.add(FEATURE_HEAD_TIME_HOST)
    if manifest.level_offsets is not None:
        needed.add(FEATURE_LEVEL_OFFSETS)
    if manifest.known_programs is not None:
        needed.add(FEATURE_KNOWN_PROGRAMS)
    return frozenset(needed)


def missing_features(needed: frozenset[str], reads: frozenset[str] | None) -> list[str]:
    """What of ``needed`` an agent that reads ``reads`` lacks, sorted; ``reads`` None: not
    known (the server has no status from the device) — nothing is missing, the agent
    decides itself on download, as agents always did."""
    if reads is None:
        return []
    return sorted(needed - reads)
