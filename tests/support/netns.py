"""A Linux network namespace joined to this one by a veth pair, for a device that must
reach exactly one address of the host (the broker) and nothing else.

Needs root and iproute2 (``ip``). The namespace has its own loopback, so the host's
127.0.0.1 services (the fleet server's HTTP) do not exist from inside it, and the
host side of the veth answers only on ports something listens on that address.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_unavailable() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"nf-probe-{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class NetNamespace:
    """``with NetNamespace() as ns:`` ns.host_ip is this side, ns.device_ip the other."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100, 999)}"
        self.name = f"nf-dev-{tag}"
        self.host_if, self.dev_if = f"nfh{tag}", f"nfd{tag}"  # <= 15 characters
        used = _ip("-4", "addr").stdout + _ip("-4", "route").stdout
        for _ in range(100):  # a /30 in 10.200-254.x.0 that nothing here uses
            net = f"10.{random.randrange(200, 255)}.{random.randrange(256)}."
            if net not in used:
                break
        self.host_ip, self.device_ip = f"{net}1", f"{net}2"

    def __enter__(self) -> NetNamespace:
        try:
            _ip("netns", "add", self.name)
            _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.dev_if)
            _ip("link", "set", self.dev_if, "netns", self.name)
            _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _ip("link", "set", self.host_if, "up")
            self.run_ip("addr", "add", f"{self.device_ip}/30", "dev", self.dev_if)
            self.run_ip("link", "set", self.dev_if, "up")
            self.run_ip("link", "set", "lo", "up")
        except subprocess.CalledProcessError as exc:
            self.__exit__()
            raise RuntimeError(f"network namespace set-up failed: {exc.stderr}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        _ip("netns", "del", self.name, check=False)  # takes the veth pair with it
        _ip("link", "del", self.host_if, check=False)

    def run_ip(self, *args: str) -> None:
        _ip("netns", "exec", self.name, "ip", *args)

    def prefix(self) -> list[str]:
        """Command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def http_get(self, url: str, timeout: float = 3.0) -> str:
        """Try ``url`` from inside the namespace: the status, or the error it failed with."""
        code = ("import sys, urllib.request\n"
                "try:\n"
                f"    r = urllib.request.urlopen({url!r}, timeout={timeout})\n"
                "    print('HTTP', r.status)\n"
                "except Exception as e:\n"
                "    print('ERROR', type(e).__name__, e)\n")
        out = subprocess.run([*self.prefix(), sys.executable, "-c", code], capture_output=True,
                             text=True, timeout=timeout + 10, cwd=Path(__file__).parents[2])
        return (out.stdout + out.stderr).strip()
