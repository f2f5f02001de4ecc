"""How a device under test reaches the broker, and how the rig cuts that link.

- :class:`DirectLink`: 127.0.0.1, nothing to cut.
- :class:`NamespaceLink`: the device runs in its own network namespace joined to
  this one by a veth pair (real kernel networking; needs root and iproute2). A cut
  takes the host end of the veth down: packets stop both ways, TCP connections are
  not closed, both ends notice by keep-alive, exactly as with a pulled cable.
- :class:`ProxyLink`: the fallback without root: the device talks to a TCP relay in
  the rig. A cut freezes the relay (no byte forwarded, no connection closed, new
  connections held), which the endpoints see as a silent link, as above.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import select
import shutil
import socket
import subprocess
import threading
from abc import ABC, abstractmethod
from typing import Self


class Link(ABC):
    """The device's way to the broker."""

    kind = "abstract"

    def __init__(self, broker_port: int) -> None:
        self.broker_port = broker_port

    @property
    @abstractmethod
    def broker_host(self) -> str:
        """Address the device connects to."""

    @property
    def device_port(self) -> int:
        """Port the device connects to."""
        return self.broker_port

    def listen_address(self) -> str | None:
        """An extra address the broker must listen on for this device (or None)."""
        return None

    def command_prefix(self) -> list[str]:
        """Prefix of the command line that runs the device's agent."""
        return []

    def cut(self) -> None:
        raise RuntimeError(f"a {self.kind} link cannot be cut")

    def restore(self) -> None:
        raise RuntimeError(f"a {self.kind} link cannot be cut")

    def close(self) -> None:  # noqa: B027 - most links have nothing to undo
        """Undo what the link set up."""

    def describe(self) -> str:
        return self.kind


class DirectLink(Link):
    kind = "direct"

    @property
    def broker_host(self) -> str:
        return "127.0.0.1"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be used here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"nf-hilprobe-{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _free_net() -> str:
    """A /30 prefix ``10.X.Y.`` (200 <= X < 255) that no address or route here uses."""
    used = _ip("-4", "addr").stdout + _ip("-4", "route").stdout
    for _ in range(100):
        net = f"10.{random.randrange(200, 255)}.{random.randrange(256)}."
        if net not in used:
            return net
    raise RuntimeError("no free 10.200-254.x.0/30 network for a veth pair")


class VethNamespace:
    """A network namespace joined to this one by a veth pair, on a /30 that nothing here
    uses: ``host_ip`` is this side, ``device_ip`` the namespace's. The namespace has its
    own loopback, so the host's 127.0.0.1 services do not exist from inside it.

    ``open()`` (or ``with``) makes it; ``close()`` removes it."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._name(secrets.token_hex(4))
        net = _free_net()
        self.host_ip, self.device_ip = f"{net}1", f"{net}2"
        self.extra_ifs: list[str] = []
        self._made = False  # whether the namespace of this name is ours to delete

    def _name(self, tag: str) -> None:
        # 32 random bits: rigs and test workers make namespaces side by side (a process id
        # and three random digits collided with another run's namespace).
        self.name = f"{self._prefix}-{tag}"
        self.host_if, self.dev_if = f"nfh{tag}", f"nfd{tag}"  # at most 15 characters

    def open(self) -> None:
        for _ in range(3):
            added = _ip("netns", "add", self.name, check=False)
            if added.returncode == 0:
                break
            if "File exists" not in added.stderr:
                raise RuntimeError(f"network namespace set-up failed: {added.stderr}")
            self._name(secrets.token_hex(4))  # someone else's: never touch it, pick another
        else:
            raise RuntimeError("network namespace set-up failed: three names were taken")
        self._made = True
        try:
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.dev_if)
            _ip("link", "set", self.dev_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            self.run_ip("addr", "add", f"{self.device_ip}/30", "dev", self.dev_if)
            self.run_ip("link", "set", self.dev_if, "up")
            self.run_ip("link", "set", "lo", "up")
        except subprocess.CalledProcessError as exc:
            self.close()
            raise RuntimeError(f"network namespace set-up failed: {exc.stderr}") from None

    def close(self) -> None:
        if not self._made:  # a name we did not create may be another rig's namespace
            return
        self._made = False
        _ip("netns", "del", self.name, check=False)  # takes the veth pairs with it
        for host_if in (self.host_if, *self.extra_ifs):
            _ip("link", "del", host_if, check=False)

    def add_pair(self, letter: str) -> tuple[str, str]:
        """A second veth pair into the namespace (a device's management interface, which
        a cut of the first one leaves up); ``(host_ip, device_ip)`` on its own /30."""
        host_if, dev_if = f"nf{letter}h{self.host_if[3:]}", f"nf{letter}d{self.host_if[3:]}"
        net = _free_net()
        try:
            _ip("link", "add", host_if, "type", "veth", "peer", "name", dev_if)
            self.extra_ifs.append(host_if)
            _ip("link", "set", dev_if, "netns", self.name)
            _ip("addr", "add", f"{net}1/30", "dev", host_if)
            _ip("link", "set", host_if, "up")
            self.run_ip("addr", "add", f"{net}2/30", "dev", dev_if)
            self.run_ip("link", "set", dev_if, "up")
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"veth pair set-up failed: {exc.stderr}") from None
        return f"{net}1", f"{net}2"

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run_ip(self, *args: str) -> None:
        """Run ``ip args`` inside the namespace."""
        _ip("netns", "exec", self.name, "ip", *args)

    def prefix(self) -> list[str]:
        """Command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.name]


class NamespaceLink(Link):
    kind = "namespace"

    def __init__(self, broker_port: int) -> None:
        super().__init__(broker_port)
        self.ns = VethNamespace("nf-hil")
        self.ns.open()

    @property
    def broker_host(self) -> str:
        return self.ns.host_ip

    def listen_address(self) -> str | None:
        return self.ns.host_ip

    def command_prefix(self) -> list[str]:
        return self.ns.prefix()

    def cut(self) -> None:
        _ip("link", "set", self.ns.host_if, "down")

    def restore(self) -> None:
        _ip("link", "set", self.ns.host_if, "up")

    def close(self) -> None:
        self.ns.close()

    def describe(self) -> str:
        ns = self.ns
        return (f"namespace {ns.name}: device {ns.device_ip} -> broker {ns.host_ip} "
                f"over veth {ns.host_if}; a cut sets {ns.host_if} down")


class ProxyLink(Link):
    """A TCP relay 127.0.0.1:<own port> -> 127.0.0.1:<broker port>, freezable."""

    kind = "proxy"

    def __init__(self, broker_port: int) -> None:
        super().__init__(broker_port)
        self._up = threading.Event()
        self._up.set()
        self._closed = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self._port = int(self._server.getsockname()[1])
        self._threads: list[threading.Thread] = []
        self._live: set[socket.socket] = set()  # both ends of every relayed connection
        self._live_lock = threading.Lock()
        self._accept = threading.Thread(target=self._accept_loop, name="hil-proxy", daemon=True)
        self._accept.start()

    @property
    def broker_host(self) -> str:
        return "127.0.0.1"

    @property
    def device_port(self) -> int:
        return self._port

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except (TimeoutError, OSError):
                continue
            t = threading.Thread(target=self._relay, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _relay(self, device: socket.socket) -> None:
        # A connection made while the link is cut waits, as a SYN would be retried.
        while not self._up.wait(0.1):
            if self._closed.is_set():
                device.close()
                return
        try:
            broker = socket.create_connection(("127.0.0.1", self.broker_port), timeout=5)
        except OSError:
            device.close()
            return
        pair = {device: broker, broker: device}
        with self._live_lock:
            self._live |= {device, broker}
        try:
            while not self._closed.is_set():
                if not self._up.is_set():  # frozen: nothing moves, nothing is closed
                    self._up.wait(0.1)
                    continue
                readable, _, _ = select.select(list(pair), [], [], 0.1)
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        return
                    pair[src].sendall(data)
        except OSError:
            return
        finally:
            with self._live_lock:
                self._live -= {device, broker}
            device.close()
            broker.close()

    def cut(self) -> None:
        self._up.clear()

    def drop(self) -> None:
        """Reset every relayed connection now (both sides see the socket close; the broker
        sends the client's Last Will), as a router reboot would. New ones go through."""
        with self._live_lock:
            live = list(self._live)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed.set()
        self._up.set()
        self._server.close()
        self._accept.join(2)

    def describe(self) -> str:
        return (f"proxy 127.0.0.1:{self._port} -> broker 127.0.0.1:{self.broker_port}; a cut "
                "freezes the relay")


def make_link(kind: str, broker_port: int) -> Link:
    if kind == "namespace":
        return NamespaceLink(broker_port)
    if kind == "proxy":
        return ProxyLink(broker_port)
    return DirectLink(broker_port)


__all__ = ["DirectLink", "Link", "NamespaceLink", "ProxyLink", "make_link",
           "namespaces_unavailable"]
