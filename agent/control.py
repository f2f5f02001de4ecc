"""Local control socket for the technician CLI (``nanofleet-agent query ...``).

A Unix stream socket whose file permissions decide who may ask (default 0660:
the agent's user and group). One request per connection: a JSON line in, a JSON
line out — the same payloads as the MQTT query topic.

Bounded against a local user who can open connections (the unit has ``TasksMax=64``):
at most :data:`MAX_CONNECTIONS` are served at once (more are answered "busy" by the
accepting thread and closed), each request line is at most ``MAX_QUERY_BYTES`` and must
arrive within :data:`READ_DEADLINE_S` in total (a byte every few seconds does not keep
a handler alive).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from contract.messages import MAX_QUERY_BYTES, QueryResponse, response_bytes

log = logging.getLogger("nanofleet.agent.control")


class DaemonNotRunning(RuntimeError):
    pass


MAX_CONNECTIONS = 8
READ_DEADLINE_S = 5.0
WRITE_TIMEOUT_S = 10.0
BUSY = QueryResponse(ok=False, error=f"busy: {MAX_CONNECTIONS} queries in service, try again")


def read_request(sock: socket.socket, limit: int, deadline_s: float) -> bytes:
    """One request line (up to ``limit`` + 1 bytes: the parser refuses longer ones),
    within ``deadline_s`` for the whole line; b"" if the client sent nothing in time. A
    client that closes its side after the line without a newline (``printf ... | nc -UN``)
    sent it all."""
    data = bytearray()
    closed = False
    end = time.monotonic() + deadline_s
    while b"\n" not in data and len(data) <= limit:
        left = end - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(65536, limit + 1 - len(data)))
        except (OSError, TimeoutError):
            break
        if not chunk:
            closed = True
            break
        data += chunk
    line = bytes(data).split(b"\n", 1)[0]
    return line if (b"\n" in data or len(data) > limit or closed) else b""


class _Handler(socketserver.BaseRequestHandler):
    server: _Server
    request: socket.socket

    def handle(self) -> None:
        try:
            raw = read_request(self.request, MAX_QUERY_BYTES, READ_DEADLINE_S)
            if not raw:
                return  # nothing (complete) in time: close without an answer
            response = self.server.answer(raw)
            self.request.settimeout(WRITE_TIMEOUT_S)
            with contextlib.suppress(OSError):
                self.request.sendall(response_bytes(response) + b"\n")
        finally:
            self.server.slots.release()


ACCEPT_POLL_S = 5.0


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path: str, answer: Callable[[bytes], QueryResponse],
                 on_busy: Callable[[], None]) -> None:
        self.answer = answer
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.on_busy = on_busy
        super().__init__(path, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # One thread per connection, but never more than MAX_CONNECTIONS of them.
        if not self.slots.acquire(blocking=False):
            self.on_busy()
            with contextlib.suppress(OSError):
                request.setblocking(False)  # the accepting thread must never wait
                request.send(BUSY.model_dump_json().encode() + b"\n")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise


class ControlServer:
    def __init__(self, path: Path, mode: int, answer: Callable[[bytes], QueryResponse],
                 on_busy: Callable[[], None] = lambda: None) -> None:
        """``on_busy``: called for each connection answered "busy" (all handlers taken)."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if _listening(path):
                raise RuntimeError(f"{path}: another agent is already listening there")
            path.unlink()
        old = os.umask(0o177)  # never world-accessible, even for an instant
        try:
            self._server = _Server(str(path), answer, on_busy)
        finally:
            os.umask(old)
        os.chmod(path, mode)
        # A long poll interval: serve_forever wakes only for connections (and every
        # ACCEPT_POLL_S); stop() wakes it at once with a connection of its own. The
        # default 0.5 s poll was a good share of an idle agent's wake-ups.
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        args=(ACCEPT_POLL_S,), name="control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            stopper = threading.Thread(target=self._server.shutdown, name="control-stop",
                                       daemon=True)
            stopper.start()
            while stopper.is_alive():  # poke the accept loop so it sees the request
                with contextlib.suppress(OSError), \
                        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(0.2)
                    s.connect(str(self.path))
                stopper.join(0.05)
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


class QueryFailed(RuntimeError):
    """The agent is there but gave no usable answer (it timed out, or its answer was cut)."""


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
            if not os.access(path.parent, os.X_OK):
                # The default socket sits in the agent's 0700 state directory: the group
                # cannot help there (review, December 2026: the hint said it would).
                raise DaemonNotRunning(
                    f"permission denied on the directory {path.parent}: only the agent's "
                    "user can reach a socket there; set [control] socket = "
                    "\"/run/nanofleet/agent.sock\" (group nanofleet) in the agent's config"
                ) from None
            raise DaemonNotRunning(f"permission denied on {path}: run as the agent's user "
                                   "or a member of its group") from None
        except TimeoutError:
            raise QueryFailed(f"{path}: the agent did not accept the connection within "
                              f"{timeout:.0f} s (stuck or overloaded? systemctl status "
                              "nanofleet-agent)") from None
        except OSError as exc:
            raise QueryFailed(f"cannot connect to {path}: {exc}") from None
        # A busy agent answers "busy" and closes at once, maybe before our line is out;
        # its answer is still in our receive buffer, so read it rather than fail.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(json.dumps({"cmd": cmd, "args": args}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise QueryFailed(f"the agent did not answer within {timeout:.0f} s (stuck or "
                                  "overloaded? systemctl status nanofleet-agent)") from None
            if not chunk:
                break
            data += chunk
    if not data:
        raise DaemonNotRunning("the agent closed the connection without answering")
    try:
        doc = json.loads(data)
    except ValueError:
        raise QueryFailed(f"the agent's answer was cut off or is not JSON ({len(data)} bytes; "
                          "did it stop while answering?)") from None
    if not isinstance(doc, dict):
        raise QueryFailed("the agent's answer is not a JSON object")
    return doc
