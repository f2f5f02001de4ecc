"""A real HTTP server on 127.0.0.1 serving a repository directory, with Range
support and switchable misbehaviour (for attack and resume tests).

Faults are keyed by a URL path suffix:

- ``replace``: serve these bytes instead of the file (tampering, replay, mix-and-match);
- ``cut_after``: announce the full length but close the connection after this
  absolute offset (a flaky link; resumes must continue from there);
- ``endless``: after the real content, keep sending zeros (endless data);
- ``ignore_range``: answer 200 with the whole file even to a Range request;
- ``drip``: send the body 16 bytes at a time, this many seconds apart (a slow-loris
  server that never stays silent long enough for a read timeout).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"^bytes=(\d+)-$")
ENDLESS_CAP = 32 << 20  # stop "endless" streams eventually if a client never gives up


@dataclass
class Fault:
    replace: bytes | None = None
    cut_after: int | None = None
    endless: bool = False
    ignore_range: bool = False
    drip: float | None = None
    times: int | None = None  # apply this many times, then serve normally (None: always)


@dataclass
class RequestLog:
    path: str
    range: str | None
    status: int


@dataclass
class RepoServer:
    root: Path
    faults: dict[str, Fault] = field(default_factory=dict)
    requests: list[RequestLog] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> RepoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> RepoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _fault(self, path: str) -> Fault | None:
        with self._lock:
            for suffix, fault in self.faults.items():
                if path.endswith(suffix):
                    if fault.times is not None:
                        if fault.times <= 0:
                            continue
                        fault.times -= 1
                    return fault
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = unquote(urlsplit(h.path).path)
        rng = h.headers.get("Range")
        fault = self._fault(path)
        target = (self.root / path.lstrip("/")).resolve()
        content: bytes | None = None
        if fault and fault.replace is not None:
            content = fault.replace
        elif target.is_relative_to(self.root.resolve()) and target.is_file():
            content = target.read_bytes()
        if content is None:
            self._send_status(h, path, rng, 404)
            return
        start = 0
        m = _RANGE.match(rng or "")
        if m and not (fault and fault.ignore_range):
            start = int(m.group(1))
            if start >= len(content):
                self._send_status(h, path, rng, 416)
                return
        status = 206 if start else 200
        with self._lock:
            self.requests.append(RequestLog(path, rng, status))
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        if fault and fault.endless:
            h.send_header("Connection", "close")
            h.end_headers()
            self._write(h, content[start:])
            sent = len(content) - start
            while sent < ENDLESS_CAP and self._write(h, b"\0" * 65536):
                sent += 65536
            h.close_connection = True
            return
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        h.send_header("Content-Length", str(len(content) - start))
        if fault and fault.cut_after is not None:
            h.send_header("Connection", "close")
            h.end_headers()
            self._write(h, content[start:max(start, fault.cut_after)])
            h.close_connection = True
            return
        h.end_headers()
        if fault and fault.drip is not None:
            for offset in range(start, len(content), 16):
                if not self._write(h, content[offset:offset + 16]):
                    return
                time.sleep(fault.drip)
            return
        self._write(h, content[start:])

    @staticmethod
    def _write(h: BaseHTTPRequestHandler, data: bytes) -> bool:
        try:
            h.wfile.write(data)
            h.wfile.flush()
            return True
        except OSError:
            return False

    def _send_status(self, h: BaseHTTPRequestHandler, path: str, rng: str | None,
                     status: int) -> None:
        with self._lock:
            self.requests.append(RequestLog(path, rng, status))
        h.send_response(status)
        h.send_header("Content-Length", "0")
        h.end_headers()
