"""The ISC DHCP server capture scenario: a site's DHCP server handing out leases to the
devices of a plant network, and what a full pool, lost devices and admins' mistakes
make it say.

dhcpd runs in the server namespace in the foreground (``-f``; it logs to syslog's
``daemon`` facility as Debian's service does), as Debian's init script starts it (``-4 -q
-cf /etc/dhcp/dhcpd.conf -pf /run/dhcp-server/dhcpd.pid``), in a mount namespace where
``/etc/dhcp``, ``/var/lib/dhcp`` and ``/run/dhcp-server`` are scratch directories (nothing
of this machine's is read or changed; the lines name the packaged paths), on the second
veth pair (``nfcap2``, 10.78.0.1/24 here; the
capture's first pair stays the "internet" side) and, at its first start, also on
``nfcap0``, for which it has no subnet declaration (it says so and ignores that link, as
on a multi-homed host). The devices are macvlan interfaces on the client end of the pair,
each with its own hardware address, asking with BusyBox ``udhcpc`` (their host names in
option 12), as the dhcp scenario's devices do (those that shut down cleanly with a script
that configures the address, so their release can leave by unicast); a laptop that comes
from another network uses ISC ``dhclient``, whose lease file remembers the other
network's address.

- Healthy: the start (``-q``, as Debian's script starts it: no copyright banner), twelve
  devices booting (DISCOVER, OFFER, REQUEST, ACK), a host with a fixed address, renewals,
  three devices releasing their lease, a restart that keeps the leases.
- Trouble: more devices than the pool has addresses (``no free leases``), a device asking
  for an address of another network (NAK), a configuration with a syntax error (dhcpd
  refuses to start).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from nanomodel.harvest.netns import (
    CLI,
    SRV,
    Proc,
    in_mount_ns,
    marker,
    run_in,
    run_many,
    start_in,
    stop,
)

NET = "10.78.0"
POOL = (100, 111)  # twelve addresses: the fourteen devices and a late one outgrow it
FIXED_MAC = "02:4e:46:00:00:99"


def dhcpd_conf(broken: bool = False) -> str:
    head = "authoritative;\nddns-update-style none;\ndefault-lease-time 60;\nmax-lease-time 120;\n"
    subnet = (
        f"subnet {NET}.0 netmask 255.255.255.0 {{\n"
        f"  range {NET}.{POOL[0]} {NET}.{POOL[1]};\n"
        f"  option routers {NET}.1;\n  option domain-name \"plant.lan\";\n"
        f"  option domain-name-servers {NET}.1;\n}}\n"
        f"host historian {{ hardware ethernet {FIXED_MAC}; fixed-address {NET}.50; }}\n"
    )
    # an admin's edit: a missing semicolon
    return head + (subnet.replace("option routers 10.78.0.1;", "option routers 10.78.0.1")
                   if broken else subnet)


def mac(n: int) -> str:
    return f"02:4e:46:00:00:{n:02x}"


def _udhcpc(iface: str, host: str, *extra: str) -> tuple[str, ...]:
    return (CLI, "busybox", "udhcpc", "-i", iface, "-f", "-q", "-n", "-s", "/bin/true",
            "-t", "3", "-T", "2", "-x", f"hostname:{host}", *extra)


def _devices(n: int) -> list[str]:
    names = []
    for i in range(n):
        name = f"nfmv{i}"
        run_in(CLI, "ip", "link", "add", name, "link", "nfcap3", "address", mac(i),
               "type", "macvlan", "mode", "bridge")
        run_in(CLI, "ip", "link", "set", name, "up")
        names.append(name)
    return names


_DIRS = (("etc", "/etc/dhcp"), ("lib", "/var/lib/dhcp"), ("run", "/run/dhcp-server"))


def _dhcpd_cmd(root: Path, *ifaces: str) -> tuple[str, ...]:
    binds = {root / src: dst for src, dst in _DIRS}
    return (SRV, *in_mount_ns(binds, "exec dhcpd -f -4 -q -cf /etc/dhcp/dhcpd.conf "
                              "-pf /run/dhcp-server/dhcpd.pid " + " ".join(ifaces)))


def _dhclient(root: Path, iface: str, *extra: str) -> tuple[str, ...]:
    """ISC dhclient on ``iface`` with a lease file of its own and no script: one try
    (``-1``); once it has a lease it goes on in the background (the scenario stops it)."""
    return (CLI, "dhclient", "-1", "-sf", "/bin/true", "-lf", str(root / f"{iface}.leases"),
            "-pf", str(root / f"{iface}.pid"), *extra, iface)


def dhcpd(work: Path) -> list[Proc]:
    root = work / "dhcpd"
    for sub, _ in _DIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "etc" / "dhcpd.conf"
    conf.write_text(dhcpd_conf())
    (root / "lib" / "dhcpd.leases").write_text("")
    script = root / "udhcpc.script"
    script.write_text(
        '#!/bin/sh\ncase "$1" in\n  bound|renew) ip addr flush dev "$interface"; '
        'ip addr add "$ip/${mask:-24}" dev "$interface" ;;\n'
        '  deconfig) ip addr flush dev "$interface" ;;\nesac\n')
    script.chmod(0o755)
    run_in(SRV, "ip", "addr", "add", f"{NET}.1/24", "dev", "nfcap2")
    devices = _devices(16)
    try:
        marker("dhcpd in netns: start (one of its links has no subnet declaration)")
        server = start_in(*_dhcpd_cmd(root, "nfcap2", "nfcap0"))
        time.sleep(2)
        marker("dhcpd in netns: the plant's devices boot and get leases")
        run_many([_udhcpc(d, f"plc-{i:02d}") for i, d in enumerate(devices[:12])], workers=4)
        marker("dhcpd in netns: the historian, which has a fixed address")
        run_in(CLI, "ip", "link", "set", devices[12], "address", FIXED_MAC)
        run_in(*_udhcpc(devices[12], "historian"))
        marker("dhcpd in netns: devices renew the address they hold")
        run_many([_udhcpc(d, f"plc-{i:02d}", "-r", f"{NET}.{POOL[0] + i}")
                  for i, d in enumerate(devices[:6])], workers=3)
        marker("dhcpd in netns: two more devices than the pool has addresses")
        run_many([_udhcpc(d, f"cam-{i:02d}") for i, d in enumerate(devices[13:16])], workers=3)
        marker("dhcpd in netns: devices shut down and release their lease")
        for i, d in enumerate(devices[6:9], 6):
            # udhcpc keeps running until stopped; -R: it releases on the way out (by unicast
            # from its address, so its script configures the address, as a device's does)
            client = start_in(CLI, "busybox", "udhcpc", "-i", d, "-f", "-R", "-s",
                              str(script), "-x", f"hostname:plc-{i:02d}")
            time.sleep(2)
            stop(client)
        marker("dhcpd in netns: a released address goes to a waiting device")
        run_in(*_udhcpc(devices[14], "cam-01"))
        marker("dhcpd in netns: a laptop from another network asks for its old address")
        (root / f"{devices[9]}.leases").write_text(
            f'lease {{\n  interface "{devices[9]}";\n  fixed-address 10.99.0.5;\n'
            "  option subnet-mask 255.255.255.0;\n  option dhcp-server-identifier 10.99.0.1;\n"
            "  renew 4 2030/01/03 00:00:00;\n  rebind 4 2030/01/03 00:00:00;\n"
            "  expire 4 2030/01/03 00:00:00;\n}\n")
        run_in(*_dhclient(root, devices[9]), timeout=12)  # NAK, then it looks for another
        subprocess.run(["pkill", "-f", f"dhclient .*{root}/"], check=False)
        marker("dhcpd in netns: restart; the leases are kept")
        stop(server)
        server = start_in(*_dhcpd_cmd(root, "nfcap2"))
        time.sleep(2)
        run_many([_udhcpc(d, f"plc-{i:02d}", "-r", f"{NET}.{POOL[0] + i}")
                  for i, d in enumerate(devices[:4])], workers=2)
        marker("dhcpd in netns: stop (SIGTERM)")
        stop(server)
        marker("dhcpd in netns: a start with a syntax error in dhcpd.conf (refused)")
        conf.write_text(dhcpd_conf(broken=True))
        run_in(*_dhcpd_cmd(root, "nfcap2"), timeout=20)
    finally:
        for d in devices:
            run_in(CLI, "ip", "link", "del", d)
        run_in(SRV, "ip", "addr", "del", f"{NET}.1/24", "dev", "nfcap2")
    return []
