"""The HIL rig driving devices whose agent runs under systemd as shipped (``--driver
systemd``, :mod:`hil.systemd_device`): the device package in a container booted with
systemd as PID 1, in the device's own network namespace. The same smoke scenario and
shipped scenarios as the SSH driver, so every fault (a network cut, power cuts, power
cuts at OTA states, bad updates) is also taken by the real unit: sandbox, sd_notify,
watchdog, journald. Slow and root-only: opt in with NANOFLEET_DEVICE_TESTS=1
(``scripts/device-tests``). See docs/hil.md.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.support.device_marks import device_test_marks
from tests.test_hil_ssh_device import SHIPPED, SMOKE, run_hil

# Every shipped scenario but arm64_delta_update (its own driver): the SSH tests' list and
# the alert mute kept across a power cut (timings as in tests/test_hil_run.py).
SCENARIOS = {**SHIPPED,
             "alert_mute_survives_power_cut": ["lines_per_s=40", "outage_s=20"]}

pytestmark = device_test_marks("systemd-nspawn", "systemd-nspawn, namespaces")


def test_systemd_device_install_faults_update_logs_and_junit(tmp_path: Path) -> None:
    scenario = tmp_path / "systemd_device_smoke.toml"
    scenario.write_text(SMOKE.replace('driver = "ssh"', 'driver = "systemd"'))
    code, output, report = run_hil(str(scenario), tmp_path / "r")
    assert code == 0, output
    device = report["devices"]["board-01"]
    assert device["driver"].startswith("SystemdDevice (systemd in a container, ")
    assert device["network"] == "namespace"
    texts = [e["text"] for e in report["timeline"]]
    assert any(t.startswith("network lost (namespace)") for t in texts)
    [update] = device["metrics"]["updates"]
    assert (update["final"], update["artifact"]) == ("committed", "delta")
    files = tmp_path / "r" / "devices" / "board-01"
    assert "Package: nanofleet-agent\nStatus: install ok installed" in \
        (files / "dpkg-status").read_text()
    # The agent's output is the unit's journal: started twice by systemd (power on, and
    # again after the cut), killed once by the rig's power cut.
    journal = (files / "agent.log").read_text()
    assert journal.count("Started nanofleet-agent.service") == 2, journal
    assert "Main process exited, code=killed, status=9/KILL" in journal
    assert "falling back" not in journal
    junit = ET.parse(tmp_path / "r" / "junit.xml").getroot()
    assert junit.get("failures") == "0"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_shipped_scenario_under_systemd(name: str, tmp_path: Path) -> None:
    params = [a for p in SCENARIOS[name] for a in ("--param", p)]
    code, output, report = run_hil(name, tmp_path / "r", "--driver", "systemd", *params)
    assert code == 0, output
    assert all(d["driver"].startswith("SystemdDevice") for d in report["devices"].values())
