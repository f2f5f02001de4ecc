"""The device package under a real systemd (PID 1 of a container booted from the Debian
root file system, :mod:`hil.systemd_target`): what no other test can show, because the
rig's other targets start the agent without systemd.

One device's life, in order: ``dpkg -i`` (enabled, not started), the unit started (ready
through sd_notify, sandboxed as the unit says), a line logged to the real journald
reaching the broker classified, a hung agent killed by systemd's watchdog and restarted,
a package upgrade restarting the running agent with its config and state kept, removal
stopping it and purge removing its state. Slow and root-only like the other device tests:
opt in with NANOFLEET_DEVICE_TESTS=1 (``scripts/device-tests``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from contract import topics
from hil.ssh_device import device_deb
from hil.systemd_target import SystemdTarget
from tests.support.device_marks import device_test_marks
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt_client import Collector

pytestmark = device_test_marks("systemd-nspawn", "systemd-nspawn")

DEVICE = "nspawn-01"
UNIT = "nanofleet-agent.service"
DEB_IN = "/root/nanofleet-agent.deb"


class Device:
    """The booted target, the broker on the host's loopback and a subscriber to it."""

    def __init__(self, target: SystemdTarget, broker: Mosquitto, sub: Collector) -> None:
        self.target, self.broker, self.sub = target, broker, sub

    def main_pid(self) -> int:
        return int(self.target.unit(UNIT, "MainPID")["MainPID"])

    def wait_unit(self, pred: str, timeout: float = 60.0) -> dict[str, str]:
        """Until ``ActiveState/SubState`` reads ``pred`` (e.g. ``active/running``)."""
        deadline = time.monotonic() + timeout
        while True:
            props = self.target.unit(UNIT, "ActiveState", "SubState", "MainPID", "NRestarts",
                                     "Result", "StatusText")
            if f"{props['ActiveState']}/{props['SubState']}" == pred:
                return props
            if time.monotonic() > deadline:
                journal = self.target.run(f"journalctl -u {UNIT} --no-pager -n 30",
                                          check=False).stdout
                raise TimeoutError(f"{UNIT} is {props}, not {pred}:\n{journal}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Device]:
    work = tmp_path_factory.mktemp("systemd-device")
    broker = Mosquitto(work / "broker").start()
    sub = Collector(broker.port)
    target = SystemdTarget(work / "target")
    try:
        target.start()
        (target.path(DEB_IN)).write_bytes(device_deb("litert").read_bytes())
        yield Device(target, broker, sub)
    finally:
        target.stop()
        sub.close()
        broker.stop()


CONFIG = """device_id = "{device}"
state_dir = "/var/lib/nanofleet"

[mqtt]
host = "127.0.0.1"
port = {port}

[model]
slot = "logs"
runtime = "litert"

[pipeline]
batch_max_wait_ms = 100

[control]
socket = "/run/nanofleet/agent.sock"

[[sources]]
kind = "journald"
name = "journal"
"""


def test_first_install_enables_the_unit_but_does_not_start_it(device: Device) -> None:
    out = device.target.run(f"dpkg -i {DEB_IN}").stdout
    assert "Setting up nanofleet-agent" in out
    t = device.target
    assert t.run(f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"
    assert t.run(f"systemctl is-active {UNIT}", check=False).stdout.strip() == "inactive"
    assert t.run("stat -c '%U %a' /var/lib/nanofleet").stdout.split() == ["nanofleet", "700"]


def test_the_unit_runs_the_agent_ready_and_sandboxed(device: Device) -> None:
    t = device.target
    t.path("/etc/nanofleet/agent.toml").write_text(
        CONFIG.format(device=DEVICE, port=device.broker.port))
    t.run("chgrp nanofleet /etc/nanofleet/agent.toml && chmod 0640 /etc/nanofleet/agent.toml"
          " && nanofleet-agent check-config /etc/nanofleet/agent.toml")
    t.run(f"systemctl start {UNIT}", timeout=120)  # Type=notify: returns once READY=1
    props = device.wait_unit("active/running")
    assert "connected" in props["StatusText"], props  # sd_notify STATUS=
    assert t.unit(UNIT, "WatchdogUSec")["WatchdogUSec"] == "30s"
    status = _proc_status(t, int(props["MainPID"]))
    assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "1"
    assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
    uid = t.run("id -u nanofleet").stdout.strip()
    assert status["Uid"].split()[0] == uid
    # ProtectSystem=strict: in the agent's mount namespace the system is read-only, its
    # state directory is not.
    pid = props["MainPID"]
    inside = f"nsenter --target {pid} --mount --"
    denied = t.run(f"{inside} touch /usr/lib/nanofleet-agent/planted", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr, denied
    assert t.run(f"{inside} sh -c 'touch /etc/planted'", check=False).returncode != 0
    t.run(f"{inside} sh -c 'touch /var/lib/nanofleet/probe && rm /var/lib/nanofleet/probe'")
    device.sub.wait_for(lambda ms: any(
        m.topic == topics.status(DEVICE) and json.loads(m.payload).get("state") == "online"
        for m in ms), timeout=30)


def _proc_status(t: SystemdTarget, pid: int) -> dict[str, str]:
    text = t.run(f"cat /proc/{pid}/status").stdout
    return {k: v.strip() for k, v in (line.split(":", 1) for line in text.splitlines()
                                      if ":" in line)}


def test_a_line_logged_to_the_journal_reaches_the_broker_classified(device: Device) -> None:
    marker = f"unreadable sectors on /dev/sda marker-{os.getpid()}"
    device.target.run(f"logger -t smartd -p daemon.crit 'Device: /dev/sda [SAT], 8 Currently "
                      f"{marker}'")

    def seen(ms: list[Any]) -> bool:
        return any(m.topic == topics.results(DEVICE, "logs") and marker.encode() in m.payload
                   for m in ms)

    msgs = device.sub.wait_for(seen, timeout=30)
    batch = next(json.loads(m.payload) for m in msgs
                 if m.topic == topics.results(DEVICE, "logs") and marker.encode() in m.payload)
    (item,) = [i for i in batch["items"] if marker in i["text"]]
    assert item["label"] != "normal", item  # the shipped model on a real journal line
    # The agent's own log under the unit: structured journal entries, its fields upper-cased.
    entries = [json.loads(line) for line in device.target.run(
        f"journalctl -u {UNIT} -o json --no-pager").stdout.splitlines()]
    mine = [e for e in entries if e.get("DEVICE_ID") == DEVICE]
    assert mine and all(e.get("SYSLOG_IDENTIFIER") == "nanofleet-agent" for e in mine), mine[:3]
    assert any(e.get("MESSAGE", "").startswith("agent ") and "running as" in e["MESSAGE"]
               for e in mine)


def test_a_unit_that_fails_is_alerted_by_the_journal_catalog(device: Device) -> None:
    """A real systemd (PID 1) failing a unit: its `Main process exited`, `Failed with
    result` and `Failed to start X` carry the catalog's MESSAGE_IDs, which the packaged
    agent reading the system journal weighs in, so the failure is sent whatever the unit's
    description says (agent.journal_catalog); the three are at most one alert per label and
    their repeats (the December 2026 model reads some of them as alerts by their words, and
    may label them apart)."""
    unit = f"nf-meter-{os.getpid()}.service"
    device.target.run(f"systemd-run --unit={unit} --property=Type=oneshot "
                      f"--property=Description='Energy meter reader' /bin/sh -c 'exit 3'",
                      check=False)
    failed = f"Failed to start {unit} - Energy meter reader."

    def about(ms: list[Any], topic: str) -> list[dict[str, Any]]:
        return [json.loads(m.payload) for m in ms if m.topic == topic
                and unit.encode() in m.payload]

    msgs = device.sub.wait_for(
        lambda ms: any(i["text"] == failed for r in about(ms, topics.results(DEVICE, "logs"))
                       for i in r["items"]) and about(ms, topics.alerts(DEVICE)), timeout=30)
    items = {i["text"]: i for r in about(msgs, topics.results(DEVICE, "logs"))
             for i in r["items"] if unit in i["text"]}
    for text in (f"{unit}: Main process exited, code=exited, status=3/NOTIMPLEMENTED",
                 f"{unit}: Failed with result 'exit-code'.", failed):
        assert items[text]["anomaly"] >= 0.97 and items[text]["label"] != "normal", items
    alerts = about(msgs, topics.alerts(DEVICE))
    assert 1 <= len(alerts) <= 3 and len({a["item"]["label"] for a in alerts}) == len(alerts)
    assert all(a["item"]["text"] in items for a in alerts), alerts
    assert any("(journal catalog: " in a["reason"] for a in alerts), alerts


def test_a_technician_in_the_group_queries_the_agent_others_cannot(device: Device) -> None:
    """The control socket in the unit's RuntimeDirectory (0750 nanofleet), as the shipped
    example config puts it: the documented way to give a technician access works, and a
    user without the group is told why not."""
    t = device.target
    t.run("useradd -m -G nanofleet alice && useradd -m mallory")
    ok = t.run("nanofleet-agent query status --json", user="alice")
    answer = json.loads(ok.stdout)
    assert answer["ok"] and answer["result"]["device_id"] == DEVICE, ok.stdout
    modes = t.run("stat -c '%U:%G %a' /run/nanofleet /run/nanofleet/agent.sock").stdout
    assert modes.split() == ["nanofleet:nanofleet", "750", "nanofleet:nanofleet", "660"]
    denied = t.run("nanofleet-agent query status", user="mallory", check=False)
    assert denied.returncode != 0
    assert "/etc/nanofleet/agent.toml" in denied.stderr + denied.stdout, denied
    denied = t.run("nanofleet-agent query status --socket /run/nanofleet/agent.sock",
                   user="mallory", check=False)
    assert denied.returncode != 0 and "ermission denied" in denied.stderr + denied.stdout


def test_a_hung_agent_is_killed_by_the_watchdog_and_restarted(device: Device) -> None:
    """SIGSTOP: the process lives but pings no more. With WatchdogSec shortened by a drop-in
    (the shipped 30 s would make this test slow), systemd aborts it and Restart= brings
    it back; the agent read the new WATCHDOG_USEC and pings within it."""
    t = device.target
    t.run(f"mkdir -p /etc/systemd/system/{UNIT}.d && printf '[Service]\\nWatchdogSec=4s\\n'"
          f" > /etc/systemd/system/{UNIT}.d/test-watchdog.conf && systemctl daemon-reload"
          f" && systemctl restart {UNIT}", timeout=120)
    before = device.wait_unit("active/running")
    time.sleep(10)  # more than two watchdog periods: a healthy agent pings in time
    calm = device.wait_unit("active/running")
    assert calm["MainPID"] == before["MainPID"] and calm["NRestarts"] == before["NRestarts"]
    t.run(f"kill -STOP {before['MainPID']}")
    deadline = time.monotonic() + 40
    while True:
        props = t.unit(UNIT, "MainPID", "NRestarts", "ActiveState", "SubState")
        if props["NRestarts"] != before["NRestarts"] and props["ActiveState"] == "active" \
                and props["SubState"] == "running":
            break
        assert time.monotonic() < deadline, props
        time.sleep(0.3)
    assert props["MainPID"] != before["MainPID"]
    journal = t.run(f"journalctl -u {UNIT} --no-pager -n 50").stdout
    assert "Watchdog timeout" in journal, journal
    t.run(f"rm /etc/systemd/system/{UNIT}.d/test-watchdog.conf && systemctl daemon-reload"
          f" && systemctl restart {UNIT}", timeout=120)
    device.wait_unit("active/running")


def test_an_upgrade_restarts_the_running_agent_and_keeps_config_and_state(
        device: Device) -> None:
    t = device.target
    before = device.wait_unit("active/running")
    config = t.path("/etc/nanofleet/agent.toml").read_text()
    state = sorted(p.name for p in t.path("/var/lib/nanofleet").iterdir())
    assert state  # the spool and the OTA record exist by now
    out = t.run(f"dpkg -i {DEB_IN}", timeout=300).stdout
    assert "Unpacking nanofleet-agent" in out
    after = device.wait_unit("active/running")
    assert after["MainPID"] != before["MainPID"]  # postinst restarted it
    assert t.path("/etc/nanofleet/agent.toml").read_text() == config  # conffile kept
    assert set(state) <= {p.name for p in t.path("/var/lib/nanofleet").iterdir()}
    assert t.run(f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"


def test_removal_stops_the_agent_and_purge_removes_its_state(device: Device) -> None:
    t = device.target
    pid = device.main_pid()
    t.run("dpkg -r nanofleet-agent", timeout=120)
    assert t.run(f"systemctl is-active {UNIT}", check=False).stdout.strip() == "inactive"
    assert t.run(f"test -e /proc/{pid}", check=False).returncode != 0  # the process is gone
    assert t.path("/var/lib/nanofleet").exists()  # removal keeps the state
    t.run("dpkg -P nanofleet-agent", timeout=120)
    for gone in ("/var/lib/nanofleet", "/etc/nanofleet", "/var/cache/nanofleet-agent",
                 "/usr/lib/nanofleet-agent"):
        assert not t.path(gone).exists(), gone
