"""The README demo runs end to end: broker, fleet server, agent; v1 then a signed delta
to v2, deployed, verified, hot-swapped, trialled and committed while results flow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_updates_the_device_to_v2_by_delta() -> None:
    out = subprocess.run([sys.executable, "-m", "hil.demo", "--seconds", "2"], cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    text = out.stdout
    assert "published nano-logs v1" in text
    assert "delta from v1:" in text and "% of the bundle" in text
    for state in ("downloading", "verifying", "smoke_testing", "trial", "committed"):
        assert f"OTA\x1b[0m     {state}" in text, state
    assert "update finished: committed" in text
    assert "last OTA   committed v2" in text and "models     logs=nano-logs v2" in text
