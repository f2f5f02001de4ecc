"""The journal's message catalog as evidence: systemd says in a structured field that a
unit failed, and for such a line the words alone often do not.

The service manager (and systemd-coredump, for a crash) tags the entries that matter with
a ``MESSAGE_ID`` from systemd's message catalog (``/usr/lib/systemd/catalog/
systemd.catalog``, ``journalctl -x``): *a start job for unit X has failed*, *unit failed*,
*unit process exited*, *killed by the OOM killer*, *process dumped core*. The words of
such a line are often weak evidence for the text model — ``Failed to start
meter-reader.service - Energy meter reader.`` scores 0.67 with its alert labels split, and
no alert was sent (docs/model.md, "A device's own journal"). The catalog names the event:
the line is an alert whatever its unit's description says.

Each entry below is one catalog id with the reason, checked against systemd 252's source
(the version the templates are harvested from; the ids are stable across versions). An id
counts only at ``notice`` or worse: ``Unit process exited`` is logged at ``debug`` for a
clean exit or one that ``SuccessExitStatus=`` accepts.

Only failures. The catalog's routine ids (a job started, a unit succeeded) could lower a
line's score too, but measured on the captured journal they add nothing (no line they
cover was near an alert), and a cap would hide for good what they sometimes carry
(``Reached target Emergency Mode.``, a daemon that quit on its own); so the catalog only
ever raises a line (review, December 2026).

Trust. Any local process can put any ``MESSAGE_ID`` in its own entries (journald's native
protocol takes fields from every user, a system user's too), so an id counts only for
entries of the program that owns it, told by fields journald sets and no client can: the
service manager's ids for ``_PID`` 1 and ``_UID`` 0; the core dump's for an entry from a
``systemd-coredump@….service`` instance (``_SYSTEMD_UNIT``, the cgroup PID 1 put it in).
agent.sources.journald keeps an id only then (:func:`trusted_message_id`), and only for
journals whose writer the operator trusts (``trust_fields``).

The evidence moves the anomaly to at least ``alert_anomaly``; the alert labels keep their
shares, as with the level. Pure functions of their inputs; the pipeline applies them after
the level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from agent.level_evidence import with_anomaly
from contract.strict import Strict

# The levels an id counts at (syslog PRIORITY: 0 emerg .. 7 debug): notice or worse.
ALERT_MAX_PRIORITY = 5


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    subject: str  # the catalog's Subject line, as a technician reads it in the reason
    reason: str
    # Counts whatever the entry's level: the program always logs this id at one level
    # (and the level of an entry journald credits to an ordinary user is not passed on).
    any_level: bool = False


# systemd 252's failure ids that PID 1 logs (src/systemd/sd-messages.h; src/core/job.c,
# unit.c, service.c). Left to the words: a spawn failure (logged by the forked child, as
# whichever user it was becoming: nothing journald sets tells it from a forgery).
SERVICE_MANAGER_CATALOG: dict[str, CatalogEntry] = {
    "be02cf6855d2428ba40df7e9d022f03d": CatalogEntry(
        "A start job for a unit has failed",
        "Failed to start X / Dependency failed for X: the unit is not running"),
    "d9b373ed55a64feb8242e02dbe79a49c": CatalogEntry(
        "Unit failed", "the unit entered the failed state (exit code, signal, timeout, "
        "watchdog, start limit)"),
    "98e322203f7a4ed290d09fe03c09fe15": CatalogEntry(
        "Unit process exited", "a unit's process exited unsuccessfully (a clean exit, and "
        "one SuccessExitStatus= or a '-' prefix accepts, are logged at debug)"),
    "fe6faa94e7774663a0da52717891d8ef": CatalogEntry(
        "A process of a unit has been killed by the OOM killer", "the system ran out of "
        "memory"),
}

# systemd-coredump's report of a crash (src/coredump/coredump.c: "Process N (comm) of user U
# dumped core." or "... terminated abnormally without generating a coredump.", always at
# crit). PID 1's "Main process exited, code=dumped" covers a service's main process; this
# covers every other process: a worker, a helper, a cron job, a login session's program.
# The instance drops to the crashed process's user before it logs (so an ordinary user's
# crash is credited to that user, and its level is not passed on): any level counts.
COREDUMP_MESSAGE_ID = "fc2e22bc6ee647b6b90729ab34a250b1"
COREDUMP_CATALOG: dict[str, CatalogEntry] = {
    COREDUMP_MESSAGE_ID: CatalogEntry(
        "Process dumped core", "a process crashed (a signal that dumps core: SEGV, ABRT, "
        "BUS, ...)", any_level=True),
}

SYSTEMD_CATALOG: dict[str, CatalogEntry] = {**SERVICE_MANAGER_CATALOG, **COREDUMP_CATALOG}


class CatalogEvidenceConfig(Strict):
    """``[model.catalog_evidence]``: use the journal catalog's MESSAGE_ID."""

    enabled: bool = Field(default=True, description=(
        "Weigh in the MESSAGE_ID the service manager gives its failures (a unit failed, a "
        "start job failed) and systemd-coredump its crash reports (agent.journal_catalog); "
        "false: the words (and the level) alone decide."))
    alert_anomaly: float = Field(default=0.97, ge=0.5, le=1.0, description=(
        "The least anomaly of a line its owner tagged with a failure's catalog id (the "
        "service manager's at notice or worse; a core dump's at any level). The default is "
        "above the default [alerts] anomaly_threshold (0.95), so such a line is sent."))


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


def logged_by_service_manager(uid: object, pid: object) -> bool:
    """Whether journald's ``_UID`` and ``_PID`` say PID 1 as root logged an entry
    (python-systemd gives ints; an export, text)."""
    return _is(uid, 0) and _is(pid, 1)


def logged_by_coredump(unit: object) -> bool:
    """Whether journald's ``_SYSTEMD_UNIT`` says a systemd-coredump@ instance logged an
    entry (its cgroup: only PID 1 puts a process there)."""
    if isinstance(unit, bytes):
        unit = unit.decode("utf-8", errors="replace")
    return (isinstance(unit, str) and unit.startswith("systemd-coredump@")
            and unit.endswith(".service"))


def trusted_message_id(message_id: str | None, uid: object, pid: object,
                       unit: object) -> str | None:
    """``message_id`` if the program that owns it logged the entry (the service manager's
    ids from PID 1 as root, the core dump's from systemd-coredump's service), else None:
    anyone's other ids are claims, and an owner's id in another's entry is a forgery."""
    if message_id in COREDUMP_CATALOG:
        owner = logged_by_coredump(unit)
    else:  # the service manager's, and ids the table does not use (query and eval show them)
        owner = logged_by_service_manager(uid, pid)
    return message_id if owner else None


def _is(value: object, number: int) -> bool:
    return value == number or value in (str(number), str(number).encode())


def verdict_of(message_id: str | None, level: int | None) -> CatalogEntry | None:
    """The catalog's entry for a line, or None: no id, an id the table leaves to the
    words, or (but for an id logged at one level always) no trusted level or a level
    milder than notice."""
    entry = SYSTEMD_CATALOG.get(message_id) if message_id is not None else None
    if entry is None or entry.any_level:
        return entry
    return entry if level is not None and level <= ALERT_MAX_PRIORITY else None


def apply_catalog(probs: np.ndarray, anomaly: np.ndarray,
                  verdicts: Sequence[CatalogEntry | None], cfg: CatalogEvidenceConfig,
                  normal_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch's (probabilities, anomaly) with the catalog weighed in: a line with an
    entry gets an anomaly of at least ``cfg.alert_anomaly`` (never less than it had);
    lines without keep their scores bit for bit, and every alert label keeps its share.
    Inputs are not modified."""
    if len(verdicts) != len(anomaly) or probs.shape[0] != len(anomaly):
        raise ValueError(f"{len(verdicts)} verdicts for {len(anomaly)} lines")
    known = np.array([v is not None for v in verdicts])
    if not known.any():
        return probs, anomaly
    new = np.maximum(np.asarray(anomaly, dtype=np.float64), cfg.alert_anomaly)
    return with_anomaly(probs, anomaly, new, known, normal_index)
