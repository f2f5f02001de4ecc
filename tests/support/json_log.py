"""Long JSON application log lines (structured logging): 900 characters and more, where
the fleet server keeps an alert's first 500. What prefix mutes are tested with."""

from __future__ import annotations

import json


def json_line(ts: str, request: str, trace: str, sector: int, took: float,
              msg: str = "disk write failed: I/O error on /dev/mmcblk0p2") -> str:
    """One line of a collector's storage writer: its message early, long fields after."""
    return json.dumps({
        "ts": ts, "level": "error", "logger": "storage.writer", "host": "gw-03",
        "msg": f"{msg} sector {sector}", "request_id": request, "trace_id": trace,
        "span_id": trace[:16], "duration_ms": took, "retries": 3,
        "path": "/var/lib/collector/spool/segment-000042.dat",
        "kernel": f"blk_update_request: I/O error, dev mmcblk0, sector {sector} op 0x1:(WRITE) "
                  "flags 0x800 phys_seg 1 prio class 0",
        "stack": "Traceback (most recent call last): File \"/usr/lib/python3/dist-packages/"
                 "collector/spool.py\", line 211, in flush os.fsync(fd) OSError: [Errno 5] "
                 "Input/output error",
        "config": {"spool_dir": "/var/lib/collector/spool", "segment_bytes": 16777216,
                   "fsync": "always", "compression": "zstd", "upstream":
                   "https://ingest.example.net/v2/batches"},
        "service": "collector", "version": "2.14.3", "pid": 4242})


WRITE = json_line("2026-03-01T10:00:00.123Z", "5f0e1c2a-1111-2222-3333-444455556666",
                  "4bf92f3577b34da6a3ce929d0e0e4736", 123456, 12.5)
"""A write error the shipped model calls storage (0.98)."""
WRITE_AGAIN = json_line("2027-11-30T23:59:59.9+01:00", "00000000-aaaa-bbbb-cccc-dddddddddddd",
                        "0af7651916cd43dd8448eb211c80319c", 7, 1234.75)
"""The same message with other values (shorter ones: the server's cut falls elsewhere)."""
READ = json_line("2026-03-01T10:00:00.123Z", "5f0e1c2a-1111-2222-3333-444455556666",
                 "4bf92f3577b34da6a3ce929d0e0e4736", 123456, 12.5,
                 msg="disk read failed: I/O error on /dev/mmcblk0p2")
"""Another message that begins alike: the same fields, another msg."""
