"""How the journald source reads one journal entry: only the fields a line needs, converted
as python-systemd's ``get_next()`` would, and the trusted fields' values as numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.journal_catalog import parse_message_id


def field(entry: dict[str, Any], name: str) -> str | None:
    """A field's first value as text (bytes decoded, a repeated field's first), or None."""
    value = entry.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


def kernel_boot_id(path: Path = Path("/proc/sys/kernel/random/boot_id")) -> str | None:
    """This boot's id as the journal writes it (32 hex digits), None if unreadable."""
    try:
        return parse_message_id(path.read_text())  # the same 128-bit id format
    except OSError:
        return None


def raw(value: bytes) -> bytes:
    """A converter that keeps a field's bytes as they are."""
    return value


def seconds(realtime_us: int) -> float:
    """A converter from the entry's µs to seconds."""
    return realtime_us / 1_000_000


# The only fields a line needs. Any local process may log an entry with hundreds of
# large fields of its own (journald's native protocol takes them from every user), and
# Reader.get_next() copies every one: one such entry cost ~60 MB of peak memory.
FIELDS_READ = ("MESSAGE", "PRIORITY", "MESSAGE_ID", "_TRANSPORT", "_SYSTEMD_UNIT", "_UID",
                "_PID", "SYSLOG_IDENTIFIER")
# PRIORITY is whatever the logging process says (`logger -p crit`, any user); journald's
# own `_UID` is not. A level is weighed in only for entries of system users (login.defs'
# SYS_UID_MAX): an ordinary user's forged "crit" from "sshd" made its line more likely to
# alert than the real sshd's, with "(logged at crit)" in the reason (review, December 2026).
# (agent.sources.base.is_system_uid). MESSAGE_ID is the logger's claim too, any user's: an
# id is kept only from the program that owns it (the service manager's from _PID 1, _UID 0;
# a core dump's from a systemd-coredump@ instance's _SYSTEMD_UNIT), or www-data could raise
# alerts as systemd (agent.journal_catalog.trusted_message_id; review, December 2026). And
# all of this only where journald wrote those fields: in a container's or an uploaded
# journal whoever wrote the file chose them (JournaldSourceConfig.trust_fields).


def uid_of(entry: dict[str, Any]) -> int | None:
    """The ``_UID`` journald gave the entry: None for an entry without one (the kernel's;
    journald adds it to every process's entry), -1 for one that is not a number (not
    journald's own: never a system user's)."""
    uid = entry.get("_UID")
    if uid is None or isinstance(uid, int):
        return uid
    try:
        return int(uid)
    except (TypeError, ValueError):
        return -1


def next_entry(reader: Any) -> dict[str, Any] | None:
    """Step to the next entry and return its cursor, time and :data:`FIELDS_READ`
    (converted as ``get_next()`` converts them), or None at the end of the journal."""
    if not reader._next(1):
        return None
    entry: dict[str, Any] = {
        "__CURSOR": reader._get_cursor(),
        "__REALTIME_TIMESTAMP": reader._convert_field("__REALTIME_TIMESTAMP",
                                                      reader._get_realtime()),
    }
    for name in FIELDS_READ:
        try:
            raw = reader._get(name)  # the field's first value, cut at data_threshold
        except KeyError:
            continue
        entry[name] = reader._convert_field(name, raw)
    return entry
