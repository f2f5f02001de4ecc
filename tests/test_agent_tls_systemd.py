"""The agent over TLS with a client certificate, and under a real sd_notify socket."""

from __future__ import annotations

import os
import signal
import socket
import time

from tests.support.agent_proc import AgentProcess, write_config
from tests.support.mqtt_client import Collector


def test_tls_client_certificate_and_acl(tmp_path, tls_broker):
    pki = tls_broker.pki
    cert = pki.issue("pump-07")
    log = tmp_path / "pump.log"
    log.write_text("")
    tls = (f'[mqtt.tls]\nca_file = "{pki.ca_file}"\ncert_file = "{cert.cert}"\n'
           f'key_file = "{cert.key}"\n')

    def run(device: str):
        state = tmp_path / f"state-{device}"
        cfg = write_config(tmp_path / f"{device}.toml", device, state, tls_broker.tls_port,
                           f'[[sources]]\nkind = "file"\npath = "{log}"\nstart_at = "beginning"\n',
                           mqtt_extra=tls)
        return AgentProcess(cfg, state).start()

    spy = Collector(tls_broker.port, "nanofleet/v1/#")  # plain listener, no ACL
    with open(log, "a") as f:
        f.write("kernel: usb 1-1: new high-speed USB device number 2\n")
    own = run("pump-07")
    spy.wait_for(lambda ms: any(m.topic == "nanofleet/v1/dev/pump-07/results/logs"
                                for m in ms))
    own.stop()
    # Same certificate (CN pump-07) claiming another id: the ACL refuses its publishes.
    other = run("pump-08")
    deadline = time.monotonic() + 30
    written = 0
    while other.query("metrics")["result"]["counters"].get("publish_refused", 0) < 5:
        assert time.monotonic() < deadline, other.output()
        with open(log, "a") as f:  # each batch of lines is a results publish, refused
            f.write(f"kernel: usb 1-1: new high-speed USB device number {written + 3}\n")
        written += 1
        time.sleep(0.3)
    assert not any(m.topic.startswith("nanofleet/v1/dev/pump-08/results") for m in spy.messages)
    # Refused for as long as it runs (as a revoked or quarantined device is): one line
    # about it, not one per publish (before: a warning each, a flood of the journal).
    refusals = [line for line in other.output().splitlines() if "broker refused" in line]
    assert len(refusals) == 1, refusals
    other.stop()
    spy.close()


def read_notifications(sock: socket.socket, until: str, timeout: float) -> list[str]:
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if until in out[-1]:
            return out
    raise AssertionError(f"no {until!r} in {out}")


def test_sd_notify_ready_watchdog_reload_stop(tmp_path, broker):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    log = tmp_path / "pump.log"
    log.write_text("")
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "agent.toml", "pump-07", state, broker.port,
                       f'[[sources]]\nkind = "file"\npath = "{log}"\n')
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"}
    env.pop("WATCHDOG_PID", None)
    agent = AgentProcess(cfg, state, env=env).start(wait=False)
    msgs = read_notifications(sock, "READY=1", 60)
    # READY only after sources, runtime and MQTT are set up: the socket answers by then.
    assert agent.query("status")["ok"]
    assert any("STATUS=" in m for m in msgs)
    wd = read_notifications(sock, "WATCHDOG=1", 5)
    assert wd
    agent.signal(signal.SIGHUP)
    # As long as start-up gets: once, near the end of a loaded parallel run, nothing at all
    # (no RELOADING, no watchdog) came for 20 s after SIGHUP; six other full runs that day
    # passed, and the cause was not found (see the December 2026 session note).
    reload_msgs = read_notifications(sock, "READY=1", 60)
    reloading = next(m for m in reload_msgs if "RELOADING=1" in m)
    usec = int(next(f for f in reloading.split("\n") if f.startswith("MONOTONIC_USEC="))
               .split("=")[1])
    assert abs(usec / 1e6 - time.monotonic()) < 30
    t0 = time.monotonic()
    agent.signal(signal.SIGTERM)
    read_notifications(sock, "STOPPING=1", 10)
    assert agent.proc is not None
    assert agent.proc.wait(10) == 0
    assert time.monotonic() - t0 < 10
    sock.close()
    os.unlink(path)
