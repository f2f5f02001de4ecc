"""The configuration of a followed file (``[[sources]] kind = "file"``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The text_levels switch of file and MQTT sources (agent.text_levels).
TEXT_LEVELS_DESCRIPTION = (
    "The lines state their program's level in their text (log4j/logback or Python "
    "logging: 'ERROR [main]', 'WARN  [', 'ERROR:root:'; Apache and nginx error logs: "
    "'[error]', '[core:warn]'; logfmt/JSON: level=error): read it and weigh it in as a "
    "journal line's level ([model.level_evidence]). Only for lines in such a format: "
    "elsewhere an upper-case ERROR early in a message would read as a level "
    "(docs/agent.md).")


class FileSourceConfig(BaseModel):
    """A log file to follow, like `tail -F`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["file"] = Field(description="Source type: a text file.")
    path: Path = Field(description="Absolute path of the file to follow (rotation-safe).")
    name: str | None = Field(default=None,
                             description="Name in results and queries; default file:<path>.")
    keyword_evidence: bool = Field(
        default=False, description="Weigh in the keywords of [model.keyword_evidence] (by "
        "default the grep fatal|fail|error|panic|critical): for software the model has "
        "never read, such as your own application, a line with a keyword needs less of the "
        "model's confidence to be flagged and one without needs more (docs/agent.md).")
    text_levels: bool = Field(default=False, description=TEXT_LEVELS_DESCRIPTION)
    start_at: Literal["end", "beginning"] = Field(
        default="end", description="Where to start when there is no saved position: only new "
        "lines (end) or the whole file (beginning). A file created later is read from its start.")
    poll_interval_s: float = Field(
        default=0.2, gt=0.0, le=60.0,
        description="How often to look for new data, rotation and truncation when idle "
        "where inotify cannot tell (no inotify; a network or FUSE file system; a symlinked "
        "path; a change seen that raised no event) and while a rotation is handled (s). "
        "Where inotify wakes the source on every change it looks every 2 s (or this, if "
        "longer) as a safety net.")
    read_coalesce_ms: int = Field(
        default=20, ge=0, le=1000,
        description="Shortest wait between noticing that the file grew and reading it, so "
        "that lines written one at a time are read together (ms; 0: as soon as possible). "
        "The wait grows, up to [pipeline] batch_max_wait_ms, to what batch_min_lines take "
        "at the rate the file grows: a trickle is read once per batch_max_wait_ms, a fast "
        "stream every few ms.")

    rotate_grace_s: float = Field(
        default=2.0, ge=0.0, le=600.0,
        description="After a rotation, how long the old file may stay quiet before reading "
        "moves to the new (still empty) file; moves at once when the new file has data (s).")

    rotated_drain_s: float = Field(
        default=300.0, ge=0.0, le=86400.0,
        description="After reading moved to the new file, how long the old (rotated, "
        "renamed or deleted) file is still read while it grows: writers that reopen their "
        "log late, or never, keep writing to it. It is let go once it has not grown for "
        "this long — a deleted one once it has been quiet for rotate_grace_s, so that its "
        "disk space is freed; its unfinished last line is read then (s; 0: let go at the "
        "switch).")

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        if not v.is_absolute():
            raise ValueError(f"path must be absolute, got {str(v)!r}")
        return v
