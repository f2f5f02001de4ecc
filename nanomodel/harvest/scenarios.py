"""What the capture run does to each daemon: healthy use first, then the faults.

Each scenario takes the scratch directory, starts its daemon inside the server
namespace, drives it from the client namespace, and returns the processes that must
keep running until the end of the capture (usually none: a scenario stops its own
daemon so its shutdown lines are captured too). Every step logs a marker first.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from nanomodel.harvest.netns import (
    CLI,
    CLIENT_HOSTS,
    SERVER,
    SRV,
    Proc,
    marker,
    py_in,
    run_in,
    start_in,
    stop,
    stop_pidfiles,
)
from nanomodel.harvest.scenarios_classic import classic
from nanomodel.harvest.scenarios_cron import cron
from nanomodel.harvest.scenarios_dhcpd import dhcpd
from nanomodel.harvest.scenarios_mail import postfix
from nanomodel.harvest.scenarios_named import named
from nanomodel.harvest.scenarios_net import chrony, dhcp, openvpn
from nanomodel.harvest.scenarios_snmpd import snmpd
from nanomodel.harvest.scenarios_ssh import sshd
from nanomodel.harvest.scenarios_web import apache2, nginx
from nanomodel.harvest.scenarios_xinetd import xinetd
from nanomodel.harvest.scenarios_zookeeper import zookeeper

MQTT_FLEET = Path(__file__).with_name("mqtt_client.py")


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
    marker("mosquitto in netns: a fleet of sensors and dashboards, some misbehaving")
    run_in(CLI, sys.executable, str(MQTT_FLEET), SERVER, "400", "18", *CLIENT_HOSTS, timeout=400)
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
    "0-cron": cron,
    "1-sshd": sshd,
    "2-mosquitto": mosquitto,
    "3-dhcp": dhcp,
    "4-chrony": chrony,
    "5-openvpn": openvpn,
    "6-apache2": apache2,
    "7-nginx": nginx,
    "8-postfix": postfix,
    "9-classic": classic,
    "9-zookeeper": zookeeper,
    "a-named": named,
    "b-xinetd": xinetd,
    "c-snmpd": snmpd,
    "d-dhcpd": dhcpd,
}

__all__ = ["ALL", "stop_pidfiles"]
