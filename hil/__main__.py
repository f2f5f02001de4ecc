"""``python -m hil run SCENARIO [--report-dir D] [--param NAME=VALUE ...] [--junit FILE]
[--driver ssh]`` and
``python -m hil list``: run a HIL scenario (exit code 0 only if every expectation
held) or list the shipped ones."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hil.scenario import ScenarioError, find_scenario, load_scenario, shipped_scenarios

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _params(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ScenarioError("command line", [f"--param {pair!r}: use NAME=VALUE"])
        out[name.strip()] = value.strip()
    return out


def cmd_list() -> int:
    for path in shipped_scenarios():
        try:
            sc = load_scenario(path)
        except ScenarioError as exc:
            print(f"{path.stem:34s} INVALID: {exc.problems[0]}")
            continue
        first = sc.description.strip().splitlines()[0] if sc.description.strip() else ""
        params = " ".join(f"{k}={v}" for k, v in sc.params.items())
        print(f"{path.stem:34s} {len(sc.devices)} device(s), {len(sc.steps)} steps"
              + (f"  [params: {params}]" if params else ""))
        if first:
            print(f"    {first}")
    return EXIT_PASSED


def cmd_run(args: argparse.Namespace) -> int:
    from hil.rig import run_scenario  # the rig imports the whole stack: only when running

    path = find_scenario(args.scenario)
    scenario = load_scenario(path, _params(args.param))
    report_dir = args.report_dir or Path("hil-reports") / \
        f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"running {scenario.name} ({path}); report in {report_dir}", flush=True)
    report = run_scenario(scenario, report_dir, scenario_file=path, keep_workdir=args.keep,
                          device_driver=args.driver)
    if args.junit:
        from hil.report import junit_xml

        args.junit.parent.mkdir(parents=True, exist_ok=True)
        args.junit.write_text(junit_xml(report), encoding="utf-8")
    for check in report.checks:
        print(f"  {'pass' if check.passed else 'FAIL'}  {check.check:<20s} {check.device:<12s} "
              f"{check.detail}")
    if report.error:
        print(f"  run error: {report.error}")
    print(f"{'PASSED' if report.passed else 'FAILED'} in {report.duration_s:.1f} s; "
          f"{report_dir / 'report.md'}")
    return EXIT_PASSED if report.passed else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a scenario against real broker, server and agents")
    run.add_argument("scenario", help="a scenario file, or the name of a shipped one")
    run.add_argument("--report-dir", type=Path, help="where report.json, report.md, the MQTT "
                     "traffic and the devices' logs go (default hil-reports/NAME-TIME)")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="override a value of the scenario's [params] (repeatable)")
    run.add_argument("--junit", type=Path, metavar="FILE",
                     help="also write the run as JUnit XML (a testcase per step) for CI")
    run.add_argument("--driver", choices=["local", "ssh", "systemd", "qemu-arm64"], default=None,
                     help="run every device with this driver (ssh: a Debian root file "
                     "system with the .deb, in its own network namespace, reached over "
                     "SSH; systemd: the .deb run by its unit under systemd as PID 1 of a "
                     "container; qemu-arm64: the arm64 .deb in an arm64 root file system under "
                     "emulation; see docs/hil.md); default: each device's own")
    run.add_argument("--keep", action="store_true",
                     help="keep the work directory (state dirs, broker, fleet server)")
    sub.add_parser("list", help="the shipped scenarios")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list()
        return cmd_run(args)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
