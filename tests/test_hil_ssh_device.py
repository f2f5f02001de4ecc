"""The HIL rig driving real targets over SSH (``--driver ssh``): a Debian root file
system with openssh-server and the device .deb installed by the rig, in its own
network namespace. Slow and root-only: opt in with NANOFLEET_DEVICE_TESTS=1
(``scripts/device-tests``); the first run builds the cached root file system
(debootstrap, ~8 min here), later runs reuse it. See docs/hil.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.support.device_marks import device_test_marks

ROOT = Path(__file__).resolve().parents[1]

pytestmark = device_test_marks("~1-3 min per scenario", "chroot, namespaces")

# Shipped scenarios with timings shortened as in tests/test_hil_run.py.
SHIPPED = {
    "delta_update_under_load": ["warmup_s=1", "trial_s=2", "lines_per_s=30"],
    "power_cut_during_update": ["off_s=1", "trial_s=1"],
    "bad_update_rolls_back": ["trial_s=2"],
    "bad_updates_refused": [],
    "broker_outage": ["outage_s=10"],
    "network_loss_single_device": ["loss_s=8"],
}

SMOKE = """
name = "ssh_device_smoke"
description = "One SSH device: traffic, a network cut, a power cut, a delta update."

[agent]
trial_duration_s = 2
trial_min_inferences = 10

[traffic]
lines_per_s = 20

[[devices]]
id = "board-01"
driver = "ssh"

[[steps]]
action = "wait_for"
condition = "results"
count = 20
timeout_s = 60

[[steps]]
action = "fault"
fault = "network_loss"
device = "board-01"
duration_s = 6

[[steps]]
action = "fault"
fault = "power_cut"
device = "board-01"
off_s = 1

[[steps]]
action = "wait_for"
condition = "results"
count = 20
timeout_s = 60

[[steps]]
action = "publish"
version = 2

[[steps]]
action = "deploy"
version = 2

[[steps]]
action = "wait_for"
condition = "ota_done"
timeout_s = 120

[[steps]]
action = "traffic"
run = false

[[steps]]
action = "expect"
check = "ota_final"
state = "committed"
version = 2
artifact = "delta"

[[steps]]
action = "expect"
check = "live_model"
version = 2

[[steps]]
action = "expect"
check = "no_lost_lines"
within_s = 40

[[steps]]
action = "expect"
check = "no_unexpected_exits"
"""


def run_hil(scenario: str, report_dir: Path, *args: str,
            timeout: float = 900) -> tuple[int, str, dict[str, Any]]:
    cmd = [sys.executable, "-m", "hil", "run", scenario, "--report-dir", str(report_dir),
           "--junit", str(report_dir / "junit.xml"), *args]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    report_file = report_dir / "report.json"
    assert report_file.exists(), out.stdout[-3000:] + out.stderr[-3000:]
    return out.returncode, out.stdout + out.stderr, json.loads(report_file.read_text())


def test_ssh_device_install_faults_update_logs_and_junit(tmp_path: Path) -> None:
    scenario = tmp_path / "ssh_device_smoke.toml"
    scenario.write_text(SMOKE)
    code, output, report = run_hil(str(scenario), tmp_path / "r")
    assert code == 0, output
    device = report["devices"]["board-01"]
    assert device["driver"].startswith("SshDevice (Debian root file system over SSH at ")
    assert device["network"] == "namespace"
    texts = [e["text"] for e in report["timeline"]]
    assert any(t.startswith("device installed: SshDevice") for t in texts)
    assert any(t.startswith("network lost (namespace)") for t in texts)
    assert "power cut (kill -9 of the agent)" in texts
    [update] = device["metrics"]["updates"]
    assert (update["final"], update["artifact"]) == ("committed", "delta")
    files = tmp_path / "r" / "devices" / "board-01"
    status = (files / "dpkg-status").read_text()
    assert "Package: nanofleet-agent\nStatus: install ok installed" in status
    assert (files / "agent.log").read_text().count("--- hil: power on") == 2
    assert "falling back" not in (files / "agent.log").read_text()  # runs its flavour
    assert 'runtime = "litert"' in (files / "agent.toml").read_text()
    junit = ET.parse(tmp_path / "r" / "junit.xml").getroot()
    cases = junit.findall("testsuite/testcase")
    assert len(cases) == len(report["steps"]) and junit.get("failures") == "0"


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_scenario_over_ssh(name: str, tmp_path: Path) -> None:
    params = [a for p in SHIPPED[name] for a in ("--param", p)]
    code, output, report = run_hil(name, tmp_path / "r", "--driver", "ssh", *params)
    assert code == 0, output
    assert all(d["driver"].startswith("SshDevice") for d in report["devices"].values())
    junit = ET.parse(tmp_path / "r" / "junit.xml").getroot()
    assert len(junit.findall("testsuite/testcase")) == len(report["steps"])
