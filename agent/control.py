"""Local control socket for the technician CLI (``nanofleet-agent query ...``).

A Unix stream socket whose file permissions decide who may ask (default 0660:
the agent's user and group). One request per connection: a JSON line in, a JSON
line out — the same payloads as the MQTT query topic.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contract.messages import MAX_QUERY_BYTES, QueryResponse

log = logging.getLogger("nanofleet.agent.control")


class DaemonNotRunning(RuntimeError):
    pass


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.connection.settimeout(10)
        try:
            raw = self.rfile.readline(MAX_QUERY_BYTES + 1)
        except OSError:
            return
        response = self.server.answer(raw)
        with contextlib.suppress(OSError):
            self.wfile.write(response.model_dump_json().encode() + b"\n")


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, answer: Callable[[bytes], QueryResponse]) -> None:
        self.answer = answer
        super().__init__(path, _Handler)


class ControlServer:
    def __init__(self, path: Path, mode: int, answer: Callable[[bytes], QueryResponse]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if _listening(path):
                raise RuntimeError(f"{path}: another agent is already listening there")
            path.unlink()
        old = os.umask(0o177)  # never world-accessible, even for an instant
        try:
            self._server = _Server(str(path), answer)
        finally:
            os.umask(old)
        os.chmod(path, mode)
        self._thread = threading.Thread(target=self._server.serve_forever, name="control",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def ask(path: Path, cmd: str, args: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
    """Send one query to the daemon at ``path``; raise DaemonNotRunning with a hint."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except FileNotFoundError:
            raise DaemonNotRunning(f"the agent is not running (no socket at {path})") from None
        except ConnectionRefusedError:
            raise DaemonNotRunning(f"the agent is not running (stale socket {path})") from None
        except PermissionError:
            raise DaemonNotRunning(f"permission denied on {path}: run as the agent's user "
                                   "or a member of its group") from None
        s.sendall(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise DaemonNotRunning("the agent closed the connection without answering")
    doc: dict[str, Any] = json.loads(data)
    return doc
