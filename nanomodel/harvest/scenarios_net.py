"""Capture scenarios for the network services: DHCP and DNS, NTP, a VPN tunnel."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from nanomodel.harvest.netns import (
    CLI,
    SERVER,
    SRV,
    Proc,
    _stop_pidfile,
    marker,
    run_in,
    start_in,
    stop,
)


def _udhcpc(iface: str, tries: int = 3, wait_s: int = 2) -> tuple[str, ...]:
    """busybox udhcpc on ``iface`` in the foreground: one lease (or none) and quit,
    ``tries`` discovers ``wait_s`` apart, no script (the capture wants its log only)."""
    return (
        "busybox",
        "udhcpc",
        "-i",
        iface,
        "-f",
        "-q",
        "-n",
        "-S",
        "-s",
        "/bin/true",
        "-t",
        str(tries),
        "-T",
        str(wait_s),
    )


# ---------------------------------------------------------------- DHCP + DNS
def dhcp(work: Path) -> list[Proc]:
    conf = work / "dhclient.conf"
    conf.write_text("timeout 8;\nretry 5;\nrequest subnet-mask, routers, domain-name-servers;\n")
    leases = work / "dnsmasq.leases"
    leases.unlink(missing_ok=True)
    marker("dnsmasq in netns: start DHCP and DNS server")
    server = start_in(
        SRV,
        "dnsmasq",
        "-k",
        "--conf-file=/dev/null",
        "--interface=nfcap0",
        "--bind-interfaces",
        "--except-interface=lo",
        "--dhcp-range=10.77.0.50,10.77.0.99,2m",
        f"--dhcp-leasefile={leases}",
        "--log-queries",
        "--log-dhcp",
        "--no-resolv",
        "--server=10.77.0.254",
        "--address=/site.lan/10.77.0.1",
        "--dhcp-authoritative",
        "--user=root",
        "--local-service",
        "--cache-size=50",
        "--no-hosts",
    )
    time.sleep(1)
    dhcl = [
        "dhclient",
        "-v",
        "-sf",
        "/bin/true",
        "-cf",
        str(conf),
        "-pf",
        str(work / "dhclient.pid"),
        "-lf",
        str(work / "dhclient.leases"),
    ]
    marker("dhclient in netns: obtain a lease")
    run_in(CLI, *dhcl, "-1", "nfcap1", timeout=20)
    marker("dhclient in netns: renew the lease (second run)")
    _stop_pidfile(work / "dhclient.pid")
    run_in(CLI, *dhcl, "-1", "nfcap1", timeout=20)
    marker("dhclient in netns: release the lease")
    run_in(CLI, *dhcl, "-r", "nfcap1", timeout=20)
    marker("udhcpc in netns: obtain a lease and quit")
    run_in(CLI, *_udhcpc("nfcap1", tries=3, wait_s=2), timeout=20)
    marker("udhcpc in netns: request an address outside the range (NAK)")
    run_in(CLI, *_udhcpc("nfcap1", tries=3, wait_s=2), "-r", "10.77.5.5", timeout=20)
    marker("DNS in netns: local name, cached name and a name forwarded to an unreachable upstream")
    for name in ("site.lan", "site.lan", "updates.example.com", "nosuch.site.lan"):
        run_in(CLI, "busybox", "nslookup", name, SERVER, timeout=8)
    marker("udhcpc in netns: devices booting one after another, each taking a lease")
    for i in range(14):
        run_in(
            CLI,
            *_udhcpc("nfcap1", tries=3, wait_s=2),
            "-x",
            f"hostname:sensor-{i:02d}",
            "-V",
            "nanofleet-agent",
            timeout=20,
        )
    marker("dhclient in netns: a gateway renewing and releasing its lease again and again")
    for _ in range(5):
        run_in(CLI, *dhcl, "-1", "nfcap1", timeout=20)
        _stop_pidfile(work / "dhclient.pid")
        run_in(CLI, *dhcl, "-r", "nfcap1", timeout=20)
    marker("DNS in netns: devices resolving local names all day (answered from config/cache)")
    names = ["site.lan", "mqtt.site.lan", "ntp.site.lan", "fleet.site.lan", "cam-01.site.lan"]
    for i in range(30):
        run_in(CLI, "busybox", "nslookup", names[i % len(names)], SERVER, timeout=8)
    marker("dhclient in netns: no DHCP server on the link")
    run_in(CLI, *dhcl, "-1", "nfcap3", timeout=30)
    marker("udhcpc in netns: no DHCP server on the link")
    run_in(CLI, *_udhcpc("nfcap3", tries=2, wait_s=1), timeout=20)
    marker("dnsmasq in netns: stop")
    stop(server)
    _stop_pidfile(work / "dhclient.pid")
    return []


# ---------------------------------------------------------------- chrony
def chrony(work: Path) -> list[Proc]:
    srv, cli = work / "chrony-srv.conf", work / "chrony-cli.conf"
    # chronyd drops to _chrony and removes its pid file on exit: keep that file where
    # _chrony may, as /run/chrony is on Debian (else "Could not remove ...", an artefact)
    run = work / "chrony-run"
    run.mkdir(exist_ok=True)
    shutil.chown(run, "_chrony", "_chrony")
    srv.write_text(
        f"local stratum 8\nallow 10.77.0.0/24\nbindaddress {SERVER}\ncmdport 0\n"
        f"bindcmdaddress /\npidfile {run}/chrony-srv.pid\n"
    )
    cli.write_text(
        f"server {SERVER} iburst minpoll 0 maxpoll 1\nserver 10.77.0.200 iburst\n"
        f"makestep 1 3\ncmdport 0\nbindcmdaddress /\n"
        f"pidfile {run}/chrony-cli.pid\n"
    )
    marker("chronyd in netns: NTP server with a local reference")
    run_in(SRV, "chronyd", "-x", "-f", str(srv))
    marker("chronyd in netns: client syncing to it, with one unreachable server")
    run_in(CLI, "chronyd", "-x", "-f", str(cli))
    time.sleep(25)
    marker("chronyd in netns: server stops; client loses its source")
    _stop_pidfile(run / "chrony-srv.pid")
    time.sleep(12)
    marker("chronyd in netns: server is back; client selects it again")
    run_in(SRV, "chronyd", "-x", "-f", str(srv))
    time.sleep(15)
    _stop_pidfile(run / "chrony-srv.pid")
    marker("chronyd in netns: stop client")
    _stop_pidfile(run / "chrony-cli.pid")
    time.sleep(0.5)
    return []


# ---------------------------------------------------------------- openvpn
def openvpn(work: Path) -> list[Proc]:
    key, badkey = work / "ovpn.key", work / "ovpn-other.key"
    for k in (key, badkey):
        k.unlink(missing_ok=True)
        subprocess.run(["openvpn", "--genkey", "secret", str(k)], check=True, capture_output=True)
    common = [
        "openvpn",
        "--dev",
        "tun",
        "--proto",
        "udp",
        "--port",
        "1194",
        "--cipher",
        "AES-256-CBC",
        "--ping",
        "1",
        "--ping-restart",
        "6",
        "--verb",
        "3",
    ]
    marker("openvpn in netns: point-to-point server (static key) starts")
    server = start_in(
        SRV,
        *common,
        "--local",
        SERVER,
        "--ifconfig",
        "10.88.0.1",
        "10.88.0.2",
        "--secret",
        str(key),
        "--syslog",
        "ovpn-server",
    )
    time.sleep(2)
    marker("openvpn in netns: client with the right key connects")
    client = start_in(
        CLI,
        *common,
        "--remote",
        SERVER,
        "--ifconfig",
        "10.88.0.2",
        "10.88.0.1",
        "--secret",
        str(key),
        "--syslog",
        "ovpn-client",
    )
    time.sleep(6)
    run_in(CLI, "ping", "-c", "2", "-W", "1", "10.88.0.1", timeout=10)
    marker("openvpn in netns: client stops; the server's peer goes silent")
    stop(client)
    time.sleep(8)
    marker("openvpn in netns: client with a different key")
    intruder = start_in(
        CLI,
        *common,
        "--remote",
        SERVER,
        "--ifconfig",
        "10.88.0.2",
        "10.88.0.1",
        "--secret",
        str(badkey),
        "--syslog",
        "ovpn-client",
    )
    time.sleep(5)
    stop(intruder)
    marker("openvpn in netns: client towards a server that is not there")
    lost = start_in(
        CLI,
        *common,
        "--remote",
        "10.77.0.99",
        "--ifconfig",
        "10.88.0.2",
        "10.88.0.1",
        "--secret",
        str(key),
        "--syslog",
        "ovpn-client",
    )
    time.sleep(8)
    stop(lost)
    marker("openvpn in netns: server stops")
    stop(server)
    return []
