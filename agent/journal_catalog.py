"""The journal's message catalog as evidence: systemd says in a structured field what an
entry is, and for a unit that failed the words alone often do not.

systemd tags the entries that matter with a ``MESSAGE_ID`` from its message catalog
(``/usr/lib/systemd/catalog/systemd.catalog``, ``journalctl -x``): *a start job for unit
X has failed*, *unit failed*, *unit process exited*, *process dumped core*, ... The words of
such a line are often weak evidence for the text model — ``Failed to start
meter-reader.service - Energy meter reader.`` scores 0.67 with its alert labels split, and
no alert is sent (docs/model.md, "A device's own journal"). The catalog names the event:
where it names a failure, the line is an alert whatever its unit's description says;
where it names routine (a job started, a unit stopped or succeeded), it is not.

Each entry below is one catalog id with the verdict and the reason, read from the catalog
text of systemd 252 (the version the templates are harvested from; the ids are stable
across versions). An id applies only at the levels its verdict fits, so the same id
logged at another level is left to the words:

- an **alert** id only at ``notice`` or worse: ``Unit process exited`` is logged at
  ``debug`` for a clean exit, at ``notice``/``warning`` for a failed one;
- a **normal** id only at ``info`` or milder: ``Stopped (with error) X.`` carries the
  stop job's id at ``err``.

Trust. Any local process can put any ``MESSAGE_ID`` in its own entries (journald's native
protocol takes fields from every user); the id counts only where the line's level counts:
for entries the kernel says a system user logged (``_UID`` ≤ 999, as for
:mod:`agent.level_evidence`). An ordinary user cannot quieten ``Failed password for root``
by tagging it *unit succeeded*, nor raise alerts as systemd.

The evidence moves the anomaly to at least ``alert_anomaly`` (an alert id) or at most
``normal_anomaly`` (a normal id); the alert labels keep their shares, as with the level.
Pure functions of their inputs; the pipeline applies them after the level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from agent.level_evidence import with_anomaly
from contract.strict import Strict

Verdict = Literal["alert", "normal"]

# The levels each verdict applies at (syslog PRIORITY: 0 emerg .. 7 debug).
ALERT_MAX_PRIORITY = 5   # notice or worse
NORMAL_MIN_PRIORITY = 6  # info or milder


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    subject: str  # the catalog's Subject line, as a technician reads it in the reason
    verdict: Verdict
    reason: str


def _alert(subject: str, reason: str) -> CatalogEntry:
    return CatalogEntry(subject, "alert", reason)


def _normal(subject: str, reason: str) -> CatalogEntry:
    return CatalogEntry(subject, "normal", reason)


# systemd 252's catalog (src/systemd/sd-messages.h; catalog/systemd.catalog.in). Ids left
# out are left to the words: their events are neither clearly trouble nor clearly routine
# (messages suppressed by rate limiting, syslog forwarding missed, the system tainted,
# DNSSEC validation failed, a core file truncated beside the dump that is the alert,
# invalid unit-file settings that systemd ignores, a factory reset).
SYSTEMD_CATALOG: dict[str, CatalogEntry] = {
    # --- failures: what a technician must be told
    "be02cf6855d2428ba40df7e9d022f03d": _alert(
        "A start job for a unit has failed",
        "Failed to start X / Dependency failed for X: the unit is not running"),
    "d9b373ed55a64feb8242e02dbe79a49c": _alert(
        "Unit failed", "the unit entered the failed state (exit code, signal, timeout, "
        "watchdog, start limit)"),
    "98e322203f7a4ed290d09fe03c09fe15": _alert(
        "Unit process exited", "a unit's process exited unsuccessfully (a clean exit is "
        "logged at debug, which this verdict does not cover)"),
    "fc2e22bc6ee647b6b90729ab34a250b1": _alert(
        "Process dumped core", "a process crashed"),
    "fe6faa94e7774663a0da52717891d8ef": _alert(
        "A process of a unit has been killed by the OOM killer", "the system ran out of "
        "memory"),
    "641257651c1b4ec9a8624d7a40a9e1e7": _alert(
        "Process could not be executed", "a unit's command could not be started (missing "
        "binary, unknown user); at info it is an early step whose failure follows at err"),
    # --- routine: the service manager's everyday work
    "f77379a8490b408bbe5f6940505a777b": _normal("The journal has been started", "routine"),
    "d93fb3c9c24d451a97cea615ce59c00b": _normal("The journal has been stopped", "routine"),
    "ec387f577b844b8fa948f33cad9a75e6": _normal(
        "Disk space used by the journal", "a report of sizes and limits"),
    "8d45620c1a4348dbb17410da57c60c66": _normal("A new session has been created", "a login"),
    "3354939424b4456d9802ca8333ed424a": _normal("Session has been terminated", "a logout"),
    "fcbefc5da23d428093f97c82a9290f7b": _normal("A new seat is now available", "routine"),
    "e7852bfe46784ed0accde04bc864c2d5": _normal("Seat has now been removed", "routine"),
    "c7a787079b354eaaa9e77b371893cd27": _normal("Time change", "the clock was set"),
    "45f82f4aef7a4bbf942ce861d1f20990": _normal("Time zone change", "configuration"),
    "b07a249cd024414a82dd00cd181378ff": _normal("System start-up is now complete", "boot"),
    "eed00a68ffd84e31882105fd973abdd1": _normal("User manager start-up is now complete",
                                                "boot"),
    "6bbd95ee977941e497c48be27c254128": _normal("System sleep state entered", "power "
                                                "management as configured"),
    "8811e6df2a8e40f58a94cea26f8ebf14": _normal("System sleep state left", "resume"),
    "98268866d1d54a499c4e98921d93bc40": _normal("System shutdown initiated", "a requested "
                                                "shutdown or reboot"),
    "7d4958e842da4a758f6c1cdc7b36dcc5": _normal("A start job for a unit has begun "
                                                "execution", "Starting X..."),
    "39f53479d3a045ac8e11786248231fbf": _normal("A start job for a unit has finished "
                                                "successfully", "Started X / Finished X / "
                                                "Reached target X"),
    "de5b426a63be47a7b6ac3eaac82e2f6f": _normal("A stop job for a unit has begun execution",
                                                "Stopping X..."),
    "9d1aaa27d60140bd96365438aad20286": _normal("A stop job for a unit has finished",
                                                "Stopped X (a stop with an error is logged "
                                                "at err, which this verdict does not cover)"),
    "d34d037fff1847e6ae669a370e694725": _normal("A reload job for a unit has begun "
                                                "execution", "Reloading X..."),
    "7b05ebc668384222baa8881179cfda54": _normal("A reload job for a unit has finished",
                                                "Reloaded X"),
    "24d8d4452573402496068381a6312df2": _normal("A virtual machine or container has been "
                                                "started", "routine"),
    "58432bd3bace477cb514b56381b8a758": _normal("A virtual machine or container has been "
                                                "terminated", "routine"),
    "5eb03494b6584870a536b337290809b3": _normal(
        "Automatic restarting of a unit has been scheduled", "Restart= at work; the "
        "failure before it is the alert, and a restart loop ends in 'Unit failed'"),
    "ae8f7b866b0347b9af31fe1c80b127c0": _normal("Resources consumed by unit runtime",
                                                "accounting"),
    "7ad2d189f7e94e70a38c781354912448": _normal("Unit succeeded", "Deactivated "
                                                "successfully"),
    "0e4284a0caca4bfc81c0bb6786972673": _normal("Unit skipped", "an ExecCondition= said "
                                                "no, as configured"),
    "7c8a41f37b764941a0e1780b1be2f037": _normal("Initial clock synchronization", "routine"),
    "3f7d5ef3e54f4302b4f0b143bb270cab": _normal("TPM PCR Extended", "measured boot"),
}


class CatalogEvidenceConfig(Strict):
    """``[model.catalog_evidence]``: use the journal catalog's MESSAGE_ID."""

    enabled: bool = Field(default=True, description=(
        "Weigh in the MESSAGE_ID systemd gives the entries of its message catalog (a unit "
        "failed, a job started; agent.journal_catalog) for entries a system user logged; "
        "false: the words (and the level) alone decide."))
    alert_anomaly: float = Field(default=0.97, ge=0.5, le=1.0, description=(
        "The least anomaly of a line whose catalog id names a failure (at notice or "
        "worse). The default is above the default [alerts] anomaly_threshold (0.95), so "
        "such a line is sent."))
    normal_anomaly: float = Field(default=0.03, ge=0.0, le=0.5, description=(
        "The most anomaly of a line whose catalog id names routine (at info or milder)."))


def parse_message_id(value: object) -> str | None:
    """A journal MESSAGE_ID as 32 lowercase hex digits, or None when missing or not an
    id (journald stores what the program sent: bytes, text, a list when repeated; the
    first counts). The UUID form with dashes is accepted, as sd_id128_from_string does."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if len(text) == 36 and [len(p) for p in text.split("-")] == [8, 4, 4, 4, 12]:
        text = text.replace("-", "")
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
        return None
    return text


def verdict_of(message_id: str | None, level: int | None) -> CatalogEntry | None:
    """The catalog's verdict on a line, or None: no id, an id the table leaves to the
    words, no trusted level, or a level the verdict does not cover."""
    if message_id is None or level is None:
        return None
    entry = SYSTEMD_CATALOG.get(message_id)
    if entry is None:
        return None
    if entry.verdict == "alert":
        return entry if level <= ALERT_MAX_PRIORITY else None
    return entry if level >= NORMAL_MIN_PRIORITY else None


def apply_catalog(probs: np.ndarray, anomaly: np.ndarray,
                  verdicts: Sequence[CatalogEntry | None], cfg: CatalogEvidenceConfig,
                  normal_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch's (probabilities, anomaly) with the catalog's verdicts weighed in: an
    alert verdict raises the anomaly to at least ``cfg.alert_anomaly``, a normal one
    lowers it to at most ``cfg.normal_anomaly``; lines without a verdict keep their scores
    bit for bit, and every alert label keeps its share. Inputs are not modified."""
    if len(verdicts) != len(anomaly) or probs.shape[0] != len(anomaly):
        raise ValueError(f"{len(verdicts)} verdicts for {len(anomaly)} lines")
    if all(v is None for v in verdicts):
        return probs, anomaly
    a = np.asarray(anomaly, dtype=np.float64)
    new = np.array([a[i] if v is None
                    else max(a[i], cfg.alert_anomaly) if v.verdict == "alert"
                    else min(a[i], cfg.normal_anomaly)
                    for i, v in enumerate(verdicts)], dtype=np.float64)
    known = np.array([v is not None for v in verdicts])
    return with_anomaly(probs, anomaly, new, known, normal_index)
