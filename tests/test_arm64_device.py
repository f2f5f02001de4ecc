"""arm64, proven: the arm64 device package built on this amd64 machine from arm64
wheels, installed with dpkg in an arm64 Debian root file system (debootstrap, second
stage under qemu-user-static), its agent run under emulation: it classifies lines,
answers the rig's queries and takes a signed delta update from the amd64 fleet server
with hot-swap and commit (hil/scenarios/arm64_delta_update.toml).

Slow and root-only: opt in with NANOFLEET_DEVICE_TESTS=1 (``scripts/device-tests``).
The first run builds the arm64 root file system (~25 min here under emulation) and
the arm64 .deb; both are cached (``$NANOFLEET_CACHE``, default /var/cache/nanofleet),
after which the run takes about 4 minutes. See docs/hil.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from hil.ssh_device import device_deb
from tests.support.device_marks import device_test_marks

ROOT = Path(__file__).resolve().parents[1]

pytestmark = device_test_marks("qemu-user-static", "chroot, binfmt_misc")


def test_arm64_package_is_arm64_throughout(tmp_path: Path) -> None:
    deb = device_deb("litert", "arm64")
    arch = subprocess.run(["dpkg-deb", "--field", str(deb), "Architecture"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert arch == "arm64"
    subprocess.run(["dpkg-deb", "--extract", str(deb), str(tmp_path)], check=True)
    objects = [p for p in tmp_path.rglob("*.so*") if p.is_file() and not p.is_symlink()]
    assert len(objects) > 10
    for so in objects:
        machine = subprocess.run(["readelf", "-h", str(so)], capture_output=True,
                                 text=True).stdout
        assert "AArch64" in machine, so


def test_arm64_agent_classifies_answers_and_takes_a_delta_update(tmp_path: Path) -> None:
    report_dir = tmp_path / "r"
    out = subprocess.run([sys.executable, "-m", "hil", "run", "arm64_delta_update",
                          "--report-dir", str(report_dir), "--junit",
                          str(report_dir / "junit.xml")], cwd=ROOT, capture_output=True,
                         text=True, timeout=3600)
    assert (report_dir / "report.json").exists(), out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads((report_dir / "report.json").read_text())
    assert out.returncode == 0, out.stdout[-4000:]
    device = report["devices"]["arm64-01"]
    assert "arm64 root file system under qemu-user-static" in device["driver"]
    [update] = device["metrics"]["updates"]
    assert (update["from_version"], update["to_version"], update["final"],
            update["artifact"]) == (1, 2, "committed", "delta")
    assert device["metrics"]["results_by_version"]["1"] > 0
    assert device["metrics"]["results_by_version"]["2"] >= 20
    log = (report_dir / "devices" / "arm64-01" / "agent.log").read_text()
    assert "falling back" not in log
    junit = ET.parse(report_dir / "junit.xml").getroot()
    assert junit.get("failures") == "0"
