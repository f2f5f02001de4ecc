"""The README demo runs end to end: broker, fleet server, agent; v1 misreads the site PLC's
alarm lines, a fine-tuned v2 goes out as a signed delta and is deployed, verified,
hot-swapped, trialled and committed while results flow, and reads those lines better."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from hil.demo_site import SiteLine, agreement, live_feed, score_alarm_lines

ROOT = Path(__file__).resolve().parents[1]


def _site_alarm_score(text: str, version: int) -> tuple[int, int]:
    found = re.search(rf"v{version} labelled (\d+) of (\d+) site alarm lines correctly", text)
    assert found, f"no v{version} score in the demo's output"
    return int(found[1]), int(found[2])


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
    assert "/console (sign in with token " in text and "/console/rollouts/r-" in text
    assert "last OTA   committed v2" in text and "models     logs=nano-logs v2" in text
    # Both versions were scored on every alarm line of the PLC feed, and v2 reads more of
    # them right than v1 (the figures come from the results the device published).
    alarm_lines = sum(line.label != "normal" for line in live_feed())
    v1_right, v1_seen = _site_alarm_score(text, 1)
    v2_right, v2_seen = _site_alarm_score(text, 2)
    assert v1_seen == v2_seen == alarm_lines
    assert v2_right > v1_right, (v1_right, v2_right)
    # The alarm-chain test line raised an alert; the operator muted its shape; the device
    # held the list and, when the next test line came, held its alert back.
    assert re.search(r"\n  alert \d+: thermal [\d.]+: .*\(Probealarm\)",
                     text.split("every week the site tests its alarm chain")[1])
    assert "$ nanofleet alerts shapes --device pump-07" in text and "COUNT  LABELS" in text
    assert "$ nanofleet alerts mute " in text and "weekly alarm chain test" in text
    assert "wicklungstemp. p3 zu hoch # grad c" in text.split("$ nanofleet-agent query mutes")[1]
    assert "its alert held back (alerts_muted 0 -> 1)" in text


def test_site_alarm_score_counts_only_alarm_lines_a_model_labelled() -> None:
    feed = [SiteLine("a", "hardware"), SiteLine("b", "power"), SiteLine("c", "normal"),
            SiteLine("d", "sensor")]
    result = score_alarm_lines({"a": "hardware", "b": "normal", "c": "power"}, feed)
    assert (result.right, result.seen, result.given) == (1, 2, {"hardware": 1, "normal": 1})
    assert agreement({"x": "normal", "y": "power", "a": "n"}, {"x": "normal", "y": "thermal",
                     "a": "n"}, skip={"a"}) == (1, 2)
