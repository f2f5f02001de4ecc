"""What the capture run does to each daemon: healthy use first, then the faults.

Each scenario takes the scratch directory, starts its daemon inside the server
namespace, drives it from the client namespace, and returns the processes that must
keep running until the end of the capture (usually none: a scenario stops its own
daemon so its shutdown lines are captured too). Every step logs a marker first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

SRV, CLI = "nfcap-srv", "nfcap-cli"
SERVER = "10.77.0.1"

Proc = subprocess.Popen[bytes]


def marker(how: str) -> None:
    subprocess.run(["busybox", "logger", "-t", "nfcapture", f"BEGIN {how}"], check=False)
    time.sleep(0.2)


def run_in(ns: str, *cmd: str, timeout: float = 30, env: dict[str, str] | None = None) -> int:
    try:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *cmd],
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        ).returncode
    except subprocess.TimeoutExpired:
        return -1


def start_in(ns: str, *cmd: str) -> Proc:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def py_in(ns: str, code: str, timeout: float = 30) -> int:
    return run_in(ns, "python3", "-c", code, timeout=timeout)


def stop(proc: Proc, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def stop_pidfiles(work: Path) -> None:
    """Stop daemons that forked (sshd, chronyd, dhclient) by the pid files we gave them."""
    for pidfile in sorted(work.glob("*.pid")):
        try:
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            pass
        pidfile.unlink(missing_ok=True)


def _stop_pidfile(path: Path, sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        os.kill(int(path.read_text().split()[0]), sig)


# ---------------------------------------------------------------- sshd
_RAW_CLOSE = f"import socket;s=socket.create_connection(('{SERVER}',22),5);s.close()"
_RAW_BANNER_CLOSE = (
    f"import socket,time;s=socket.create_connection(('{SERVER}',22),5);s.recv(100);"
    "s.sendall(b'SSH-2.0-Go\\r\\n');time.sleep(0.5);s.close()"
)
_RAW_HTTP = (
    f"import socket,time;s=socket.create_connection(('{SERVER}',22),5);s.recv(100);"
    "s.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n');time.sleep(1);s.close()"
)
_RAW_IDLE = (
    f"import socket,time;s=socket.create_connection(('{SERVER}',22),5);s.recv(100);"
    "s.sendall(b'SSH-2.0-OpenSSH_8.9\\r\\n');time.sleep(14);s.close()"
)


def sshd(work: Path) -> list[Proc]:
    subprocess.run(
        [
            "rm",
            "-f",
            str(work / "hostkey"),
            str(work / "hostkey.pub"),
            str(work / "userkey"),
            str(work / "userkey.pub"),
            str(work / "otherkey"),
            str(work / "otherkey.pub"),
        ],
        check=False,
    )
    for name in ("hostkey", "userkey", "otherkey"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)], check=True
        )
    (work / "authorized_keys").write_text((work / "userkey.pub").read_text())
    askpass = work / "askpass.sh"
    askpass.write_text("#!/bin/sh\necho wrong-password\n")
    askpass.chmod(0o755)
    cfg = work / "sshd_config"
    cfg.write_text(f"""Port 22
ListenAddress {SERVER}
HostKey {work}/hostkey
PidFile {work}/sshd.pid
UsePAM yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin yes
MaxAuthTries 3
MaxStartups 2:50:4
LoginGraceTime 12
StrictModes no
AuthorizedKeysFile {work}/authorized_keys
LogLevel VERBOSE
""")
    Path("/run/sshd").mkdir(exist_ok=True)
    marker("sshd in netns: start")
    run_in(SRV, "/usr/sbin/sshd", "-f", str(cfg))
    time.sleep(1)
    base = [
        "ssh",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=5",
    ]
    ask_env = {
        **os.environ,
        "SSH_ASKPASS": str(askpass),
        "SSH_ASKPASS_REQUIRE": "force",
        "DISPLAY": ":0",
    }
    pw = ["-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no"]
    for _ in range(3):
        marker("sshd in netns: key login that runs a command")
        run_in(
            CLI, *base, "-o", "BatchMode=yes", "-i", str(work / "userkey"), f"root@{SERVER}", "true"
        )
    marker("sshd in netns: key login with a key that is not authorised")
    run_in(
        CLI,
        *base,
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-i",
        str(work / "otherkey"),
        f"root@{SERVER}",
        "true",
    )
    marker("sshd in netns: wrong password, one try")
    run_in(
        CLI, *base, *pw, "-o", "NumberOfPasswordPrompts=1", f"root@{SERVER}", "true", env=ask_env
    )
    marker("sshd in netns: wrong password until maximum tries")
    run_in(
        CLI, *base, *pw, "-o", "NumberOfPasswordPrompts=5", f"root@{SERVER}", "true", env=ask_env
    )
    for user in ("admin", "oracle", "test"):
        marker("sshd in netns: invalid user with a password")
        run_in(
            CLI,
            *base,
            *pw,
            "-o",
            "NumberOfPasswordPrompts=2",
            f"{user}@{SERVER}",
            "true",
            env=ask_env,
        )
    marker("sshd in netns: invalid user, key only")
    run_in(
        CLI, *base, "-o", "BatchMode=yes", "-i", str(work / "otherkey"), f"ubuntu@{SERVER}", "true"
    )
    for _ in range(3):
        marker("sshd in netns: port scan, TCP connect and close")
        py_in(CLI, _RAW_CLOSE)
    marker("sshd in netns: client sends a banner and leaves")
    py_in(CLI, _RAW_BANNER_CLOSE)
    marker("sshd in netns: HTTP request to the SSH port")
    py_in(CLI, _RAW_HTTP)
    marker("sshd in netns: client that never authenticates (login grace timeout)")
    py_in(CLI, _RAW_IDLE, timeout=25)
    marker("sshd in netns: many unauthenticated connections at once (MaxStartups throttling)")
    py_in(
        CLI,
        f"import socket,time;c=[socket.create_connection(('{SERVER}',22),5) for _ in range(7)];"
        "time.sleep(2);[s.close() for s in c]",
        timeout=20,
    )
    marker("sshd in netns: client offering only an obsolete key exchange")
    run_in(
        CLI,
        *base,
        "-o",
        "BatchMode=yes",
        "-o",
        "KexAlgorithms=diffie-hellman-group1-sha1",
        f"root@{SERVER}",
        "true",
    )
    marker("sshd in netns: client offering only ssh-rsa host keys")
    run_in(
        CLI,
        *base,
        "-o",
        "BatchMode=yes",
        "-o",
        "HostKeyAlgorithms=ssh-rsa",
        f"root@{SERVER}",
        "true",
    )
    marker("sshd in netns: key login, interactive session ended by the client")
    run_in(
        CLI, *base, "-o", "BatchMode=yes", "-i", str(work / "userkey"), f"root@{SERVER}", "exit 3"
    )
    marker("sshd in netns: reload (SIGHUP)")
    _stop_pidfile(work / "sshd.pid", signal.SIGHUP)
    time.sleep(1.5)
    marker("sshd in netns: stop (SIGTERM)")
    _stop_pidfile(work / "sshd.pid")
    time.sleep(0.5)
    return []


# ---------------------------------------------------------------- mosquitto
def _mqtt_connect(client_id: str, user: str, password: str, keepalive: int) -> bytes:
    def s(x: str) -> bytes:
        return len(x).to_bytes(2, "big") + x.encode()

    var = s("MQTT") + bytes([4, 0xC2]) + keepalive.to_bytes(2, "big")
    payload = s(client_id) + s(user) + s(password)
    body = var + payload
    return bytes([0x10, len(body)]) + body


def mosquitto(work: Path) -> list[Proc]:
    pwfile, acl, cfg = work / "mosq.pw", work / "mosq.acl", work / "mosquitto.conf"
    pwfile.unlink(missing_ok=True)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "sensor", "s3nsor"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(pwfile), "admin", "adm1n"], check=True)
    acl.write_text("user sensor\ntopic readwrite sensors/#\n\nuser admin\ntopic readwrite #\n")
    for f in (pwfile, acl):
        f.chmod(0o644)
    cfg.write_text(f"""listener 1883 {SERVER}
allow_anonymous false
password_file {pwfile}
acl_file {acl}
log_dest syslog
log_type error
log_type warning
log_type notice
log_type information
log_type subscribe
log_type unsubscribe
connection_messages true
persistence false
user root

connection to-cloud
address 10.77.0.99:1883
topic sensors/# out 1
restart_timeout 2 4
""")
    marker("mosquitto in netns: start")
    broker = start_in(SRV, "mosquitto", "-c", str(cfg))
    time.sleep(1)
    pub = ["mosquitto_pub", "-h", SERVER]
    sub = ["mosquitto_sub", "-h", SERVER]
    for i, ver in enumerate(("mqttv311", "mqttv5", "mqttv31")):
        marker("mosquitto in netns: client publishes with a good password")
        run_in(
            CLI,
            *pub,
            "-V",
            ver,
            "-u",
            "sensor",
            "-P",
            "s3nsor",
            "-i",
            f"pump-0{i}",
            "-t",
            "sensors/pump/temp",
            "-m",
            "41.5",
            "-q",
            "1",
        )
    marker("mosquitto in netns: subscriber receives one message and leaves")
    listener = start_in(
        CLI,
        *sub,
        "-u",
        "admin",
        "-P",
        "adm1n",
        "-i",
        "dashboard",
        "-t",
        "sensors/#",
        "-C",
        "1",
        "-W",
        "5",
    )
    time.sleep(0.5)
    run_in(CLI, *pub, "-u", "sensor", "-P", "s3nsor", "-t", "sensors/x", "-m", "1")
    listener.wait(timeout=10)
    marker("mosquitto in netns: wrong password")
    run_in(CLI, *pub, "-u", "sensor", "-P", "bad", "-i", "meter-0042", "-t", "sensors/a", "-m", "1")
    marker("mosquitto in netns: anonymous client refused")
    run_in(CLI, *pub, "-i", "anon-cam", "-t", "sensors/a", "-m", "1")
    marker("mosquitto in netns: publish to a topic the ACL forbids")
    run_in(
        CLI,
        *pub,
        "-V",
        "mqttv5",
        "-u",
        "sensor",
        "-P",
        "s3nsor",
        "-i",
        "pump-12",
        "-t",
        "plant/secret",
        "-m",
        "1",
        "-q",
        "1",
    )
    marker("mosquitto in netns: two clients with the same client id")
    first = start_in(CLI, *sub, "-u", "admin", "-P", "adm1n", "-i", "dup-id", "-t", "a", "-W", "4")
    time.sleep(0.5)
    second = start_in(CLI, *sub, "-u", "admin", "-P", "adm1n", "-i", "dup-id", "-t", "a", "-W", "2")
    time.sleep(3)
    stop(first)
    stop(second)
    marker("mosquitto in netns: client stops sending keepalives (times out)")
    connect = _mqtt_connect("hvac-ctl", "sensor", "s3nsor", 1)
    py_in(
        CLI,
        f"import socket,time;s=socket.create_connection(('{SERVER}',1883),5);"
        f"s.sendall({connect!r});s.recv(4);time.sleep(4);s.close()",
        timeout=15,
    )
    marker("mosquitto in netns: TCP connect and close without CONNECT")
    py_in(
        CLI,
        f"import socket,time;s=socket.create_connection(('{SERVER}',1883),5);"
        "time.sleep(0.3);s.close()",
    )
    marker("mosquitto in netns: malformed packet")
    py_in(
        CLI,
        f"import socket,time;s=socket.create_connection(('{SERVER}',1883),5);"
        "s.sendall(b'\\x10\\xff\\xff\\xff\\xff\\x7f');time.sleep(0.5);s.close()",
    )
    marker("mosquitto in netns: non-MQTT bytes (HTTP) on the port")
    py_in(
        CLI,
        f"import socket,time;s=socket.create_connection(('{SERVER}',1883),5);"
        "s.sendall(b'GET / HTTP/1.1\\r\\n\\r\\n');time.sleep(0.5);s.close()",
    )
    marker("mosquitto in netns: bridge to an unreachable remote broker keeps retrying")
    time.sleep(6)
    marker("mosquitto in netns: reload (SIGHUP)")
    broker.send_signal(signal.SIGHUP)
    time.sleep(1)
    marker("mosquitto in netns: stop (SIGTERM)")
    stop(broker)
    return []


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
    run_in(
        CLI,
        "busybox",
        "udhcpc",
        "-i",
        "nfcap1",
        "-f",
        "-q",
        "-n",
        "-S",
        "-s",
        "/bin/true",
        "-t",
        "3",
        "-T",
        "2",
        timeout=20,
    )
    marker("udhcpc in netns: request an address outside the range (NAK)")
    run_in(
        CLI,
        "busybox",
        "udhcpc",
        "-i",
        "nfcap1",
        "-f",
        "-q",
        "-n",
        "-S",
        "-s",
        "/bin/true",
        "-t",
        "3",
        "-T",
        "2",
        "-r",
        "10.77.5.5",
        timeout=20,
    )
    marker("DNS in netns: local name, cached name and a name forwarded to an unreachable upstream")
    for name in ("site.lan", "site.lan", "updates.example.com", "nosuch.site.lan"):
        run_in(CLI, "busybox", "nslookup", name, SERVER, timeout=8)
    marker("dhclient in netns: no DHCP server on the link")
    run_in(CLI, *dhcl, "-1", "nfcap3", timeout=30)
    marker("udhcpc in netns: no DHCP server on the link")
    run_in(
        CLI,
        "busybox",
        "udhcpc",
        "-i",
        "nfcap3",
        "-f",
        "-q",
        "-n",
        "-S",
        "-s",
        "/bin/true",
        "-t",
        "2",
        "-T",
        "1",
        timeout=20,
    )
    marker("dnsmasq in netns: stop")
    stop(server)
    _stop_pidfile(work / "dhclient.pid")
    return []


# ---------------------------------------------------------------- chrony
def chrony(work: Path) -> list[Proc]:
    srv, cli = work / "chrony-srv.conf", work / "chrony-cli.conf"
    srv.write_text(
        f"local stratum 8\nallow 10.77.0.0/24\nbindaddress {SERVER}\ncmdport 0\n"
        f"bindcmdaddress /\npidfile {work}/chrony-srv.pid\n"
    )
    cli.write_text(
        f"server {SERVER} iburst minpoll 0 maxpoll 1\nserver 10.77.0.200 iburst\n"
        f"makestep 1 3\ncmdport 0\nbindcmdaddress /\n"
        f"pidfile {work}/chrony-cli.pid\n"
    )
    marker("chronyd in netns: NTP server with a local reference")
    run_in(SRV, "chronyd", "-x", "-f", str(srv))
    marker("chronyd in netns: client syncing to it, with one unreachable server")
    run_in(CLI, "chronyd", "-x", "-f", str(cli))
    time.sleep(25)
    marker("chronyd in netns: server stops; client loses its source")
    _stop_pidfile(work / "chrony-srv.pid")
    time.sleep(12)
    marker("chronyd in netns: stop client")
    _stop_pidfile(work / "chrony-cli.pid")
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


ALL: dict[str, Callable[[Path], list[Proc]]] = {
    "1-sshd": sshd,
    "2-mosquitto": mosquitto,
    "3-dhcp": dhcp,
    "4-chrony": chrony,
    "5-openvpn": openvpn,
}
