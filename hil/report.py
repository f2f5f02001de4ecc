"""The run's timeline and its report: ``report.json`` (for machines) and ``report.md``
(for people), written into the report directory beside the devices' logs and
``mqtt.jsonl`` (every message the devices published)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPORT_FORMAT = 1


@dataclass
class Event:
    t: float  # seconds since the run started
    wall: float  # unix time
    kind: str  # step, fault, ota, device, rig, check
    device: str | None
    text: str


@dataclass
class StepOutcome:
    index: int
    description: str
    status: str = "running"  # running, ok, failed, skipped
    started_s: float = 0.0
    duration_s: float = 0.0
    detail: str = ""


@dataclass
class CheckOutcome:
    step: int
    check: str
    device: str
    passed: bool
    detail: str


class Timeline:
    """Everything that happened, in order (thread-safe)."""

    def __init__(self) -> None:
        self.start_wall = time.time()
        self.start = time.monotonic()
        self.events: list[Event] = []
        self.steps: list[StepOutcome] = []
        self.checks: list[CheckOutcome] = []
        self.lock = threading.Lock()

    def now(self) -> float:
        return round(time.monotonic() - self.start, 3)

    def at(self, wall: float) -> float:
        return round(wall - self.start_wall, 3)

    def add(self, kind: str, text: str, device: str | None = None,
            wall: float | None = None) -> None:
        when = time.time() if wall is None else wall
        with self.lock:
            self.events.append(Event(self.at(when), when, kind, device, text))

    def sorted_events(self) -> list[Event]:
        with self.lock:
            return sorted(self.events, key=lambda e: e.t)


@dataclass
class RunReport:
    scenario: str
    description: str
    scenario_file: str
    params: dict[str, Any]
    passed: bool
    error: str | None
    duration_s: float
    started_at: float
    environment: dict[str, Any]
    devices: dict[str, dict[str, Any]]
    steps: list[StepOutcome]
    checks: list[CheckOutcome]
    timeline: list[Event]
    files: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["format"] = REPORT_FORMAT
        doc["summary"] = {
            "checks_passed": sum(c.passed for c in self.checks),
            "checks_failed": sum(not c.passed for c in self.checks),
            "steps_failed": sum(s.status == "failed" for s in self.steps),
            "lines_written": sum(d["metrics"].get("lines_written", 0)
                                 for d in self.devices.values()),
            "lines_lost": sum(d["metrics"].get("lines_lost", 0) for d in self.devices.values()),
        }
        return doc


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _update_text(u: dict[str, Any]) -> str:
    text = f"v{u['from_version']}->v{u['to_version']} {u['final'] or 'unfinished'}"
    if u["reason"]:
        text += f" ({u['reason']})"
    if u["duration_s"] is not None:
        text += f" in {u['duration_s']:.1f} s"
    return text


def markdown(report: RunReport) -> str:
    doc = report.to_json()
    s = doc["summary"]
    verdict = "PASSED" if report.passed else "FAILED"
    out = [f"# HIL run: {report.scenario} — {verdict}", ""]
    if report.description:
        out += [report.description.strip(), ""]
    out += [f"- scenario file: `{report.scenario_file}`",
            f"- started: {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(report.started_at))}"
            f", duration {report.duration_s:.1f} s",
            f"- params: {', '.join(f'{k}={v}' for k, v in report.params.items()) or 'none'}",
            f"- checks: {s['checks_passed']} passed, {s['checks_failed']} failed; steps failed: "
            f"{s['steps_failed']}",
            f"- lines written {s['lines_written']}, lost {s['lines_lost']}"]
    out += [f"- {k}: {v}" for k, v in report.environment.items()]
    if report.error:
        out += ["", f"**Run error:** {report.error}"]
    out += ["", "## Expectations", "", "| step | check | device | result | detail |",
            "|---|---|---|---|---|"]
    out += [f"| {c.step} | {c.check} | {c.device} | {'pass' if c.passed else '**FAIL**'} | "
            f"{_cell(c.detail)} |" for c in report.checks]
    out += ["", "## Devices", "", "| device | driver | lines written | with result | lost | "
            "duplicate / replayed batches | results by version | max gap in updates (s) | "
            "inference errors | updates |", "|---|---|---|---|---|---|---|---|---|---|"]
    for dev, d in report.devices.items():
        m = d["metrics"]
        if not m:
            out.append(f"| {dev} | {_cell(d['driver'])} | - | - | - | - | - | - | - | - |")
            continue
        ups = "; ".join(_update_text(u) for u in m["updates"]) or "-"
        by_version = ", ".join(f"v{k}: {v}" for k, v in m["results_by_version"].items()) or "-"
        out.append(f"| {dev} | {_cell(d['driver'])} | {m['lines_written']} | "
                   f"{m['lines_with_result']} | {m['lines_lost']} | "
                   f"{m['duplicate_batches']} / {m['replayed_batches']} | {by_version} | "
                   f"{_or_dash(m['max_result_gap_during_updates_s'])} | {m['inference_errors']} | "
                   f"{_cell(ups)} |")
    out += ["", "## Steps", "", "| # | step | status | at (s) | took (s) | detail |",
            "|---|---|---|---|---|---|"]
    out += [f"| {st.index} | `{_cell(st.description)}` | {st.status} | {st.started_s:.1f} | "
            f"{st.duration_s:.1f} | {_cell(st.detail)} |" for st in report.steps]
    out += ["", "## Timeline", "", "| t (s) | kind | device | event |", "|---|---|---|---|"]
    out += [f"| {e.t:.2f} | {e.kind} | {e.device or ''} | {_cell(e.text)} |"
            for e in report.timeline]
    if report.files:
        out += ["", "## Files", ""] + [f"- `{f}`" for f in report.files]
    return "\n".join(out) + "\n"


def write_report(report: RunReport, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "report.json", directory / "report.md"
    json_path.write_text(json.dumps(report.to_json(), indent=2, sort_keys=False, default=str)
                         + "\n", encoding="utf-8")
    md_path.write_text(markdown(report), encoding="utf-8")
    return json_path, md_path


def junit_xml(report: RunReport) -> str:
    """The run as JUnit XML for CI: one testsuite (the scenario), one testcase per step
    (a failed step, or an expect step with a failed check, is a <failure>; a step that
    never ran is <skipped>), plus a ``rig`` testcase carrying a run error that no step
    explains."""
    import xml.etree.ElementTree as ET

    failed_checks: dict[int, list[CheckOutcome]] = {}
    for c in report.checks:
        if not c.passed:
            failed_checks.setdefault(c.step, []).append(c)
    suite = ET.Element("testsuite", name=report.scenario, time=f"{report.duration_s:.3f}",
                       timestamp=time.strftime("%Y-%m-%dT%H:%M:%S",
                                               time.gmtime(report.started_at)))
    failures = skipped = 0
    for step in report.steps:
        case = ET.SubElement(suite, "testcase", classname=f"hil.{report.scenario}",
                             name=f"[{step.index}] {step.description}",
                             time=f"{step.duration_s:.3f}")
        bad = failed_checks.get(step.index, [])
        if step.status == "failed" or bad:
            failures += 1
            message = step.detail if step.status == "failed" else \
                f"{len(bad)} check(s) failed"
            failure = ET.SubElement(case, "failure", message=message, type=step.status)
            failure.text = "\n".join(f"{c.check} {c.device}: {c.detail}" for c in bad) or \
                step.detail
        elif step.status == "skipped":
            skipped += 1
            ET.SubElement(case, "skipped", message="not reached: an earlier step failed")
        if step.detail:
            ET.SubElement(case, "system-out").text = step.detail
    step_failed = any(s.status == "failed" for s in report.steps)
    if report.error and not step_failed:
        failures += 1
        case = ET.SubElement(suite, "testcase", classname=f"hil.{report.scenario}", name="rig")
        ET.SubElement(case, "failure", message=report.error, type="error").text = report.error
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    root = ET.Element("testsuites", name="nanofleet HIL", tests=suite.get("tests", "0"),
                      failures=str(failures), time=f"{report.duration_s:.3f}")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
