"""What the capture run does to each daemon: healthy use first, then the faults.

Each scenario takes the scratch directory, starts its daemon inside the server
namespace, drives it from the client namespace, and returns the processes that must
keep running until the end of the capture (usually none: a scenario stops its own
daemon so its shutdown lines are captured too). Every step logs a marker first.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from nanomodel.harvest.netns import (
    CLI,
    SERVER,
    SRV,
    Proc,
    _stop_pidfile,
    marker,
    py_in,
    run_in,
    start_in,
    stop,
    stop_pidfiles,
)
from nanomodel.harvest.scenarios_net import chrony, dhcp, openvpn

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


ALL: dict[str, Callable[[Path], list[Proc]]] = {
    "1-sshd": sshd,
    "2-mosquitto": mosquitto,
    "3-dhcp": dhcp,
    "4-chrony": chrony,
    "5-openvpn": openvpn,
}

__all__ = ["ALL", "stop_pidfiles"]
