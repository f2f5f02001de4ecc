"""A Linux network namespace joined to this one by a veth pair (hil's
:class:`~hil.links.VethNamespace`), for a device that must reach exactly one address of
the host (the broker) and nothing else, plus a probe that tries a URL from inside it.

Needs root and iproute2 (``ip``): skip with :func:`hil.links.namespaces_unavailable`. The
host side of the veth answers only on ports something listens on that address.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hil.links import VethNamespace


class NetNamespace(VethNamespace):
    """``with NetNamespace() as ns:`` ns.host_ip is this side, ns.device_ip the other."""

    def __init__(self) -> None:
        super().__init__("nf-dev")

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
