"""The configuration of a journald source (``[[sources]] kind = "journald"``) and the
sd-journal matches it reads with."""

from __future__ import annotations

import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.journal_catalog import COREDUMP_MESSAGE_ID


class JournaldSourceConfig(BaseModel):
    """Entries from the systemd journal, filtered by unit, priority and identifier."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["journald"] = Field(description="Source type: the systemd journal.")
    name: str | None = Field(default=None,
                             description="Name in results and queries; default journald.")
    units: list[str] = Field(
        default_factory=list, description="Only entries of these systemd units, as "
        "journalctl -u picks them: the unit's own (_SYSTEMD_UNIT) and the service "
        "manager's, core dumps' and root daemons' about it (Failed to start X). A name "
        "without a dot means <name>.service. Empty: all units.")
    priority_max: int | None = Field(
        default=None, ge=0, le=7, description="Only entries with syslog PRIORITY at or below "
        "this (0 emerg .. 7 debug; 4 = warning and worse). None: all priorities.")
    identifiers: list[str] = Field(
        default_factory=list,
        description="Only entries with these SYSLOG_IDENTIFIER values. Empty: all.")
    files: list[Path] = Field(
        default_factory=list, description="Read these journal files instead of the system "
        "journal (tests, offline analysis); entries appended to them are picked up.")
    directory: Path | None = Field(
        default=None, description="Read the journal files in this directory instead of the "
        "system journal (e.g. a container's or a remote journal).")
    start_at: Literal["end", "beginning"] = Field(
        default="end", description="Where to start when there is no saved cursor: only new "
        "entries (end) or everything the journal still holds (beginning).")
    trust_fields: bool | None = Field(
        default=None, description="Believe the entries' trusted fields (_UID, _PID: who "
        "logged a line), so that a system user's PRIORITY and the service manager's catalog "
        "ids are weighed in. On the system journal journald sets them (default there: "
        "true); in files or a directory you name they are whatever wrote those files — a "
        "container's root, a remote uploader (default there: false: the words alone "
        "decide). Set true for journals whose writer you trust, e.g. this device's own "
        "/var/log/journal/<machine-id> read as a directory (not /var/log/journal: it also "
        "holds containers' journals, which their root writes).")
    poll_interval_s: float = Field(
        default=0.2, gt=0.0, le=60.0,
        description="Longest wait for new entries before looking again (s).")
    keyword_evidence: bool = Field(
        default=False, description="Weigh in the keywords of [model.keyword_evidence] for "
        "this source's lines that bring no level the agent weighs: a service's stdout at info "
        "(your own application's, as a unit), an ordinary user's lines, a journal whose "
        "writer is not trusted. Lines with a weighed level are left to it (docs/agent.md).")
    text_levels: bool = Field(
        default=False, description="A service's stdout lines (which journald stores at info) "
        "state their level in their text (log4j 'ERROR [main]', Python's 'ERROR:root:', "
        "level=warn): read it and weigh it in as the journal's ([model.level_evidence]). "
        "Only for lines of system users in a journal whose fields are trusted, and only "
        "where the journal gives no level the agent weighs (docs/agent.md).")

    def trusts_fields(self) -> bool:
        """Whether the entries' trusted fields are believed: as set, else on the system
        journal only (a named file's are its writer's)."""
        if self.trust_fields is not None:
            return self.trust_fields
        return not self.files and self.directory is None

    @field_validator("units", "identifiers")
    @classmethod
    def _no_empty(cls, v: list[str]) -> list[str]:
        if any(not s or "\n" in s for s in v):
            raise ValueError("entries must be non-empty single-line strings")
        return v

    @model_validator(mode="after")
    def _one_input(self) -> JournaldSourceConfig:
        if self.files and self.directory is not None:
            raise ValueError("set either files or directory, not both")
        return self


def coredump_user_uid() -> int | None:
    """The uid of the ``systemd-coredump`` user, None where there is none."""
    try:
        return pwd.getpwnam("systemd-coredump").pw_uid
    except KeyError:
        return None


@dataclass(frozen=True, slots=True)
class JournalFilter:
    """What a source reads, as sd-journal matches: ``(group OR group ...) AND terms``. A
    group's matches are ANDed (different fields) — one alternative way an entry can be
    about a unit; ``terms`` are the priority and identifier matches (sd-journal ORs the
    values of one field and ANDs the fields)."""

    groups: tuple[tuple[str, ...], ...]
    terms: tuple[str, ...]

    def apply(self, reader: Any, *also: str) -> None:
        """Add the matches to ``reader``; ``also``: more terms ANDed with them (one boot's
        entries: ``_BOOT_ID=...``)."""
        terms = (*self.terms, *also)
        for i, group in enumerate(self.groups):
            if i:
                reader.add_disjunction()
            reader.add_match(*group)
        if self.groups and terms:
            reader.add_conjunction()
        if terms:
            reader.add_match(*terms)

    def describe(self) -> dict[str, list[Any]]:
        """``{"any_of": [[FIELD=value, ...], ...], "all_of": [FIELD=value, ...]}``: an entry
        is read when it matches every match of one ``any_of`` group (none: any entry) and
        ``all_of`` (the values of one field ORed)."""
        return {"any_of": [list(g) for g in self.groups], "all_of": list(self.terms)}


def journal_matches(cfg: JournaldSourceConfig,
                    coredump_uid: int | Literal["look up"] | None = "look up") -> JournalFilter:
    """The matches for the config. A unit's entries are, as for ``journalctl -u``: its own
    (``_SYSTEMD_UNIT``), the service manager's about it (``UNIT`` from PID 1: `Failed to
    start X`, the lines agent.journal_catalog reads), its core dumps (``COREDUMP_UNIT``)
    and root daemons' about it (``OBJECT_SYSTEMD_UNIT``). Before, only the first: a source
    for one service never saw that it failed (review, December 2026). A core dump counts
    from root, as for journalctl, or from the ``systemd-coredump`` user (``coredump_uid``,
    looked up by default): systemd-coredump drops to that user before it logs the crash of
    a system user's process, and journalctl's root-only match misses those."""
    if coredump_uid == "look up":
        coredump_uid = coredump_user_uid()
    uids = ("_UID=0",) if coredump_uid in (None, 0) else ("_UID=0", f"_UID={coredump_uid}")
    groups: list[tuple[str, ...]] = []
    for u in cfg.units:
        unit = u if "." in u else u + ".service"
        groups += [(f"_SYSTEMD_UNIT={unit}",),
                   (f"MESSAGE_ID={COREDUMP_MESSAGE_ID}", *uids, f"COREDUMP_UNIT={unit}"),
                   ("_PID=1", f"UNIT={unit}"),
                   ("_UID=0", f"OBJECT_SYSTEMD_UNIT={unit}")]
    terms: list[str] = []
    if cfg.priority_max is not None:
        terms += [f"PRIORITY={p}" for p in range(cfg.priority_max + 1)]
    terms += [f"SYSLOG_IDENTIFIER={i}" for i in cfg.identifiers]
    return JournalFilter(tuple(groups), tuple(terms))
