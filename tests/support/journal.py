"""Write real journal files without journald: export format -> systemd-journal-remote.

Each call to :meth:`JournalWriter.append` runs ``systemd-journal-remote -o FILE -``,
which appends to the file (its name must end in ``.journal``).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
BOOT_ID = "0123456789abcdef0123456789abcdef"


def journal_remote_available() -> bool:
    return Path(JOURNAL_REMOTE).exists() or shutil.which("systemd-journal-remote") is not None


def export_entry(fields: Mapping[str, str | bytes]) -> bytes:
    """One entry in journal export format; values with newlines or non-UTF-8 bytes use
    the binary form (name, newline, little-endian 64-bit length, data, newline)."""
    out = bytearray()
    for name, value in fields.items():
        data = value.encode() if isinstance(value, str) else value
        text_safe = b"\n" not in data
        if text_safe:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                text_safe = False
        if text_safe:
            out += name.encode() + b"=" + data + b"\n"
        else:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return bytes(out) + b"\n"


# When the fixtures' one boot began (realtime, µs): before any writer's first entry.
BOOT_AT_US = 1_600_000_000_000_000


class JournalWriter:
    """Appends entries to one journal file; realtime/monotonic stamps increase by 1 ms."""

    def __init__(self, path: Path, start_us: int = 1_700_000_000_000_000,
                 boot_id: str = BOOT_ID) -> None:
        if start_us <= BOOT_AT_US:
            raise ValueError(f"start_us must be after the fixtures' boot ({BOOT_AT_US})")
        if not path.name.endswith(".journal"):
            raise ValueError(f"journal file name must end in .journal: {path}")
        self.path = path
        self.seq = 0
        self.start_us = start_us
        self.boot_id = boot_id

    def append(self, entries: Sequence[Mapping[str, str | bytes]]) -> None:
        blob = bytearray()
        for fields in entries:
            self.seq += 1
            full: dict[str, str | bytes] = {
                "__REALTIME_TIMESTAMP": str(self.start_us + self.seq * 1000),
                # One boot for every writer: its monotonic clock follows the realtime one,
                # so two writers' files agree on the order of their entries.
                "__MONOTONIC_TIMESTAMP": str(self.start_us + self.seq * 1000 - BOOT_AT_US),
                "_BOOT_ID": self.boot_id,
                "PRIORITY": "6",
            }
            full.update(fields)
            blob += export_entry(full)
        binary = shutil.which("systemd-journal-remote") or JOURNAL_REMOTE
        proc = subprocess.run([binary, "-o", str(self.path), "-"], input=bytes(blob),
                              capture_output=True, timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"systemd-journal-remote failed ({proc.returncode}): "
                               f"{proc.stderr.decode(errors='replace')}")

    def messages(self, texts: Sequence[str], unit: str = "pump.service",
                 **extra: str) -> None:
        self.append([{"MESSAGE": t, "_SYSTEMD_UNIT": unit, **extra} for t in texts])
