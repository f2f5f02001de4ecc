"""Read the systemd journal (or given journal files) as lines, resuming by cursor.

The line text is the entry's MESSAGE (raw bytes: journald stores whatever a
program wrote, valid UTF-8 or not; :func:`agent.sources.base.sanitize` bounds and
decodes it), the time its ``__REALTIME_TIMESTAMP``, its level the entry's ``PRIORITY``
(weighed in by :mod:`agent.level_evidence`). The checkpoint is the entry's
``__CURSOR``: on restart we seek to it and skip that entry itself (seeking by time
would re-read or miss entries with equal timestamps).

systemd-python is imported when the source starts, so the agent runs without it
as long as no journald source is configured.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from agent.journal_catalog import logged_by_service_manager, parse_message_id
from agent.level_evidence import parse_priority
from agent.metrics import Counters
from agent.sources.base import LineSink, Source, is_system_uid
from agent.sources.journald_config import JournaldSourceConfig, journal_matches

__all__ = ["JournaldSource", "JournaldSourceConfig", "journal_matches"]

log = logging.getLogger("nanofleet.agent.sources")

# Units counted per source in describe() (bounded: a busy journal has many).
MAX_UNITS_TRACKED = 64


# journald's priority for a service's stdout/stderr line without a "<N>" prefix
# (systemd.exec SyslogLevel=, default info).
STDOUT_DEFAULT_PRIORITY = 6


def _field(entry: dict[str, Any], name: str) -> str | None:
    value = entry.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else None


def _raw(value: bytes) -> bytes:
    return value


def _seconds(realtime_us: int) -> float:
    return realtime_us / 1_000_000


# The only fields a line needs. Any local process may log an entry with hundreds of
# large fields of its own (journald's native protocol takes them from every user), and
# Reader.get_next() copies every one: one such entry cost ~60 MB of peak memory.
_FIELDS_READ = ("MESSAGE", "PRIORITY", "MESSAGE_ID", "_TRANSPORT", "_SYSTEMD_UNIT", "_UID",
                "_PID")
# PRIORITY is whatever the logging process says (`logger -p crit`, any user); journald's
# own `_UID` is not. A level is weighed in only for entries of system users (login.defs'
# SYS_UID_MAX): an ordinary user's forged "crit" from "sshd" made its line more likely to
# alert than the real sshd's, with "(logged at crit)" in the reason (review, December 2026).
# (agent.sources.base.is_system_uid). MESSAGE_ID is the logger's claim too, any user's: it
# is kept only for the service manager's own entries (_PID 1, _UID 0), or www-data could
# raise alerts as systemd (agent.journal_catalog; review, December 2026). And all of this
# only where journald wrote those fields: in a container's or an uploaded journal whoever
# wrote the file chose them (JournaldSourceConfig.trust_fields).


def _uid(entry: dict[str, Any]) -> int | None:
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
    """Step to the next entry and return its cursor, time and :data:`_FIELDS_READ`
    (converted as ``get_next()`` converts them), or None at the end of the journal."""
    if not reader._next(1):
        return None
    entry: dict[str, Any] = {
        "__CURSOR": reader._get_cursor(),
        "__REALTIME_TIMESTAMP": reader._convert_field("__REALTIME_TIMESTAMP",
                                                      reader._get_realtime()),
    }
    for name in _FIELDS_READ:
        try:
            raw = reader._get(name)  # the field's first value, cut at data_threshold
        except KeyError:
            continue
        entry[name] = reader._convert_field(name, raw)
    return entry


class JournaldSource(Source):
    kind = "journald"

    def __init__(self, name: str, cfg: JournaldSourceConfig, sink: LineSink,
                 counters: Counters, max_line_bytes: int) -> None:
        super().__init__(name, sink, counters, max_line_bytes)
        self.cfg = cfg
        self.matches = journal_matches(cfg)
        # The system journal's trusted fields are journald's; a named file's are its writer's.
        system = not cfg.files and cfg.directory is None
        self.trust_fields = system if cfg.trust_fields is None else cfg.trust_fields
        self._said_untrusted = False
        self.cursor: str | None = None   # the last entry emitted
        self.state = "not started"
        self.units_seen: dict[str, int] = {}
        self.levels_not_weighed = 0  # entries of ordinary users: their PRIORITY is a claim
        self.entries_skipped = 0         # entries without a MESSAGE
        self._reader: Any = None         # opened and positioned by start()

    def start(self, checkpoint: str | None) -> None:
        """Open the journal and fix the starting position before returning, so that
        (with start_at=end) an entry logged right after start() is read."""
        self.cursor = checkpoint
        self._reader = None
        try:
            journal = self._journal_module()
            reader = self._open(journal)
            try:
                self._position(reader)
            except OSError:
                reader.close()
                raise
            self._reader = reader
        except (OSError, RuntimeError) as exc:  # the thread retries (or reports) it
            self.last_error = f"cannot open the journal: {exc}"
        super().start(checkpoint)

    @staticmethod
    def _journal_module() -> Any:
        try:
            from systemd import journal
        except ImportError:
            raise RuntimeError("the journald source needs systemd-python "
                               "(install the 'systemd' extra)") from None
        return journal

    def _run(self, checkpoint: str | None) -> None:
        journal = self._journal_module()
        reader, self._reader = self._reader, None
        while not self._stop.is_set():
            try:
                if reader is None:
                    reader = self._open(journal)
                    self._position(reader)
            except OSError as exc:
                if reader is not None:
                    reader.close()
                reader = None
                self._failed(f"cannot open the journal: {exc}")
                continue
            try:
                self._follow(reader)
            except OSError as exc:  # a vanished or corrupt file: reopen at our cursor
                self._failed(f"reading the journal: {exc}")
            finally:
                reader.close()
                reader = None

    def _failed(self, message: str) -> None:
        self.last_error = message
        self.state = "retrying after an error"
        self.counters.inc("source_errors")
        self._stop.wait(max(1.0, self.cfg.poll_interval_s))

    def _open(self, journal: Any) -> Any:
        # MESSAGE_ID raw: python-systemd's own converter makes a UUID of it and gives up
        # (bytes) on anything else; agent.journal_catalog.parse_message_id takes both.
        converters = {"MESSAGE": _raw, "MESSAGE_ID": _raw, "__REALTIME_TIMESTAMP": _seconds}
        if self.cfg.files:
            reader = journal.Reader(files=[str(p) for p in self.cfg.files], converters=converters)
        elif self.cfg.directory is not None:
            reader = journal.Reader(path=str(self.cfg.directory), converters=converters)
        else:
            reader = journal.Reader(converters=converters)
        # Fields longer than this may come back cut (a memory bound); the line is cut
        # at max_line_bytes anyway, so keep a little more to see that it was longer.
        reader.data_threshold = max(64 * 1024, self.max_line_bytes + 64)
        self.matches.apply(reader)
        self._check_readable()
        if not self.trust_fields and not self._said_untrusted:
            self._said_untrusted = True
            log.info("journal source %s reads %s: the entries' _UID and _PID are whatever "
                     "wrote them, so levels and catalog ids are not weighed and alerts are "
                     "not grouped per uid (trust_fields = true if its writer is trusted)",
                     self.name, "named files" if self.cfg.files else self.cfg.directory)
        return reader

    def _journal_files(self) -> list[Path]:
        if self.cfg.files:
            return [Path(p) for p in self.cfg.files]
        roots = ([Path(self.cfg.directory)] if self.cfg.directory is not None
                 else [Path("/run/log/journal"), Path("/var/log/journal")])
        found: list[Path] = []
        for root in roots:
            with contextlib.suppress(OSError):
                found += [*root.glob("*.journal"), *root.glob("*/*.journal")]
        return found

    def _check_readable(self) -> None:
        """sd-journal skips the files it may not read without a word: the source would say
        "following" and read nothing (review, December 2026: a hand-made unit without the
        journal's group). Say which ones, and how to fix it."""
        files = self._journal_files()
        unreadable = [f for f in files if not os.access(f, os.R_OK)]
        if not unreadable:
            return
        self.last_error = (f"{len(unreadable)} of {len(files)} journal files are not "
                           f"readable by uid {os.geteuid()} (e.g. {unreadable[0]}): their "
                           "entries are not read; add the user to group systemd-journal "
                           "(the packaged unit's SupplementaryGroups= does)")
        self.counters.inc("source_errors")
        log.warning("%s", self.last_error)

    def _position(self, reader: Any) -> None:
        if self.cursor is not None:
            try:
                if not self._cursor_boot_held(reader):
                    # The journal holds nothing of the cursor's boot: a volatile journal
                    # after a reboot, or a boot vacuumed away (entries go oldest first), so
                    # all it holds came later. Placed by time instead, a reboot's lines were
                    # skipped while an RTC-less device's clock was behind the cursor's
                    # (review, December 2026). Within the cursor's boot the exact placement
                    # stays: a boot's entries are ordered by its monotonic clock, and a
                    # cursor entry lost there (a power cut before a write reached the disk,
                    # /run flushed to /var) must not re-read the boot.
                    self.counters.inc("journal_cursor_gone")
                    log.info("journal source %s: the journal holds nothing of the saved "
                             "cursor's boot: reading all it holds", self.name)
                    reader.seek_head()
                    return
                reader.seek_cursor(self.cursor)
                # seek_cursor lands on the cursor's entry if it still exists (skip it:
                # it was read), else on the next one (keep it).
                if next_entry(reader) and not reader.test_cursor(self.cursor):
                    reader.get_previous()
                self.state = "resumed at cursor"
                return
            except (OSError, ValueError) as exc:
                self.last_error = (f"saved cursor not usable ({exc}); "
                                   f"starting at the {self.cfg.start_at}")
                self.counters.inc("source_errors")
                self.cursor = None  # do not trip over it again when reopening
        if self.cfg.start_at == "beginning":
            reader.seek_head()
        else:
            reader.seek_tail()
            reader.get_previous()  # stand on the last entry: the next one is new

    def _cursor_boot_held(self, reader: Any) -> bool:
        """Whether the journal holds any entry of the saved cursor's boot (its ``b=``),
        whatever the matches; a cursor without one counts as held (placed as before)."""
        assert self.cursor is not None
        fields = dict(part.split("=", 1) for part in self.cursor.split(";") if "=" in part)
        boot = parse_message_id(fields.get("b"))  # a boot id: the same 128-bit id format
        if boot is None:
            return True
        reader.flush_matches()
        try:
            reader.add_match(f"_BOOT_ID={boot}")
            reader.seek_head()
            return bool(reader._next(1))
        finally:
            reader.flush_matches()
            self.matches.apply(reader)

    def _follow(self, reader: Any) -> None:
        live = not self.cfg.files  # a files= reader cannot be woken by inotify
        while not self._stop.is_set():
            got = 0
            while not self._stop.is_set():
                entry = next_entry(reader)
                if entry is None:
                    break
                got += 1
                self._emit_entry(entry)
            if got:
                continue
            self.state = "following"
            if live:
                reader.wait(self.cfg.poll_interval_s)
            else:
                self._stop.wait(self.cfg.poll_interval_s)

    def _emit_entry(self, entry: dict[str, Any]) -> None:
        cursor = entry["__CURSOR"]
        message = entry.get("MESSAGE")
        if isinstance(message, list):  # a field may repeat; the first is the message
            message = message[0] if message else None
        if isinstance(message, str):   # only if a converter did not apply
            message = message.encode()
        if not message:
            self.entries_skipped += 1
            return
        level = parse_priority(entry.get("PRIORITY"))
        if level == STDOUT_DEFAULT_PRIORITY and _field(entry, "_TRANSPORT") == "stdout":
            # A service's stdout/stderr line is logged at info unless the program put a
            # "<3>" prefix on it: there, info says nothing about what the program meant.
            level = None
        # In a journal whose writer is not trusted, _UID is that writer's choice too: not
        # passed on, or forged uids would split one alert into many (the repeat filter
        # groups per uid) and decide the "not a system user" note (review, December 2026).
        uid = _uid(entry) if self.trust_fields else None
        message_id = parse_message_id(entry.get("MESSAGE_ID"))
        if not (self.trust_fields and is_system_uid(uid)):
            if level is not None:
                self.levels_not_weighed += 1
            level = None
        if not (self.trust_fields
                and logged_by_service_manager(entry.get("_UID"), entry.get("_PID"))):
            message_id = None
        if not self.emit(message, entry.get("__REALTIME_TIMESTAMP", 0.0), cursor,
                         level=level, uid=uid, message_id=message_id):
            return  # stopped while the sink was full; the cursor stays at the last line
        self.cursor = cursor
        unit = entry.get("_SYSTEMD_UNIT")
        if isinstance(unit, str) and (unit in self.units_seen
                                      or len(self.units_seen) < MAX_UNITS_TRACKED):
            self.units_seen[unit] = self.units_seen.get(unit, 0) + 1

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        where = ([str(p) for p in self.cfg.files] if self.cfg.files
                 else str(self.cfg.directory) if self.cfg.directory else "system journal")
        info.update({"journal": where, "matches": self.matches.describe(), "state": self.state,
                     "cursor": self.cursor, "units": dict(self.units_seen),
                     "entries_without_message": self.entries_skipped,
                     "levels_not_weighed": self.levels_not_weighed,
                     "trust_fields": self.trust_fields})
        return info
