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

from agent.journal_catalog import parse_message_id, trusted_message_id
from agent.level_evidence import parse_priority
from agent.metrics import Counters
from agent.sources import journal_boots as boots
from agent.sources.base import LineSink, Source, is_system_uid
from agent.sources.journal_entries import field, kernel_boot_id, next_entry, raw, seconds, uid_of
from agent.sources.journald_config import JournaldSourceConfig, journal_matches

__all__ = ["JournaldSource", "JournaldSourceConfig", "journal_matches"]

log = logging.getLogger("nanofleet.agent.sources")

# Units counted per source in describe() (bounded: a busy journal has many).
MAX_UNITS_TRACKED = 64


# journald's priority for a service's stdout/stderr line without a "<N>" prefix
# (systemd.exec SyslogLevel=, default info).
STDOUT_DEFAULT_PRIORITY = 6


class JournaldSource(Source):
    kind = "journald"

    def __init__(self, name: str, cfg: JournaldSourceConfig, sink: LineSink,
                 counters: Counters, max_line_bytes: int) -> None:
        super().__init__(name, sink, counters, max_line_bytes)
        self.cfg = cfg
        self.matches = journal_matches(cfg)
        # The system journal's trusted fields are journald's; a named file's are its writer's.
        system = not cfg.files and cfg.directory is None
        self.trust_fields = cfg.trusts_fields()
        self._said: set[str] = set()  # what the source logs once
        # This boot (the kernel's id) on the system journal, read boot by boot; None for
        # named journals, which sd-journal orders alone. current_boot is decided at each
        # placement: None while the journal shows nothing of this boot.
        self.kernel_boot = kernel_boot_id() if system else None
        self.current_boot = self.kernel_boot
        # Boots still to read, in order, once the one being read ends; the last is this
        # boot, whose match then stays for the run.
        self._boots_next: list[str] = []
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
        converters = {"MESSAGE": raw, "MESSAGE_ID": raw, "__REALTIME_TIMESTAMP": seconds}
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
        if not self.trust_fields and "untrusted fields" not in self._said:
            self._said.add("untrusted fields")
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
        self._boots_next = []
        self.current_boot = self.kernel_boot
        if not self._boot_held(reader, self.kernel_boot):
            # Not this kernel's journal (a container reading its host's, whose boot id
            # nspawn hides), or its files are not readable now: kept to this boot the
            # source would read nothing. sd-journal's order, until the next placement.
            self._boot_order_off(f"the journal shows nothing of this boot ({self.kernel_boot})")
        if self.cursor is not None:
            try:
                if not self._boot_held(reader, boots.cursor_boot(self.cursor)):
                    # The journal holds nothing of the cursor's boot: a volatile journal
                    # after a reboot, or a boot vacuumed away (entries go oldest first), so
                    # all it holds came later. Placed by time instead, a reboot's lines were
                    # skipped while an RTC-less device's clock was behind the cursor's
                    # (review, December 2026).
                    self.counters.inc("journal_cursor_gone")
                    log.info("journal source %s: the journal holds nothing of the saved "
                             "cursor's boot: reading all it holds", self.name)
                    self._read_all(reader)
                    return
                self._resume(reader, self.cursor)
                self.state = "resumed at cursor"
                return
            except ValueError as exc:  # sd-journal refuses the cursor itself
                # Only that drops the cursor: an OSError (EIO on a worn SD card, EMFILE)
                # goes to the caller, which retries from the same cursor; dropping it
                # there lost every line between it and now (review, December 2026).
                self.last_error = (f"saved cursor not usable ({exc}); "
                                   f"starting at the {self.cfg.start_at}")
                self.counters.inc("source_errors")
                self.cursor = None  # do not trip over it again when reopening
                self._boots_next = []
        if self.cfg.start_at == "beginning":
            self._read_all(reader)
        else:
            self._read_boot(reader, self.current_boot)
            reader.seek_tail()
            reader.get_previous()  # stand on the last entry: the next one is new

    def _resume(self, reader: Any, cursor: str) -> None:
        """Place the reader after ``cursor``. On the system journal, boot by boot
        (:mod:`agent.sources.journal_boots`): the rest of the cursor's boot — its entries
        ordered by its own monotonic clock, so a cursor entry lost there (a power cut
        before a write reached the disk, /run flushed to /var) is placed, not the boot
        re-read — then the boots after it, then this boot, whose match stays: a restart
        in this boot placed by time would read an earlier boot again."""
        place = boots.parse_cursor(cursor)
        if self.current_boot is not None and place is not None:
            if place.boot != self.current_boot:
                heads = self._boot_heads(reader)
                if self._heads_complete(heads, place.boot, self.current_boot):
                    later = boots.boots_after(place, heads, self.current_boot)
                    self._boots_next = [*later, self.current_boot]
            if self.current_boot is not None:
                self._read_boot(reader, place.boot)
        reader.seek_cursor(cursor)
        # seek_cursor lands on the cursor's entry if it still exists (skip it: it was
        # read), else on the next one: seek again, so that the next step reads it (a step
        # back missed it when no earlier entry matched, e.g. the boot's first: review).
        # The cursor's entry is told by its boot, times and hash, not its sequence: the
        # /run -> /var flush copies it into another (sd-journal's test_cursor: read twice).
        entry = next_entry(reader)
        if entry is not None and not boots.same_entry(cursor, entry["__CURSOR"]):
            reader.seek_cursor(cursor)

    def _read_all(self, reader: Any) -> None:
        """From the journal's head; on the system journal boot by boot, this boot last,
        so that the cursor ends in this boot (sd-journal's time order could leave it in
        an earlier boot, and a restart would then read this one again)."""
        heads = self._boot_heads(reader) if self.current_boot is not None else []
        if self.current_boot is None or not self._heads_complete(heads, self.current_boot):
            self._read_boot(reader, None)
        else:
            first, *self._boots_next = [*boots.boots_in_order(heads, self.current_boot),
                                        self.current_boot]
            self._read_boot(reader, first)
        reader.seek_head()

    def _heads_complete(self, heads: list[boots.BootHead], *wanted: str) -> bool:
        """Whether the boots found include ``wanted`` (both held: checked before). If not,
        the enumeration stopped early (python-systemd's query_unique ends silently at a
        damaged file, hiding the boots of the files after it: review), so the boot order
        is not to be trusted: sd-journal's, for this placement."""
        found = {h.boot for h in heads}
        if all(b in found for b in wanted):
            return True
        self.counters.inc("source_errors")
        self._boot_order_off("the boots found miss the cursor's or this one (a damaged "
                             "journal file?)")
        return False

    def _boot_order_off(self, why: str) -> None:
        """Read this placement in sd-journal's order, and say so (once per reason)."""
        self.current_boot = None
        if why not in self._said:
            self._said.add(why)
            log.warning("journal source %s: %s: reading in sd-journal's order (a reboot's "
                        "first lines may be skipped)", self.name, why)

    def _read_boot(self, reader: Any, boot: str | None) -> None:
        """The source's matches, and only ``boot``'s entries (None: any boot's)."""
        reader.flush_matches()
        self.matches.apply(reader, *([f"_BOOT_ID={boot}"] if boot else []))

    def _boot_heads(self, reader: Any) -> list[boots.BootHead]:
        """Each boot's first entry (whatever the source's matches). One seek per boot:
        a few milliseconds for hundreds of boots, done when a resume crosses boots."""
        heads: list[boots.BootHead] = []
        reader.flush_matches()
        try:
            for value in reader.query_unique("_BOOT_ID"):
                boot = parse_message_id(str(value))  # the same 128-bit id format
                if boot is None:
                    continue
                reader.add_match(f"_BOOT_ID={boot}")
                reader.seek_head()
                place = boots.parse_cursor(reader._get_cursor()) if reader._next(1) else None
                reader.flush_matches()
                if place is not None:
                    heads.append(place)
        finally:
            self._read_boot(reader, None)
        return heads

    def _boot_held(self, reader: Any, boot: str | None) -> bool:
        """Whether the journal holds any entry of ``boot``, whatever the matches; an
        unknown boot (None) counts as held."""
        if boot is None:
            return True
        reader.flush_matches()
        try:
            reader.add_match(f"_BOOT_ID={boot}")
            reader.seek_head()
            return bool(reader._next(1))
        finally:
            self._read_boot(reader, None)

    def _follow(self, reader: Any) -> None:
        live = not self.cfg.files  # a files= reader cannot be woken by inotify
        while not self._stop.is_set():
            got = 0
            while not self._stop.is_set():
                entry = next_entry(reader)
                if entry is None and self._boots_next:
                    # The boot being read has ended: on with the next, from its head.
                    self._read_boot(reader, self._boots_next.pop(0))
                    reader.seek_head()
                    continue
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
        if level == STDOUT_DEFAULT_PRIORITY and field(entry, "_TRANSPORT") == "stdout":
            # A service's stdout/stderr line is logged at info unless the program put a
            # "<3>" prefix on it: there, info says nothing about what the program meant.
            level = None
        # In a journal whose writer is not trusted, _UID is that writer's choice too: not
        # passed on, or forged uids would split one alert into many (the repeat filter
        # groups per uid) and decide the "not a system user" note (review, December 2026).
        uid = uid_of(entry) if self.trust_fields else None
        if not (self.trust_fields and is_system_uid(uid)):
            if level is not None:
                self.levels_not_weighed += 1
            level = None
        message_id = trusted_message_id(
            parse_message_id(entry.get("MESSAGE_ID")), entry.get("_UID"), entry.get("_PID"),
            entry.get("_SYSTEMD_UNIT")) if self.trust_fields else None
        if not self.emit(message, entry.get("__REALTIME_TIMESTAMP", 0.0), cursor,
                         level=level, uid=uid, message_id=message_id,
                         program=(field(entry, "SYSLOG_IDENTIFIER") or "")[:64] or None):
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
                     "trust_fields": self.trust_fields,
                     "boots_to_read": len(self._boots_next)})
        return info
