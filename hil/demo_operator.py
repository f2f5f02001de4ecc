"""What the demo's operator does, each step a ``nanofleet`` command printed with its
output: fine-tune v2 on the site's labeled lines, measure how a model version reads the
PLC's alarm lines, judge the device's alerts, and mute the weekly alarm-chain test's
false alarm (then ask the agent that it held the next one back); and :func:`say`, the
story's headings.

Separate from :mod:`hil.demo`, which starts the broker, the fleet server and the agent and
runs these steps in order: a step acts only through the ``nanofleet`` and
``nanofleet-agent`` commands (and the PLC's log it appends to), never on those processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hil.demo_site import SiteLine, labeled_history, score_alarm_lines, sensor_readings
from hil.demo_traffic import DEVICE
from hil.fleet import FleetSetup


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def operator(fleet: FleetSetup, *args: str, show: bool = True) -> str:
    """Run a `nanofleet` command as the operator would; print it and its output."""
    shown = " ".join(a if len(a) < 60 else "…/" + Path(a).name for a in args)
    print(f"  $ nanofleet {shown}")
    out = subprocess.run([sys.executable, "-m", "fleet_server.cli", *args],
                         capture_output=True, text=True, env=fleet.cli_env())
    if out.returncode != 0:
        raise RuntimeError(f"nanofleet {shown} failed:\n{out.stdout}{out.stderr}")
    if show:
        print("    " + out.stdout.strip().replace("\n", "\n    "))
    return out.stdout


def train_v2(workdir: Path, fleet: FleetSetup) -> tuple[Path, int]:
    """Fine-tune the shipped model, head only, on the technician's labeled lines: the
    PLC's alarm history and the pump sensors' readings (other days, pumps and values than
    the live feed). The corpus mix (automatic) keeps what v1 knew about other lines."""
    from nanomodel import default_bundle_path

    rows = labeled_history(300, 7) + sensor_readings(100, 8)
    data = workdir / "site-labeled.jsonl"
    data.write_text("".join(json.dumps({"text": r.text, "label": r.label}, ensure_ascii=False)
                            + "\n" for r in rows), encoding="utf-8")
    v2 = workdir / "nano-logs-v2.nfb"
    operator(fleet, "model", "train", "--base", str(default_bundle_path()), "--head-only",
             "--data", str(data), "--out", str(v2), "--quiet")
    return v2, len(rows)


def report_site_alarms(version: int, labelled: dict[str, str], feed: list[SiteLine]) -> int:
    """Print how ``version`` labelled the PLC's alarm lines; return how many were right."""
    result = score_alarm_lines(labelled, feed)
    given = ", ".join(f"{label} x{n}" for label, n in sorted(result.given.items()))
    print(f"  v{version} labelled {result.right} of {result.seen} site alarm lines correctly "
          f"(labels it gave them: {given or 'none yet'})", flush=True)
    return result.right


def judge_alerts(fleet: FleetSetup, workdir: Path, feed: list[SiteLine]) -> None:
    """The operator says which of the device's PLC alerts were right (the site's labels
    know): each verdict keeps the line with its true label, for the next fine-tune."""
    say("the operator judges the device's alerts; the judged lines export as labelled data")
    truth = {line.text: line.label for line in feed}
    operator(fleet, "alerts", "shapes", "--device", DEVICE, "--limit", "5")  # what repeats
    operator(fleet, "alerts", "list", "--device", DEVICE, "--limit", "4")
    listed = json.loads(operator(fleet, "alerts", "list", "--device", DEVICE, "--limit", "200",
                                 "--json", show=False))["alerts"]
    judged = [a for a in listed if a["text"] in truth][:3]
    for a in judged:
        verdict = "false-alarm" if truth[a["text"]] == "normal" else "right"
        label = [] if verdict == "false-alarm" or truth[a["text"]] == a["label"] else \
            ["--label", truth[a["text"]]]
        operator(fleet, "alerts", "verdict", str(a["id"]), verdict, *label)
    operator(fleet, "alerts", "export", "--device", DEVICE, "--with-source", "--out",
             str(workdir / "judged.jsonl"))


def _query(cli: list[str], *args: str) -> Any:
    """The ``result`` of ``nanofleet-agent query ARGS --json``, or None."""
    out = subprocess.run(cli + [*args, "--json"], capture_output=True, text=True)
    return json.loads(out.stdout).get("result") if out.returncode == 0 else None


# The PLC's own winding-temperature alarm, raised on purpose by the weekly test of the
# alarm chain ("Probealarm": test alarm): the model cannot know, the site does.
SELF_TEST = "{day};SPS1;A1201;Wicklungstemp. P3 zu hoch {n} Grad C (Probealarm)"


def mute_a_false_alarm(fleet: FleetSetup, cli: list[str], plc_log: Path) -> None:
    """The site tests its alarm chain every week and the device alerts on the test line: the
    operator calls it a false alarm and mutes its shape, and the next week's test line is
    classified and published but raises no alert (a verdict alone only teaches the next
    model)."""
    say("every week the site tests its alarm chain; the device alerts on the test line")
    first = SELF_TEST.format(day="28.11.2024 09:00:21", n=127)
    with open(plc_log, "a", encoding="utf-8") as f:
        f.write(first + "\n")
    alert = None
    deadline = time.monotonic() + 15
    while alert is None and time.monotonic() < deadline:
        time.sleep(0.3)
        out = subprocess.run([sys.executable, "-m", "fleet_server.cli", "alerts", "list",
                              "--device", DEVICE, "--limit", "20", "--json"],
                             capture_output=True, text=True, env=fleet.cli_env())
        listed = json.loads(out.stdout)["alerts"] if out.returncode == 0 else []
        alert = next((a for a in listed if a["text"] == first), None)
    if alert is None:
        out = subprocess.run(cli + ["classify", first], capture_output=True, text=True)
        print("  (no alert on it this run: nothing to mute)\n  " + out.stdout.strip())
        return
    print(f"  alert {alert['id']}: {alert['label']} {alert['score']:.2f}: {first}")
    say("the operator calls it a false alarm and mutes its message shape on the device: quiet "
        "now, not after the next model")
    operator(fleet, "alerts", "verdict", str(alert["id"]), "false-alarm")
    operator(fleet, "alerts", "mute", str(alert["id"]), "--days", "30", "--reason",
             "weekly alarm chain test")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (_query(cli, "mutes") or {}).get("mutes"):
        time.sleep(0.2)
    out = subprocess.run(cli + ["mutes"], capture_output=True, text=True)
    print("  $ nanofleet-agent query mutes\n  " + out.stdout.strip().replace("\n", "\n  "))
    before = ((_query(cli, "metrics") or {}).get("counters") or {}).get("alerts_muted", 0)
    nxt = SELF_TEST.format(day="05.12.2024 09:00:24", n=131)
    with open(plc_log, "a", encoding="utf-8") as f:
        f.write(nxt + "\n")
    muted = before
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and muted == before:
        time.sleep(0.2)
        muted = ((_query(cli, "metrics") or {}).get("counters") or {}).get("alerts_muted", 0)
    print(f"  next week: {nxt}\n  classified and published, its alert held back "
          f"(alerts_muted {before} -> {muted})", flush=True)
