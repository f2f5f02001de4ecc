"""JUnit XML of a HIL run (``python -m hil run ... --junit FILE``): it parses, has one
testcase per step, and marks failed steps, failed checks and steps never reached."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from hil.report import CheckOutcome, RunReport, StepOutcome, junit_xml


def report(steps: list[StepOutcome], checks: list[CheckOutcome],
           error: str | None) -> RunReport:
    return RunReport(scenario="demo_run", description="", scenario_file="x.toml", params={},
                     passed=False, error=error, duration_s=12.5, started_at=1_700_000_000.0,
                     environment={}, devices={}, steps=steps, checks=checks, timeline=[])


def cases(xml: str) -> tuple[ET.Element, list[ET.Element]]:
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    return suite, suite.findall("testcase")


def test_one_testcase_per_step_with_failures_marked() -> None:
    steps = [StepOutcome(0, "wait_for results", "ok", 0.0, 1.5, "20 results"),
             StepOutcome(1, "expect ota_final state=committed", "ok", 1.5, 0.1, "1 failed"),
             StepOutcome(2, "wait_for ota_done timeout_s=5", "failed", 1.6, 5.0,
                         "not met within 5 s"),
             StepOutcome(3, "expect live_model version=2", "skipped")]
    checks = [CheckOutcome(1, "ota_final", "pump-01", True, "committed"),
              CheckOutcome(1, "ota_final", "pump-02", False, "rolled_back, not committed")]
    suite, testcases = cases(junit_xml(report(steps, checks, "step 2 failed: not met")))
    assert [c.get("name") for c in testcases] == [
        "[0] wait_for results", "[1] expect ota_final state=committed",
        "[2] wait_for ota_done timeout_s=5", "[3] expect live_model version=2"]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "2", "1")
    assert testcases[0].find("failure") is None and testcases[0].find("skipped") is None
    failed_check = testcases[1].find("failure")
    assert failed_check is not None and "pump-02" in (failed_check.text or "")
    failed_step = testcases[2].find("failure")
    assert failed_step is not None and failed_step.get("message") == "not met within 5 s"
    assert testcases[3].find("skipped") is not None
    assert float(testcases[2].get("time", "0")) == 5.0
    assert all(c.get("classname") == "hil.demo_run" for c in testcases)


def test_a_run_error_no_step_explains_is_its_own_failed_testcase() -> None:
    steps = [StepOutcome(0, "sleep seconds=1", "ok", 0.0, 1.0)]
    suite, testcases = cases(junit_xml(report(steps, [], "RuntimeError: broker died")))
    assert [c.get("name") for c in testcases] == ["[0] sleep seconds=1", "rig"]
    rig_failure = testcases[1].find("failure")
    assert rig_failure is not None and "broker died" in (rig_failure.get("message") or "")
    assert suite.get("failures") == "1"


def test_a_passed_run_has_no_failure(tmp_path: Path) -> None:
    steps = [StepOutcome(0, "expect no_lost_lines", "ok", 0.0, 0.2, "passed")]
    checks = [CheckOutcome(0, "no_lost_lines", "pump-01", True, "all 40 lines")]
    path = tmp_path / "junit.xml"
    path.write_text(junit_xml(report(steps, checks, None)))
    suite, testcases = cases(path.read_text())
    assert suite.get("failures") == "0" and len(testcases) == 1
    assert testcases[0].find("failure") is None
