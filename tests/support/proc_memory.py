"""A process's resident memory, as the kernel counts it (/proc/<pid>/status)."""

from __future__ import annotations

from pathlib import Path


def rss_kib(pid: int) -> int:
    """VmRSS of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")
