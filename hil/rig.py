"""The HIL rig: runs a scenario against a real Mosquitto, a real fleet server and real
agents, injects its faults, records all MQTT traffic of the devices, judges its
expectations and writes a report (see docs/hil.md).

The run: set up (broker with persistence, fleet server with fresh keys, v1
published, devices powered on and their traffic flowing), then the timeline step by
step (a failed step — a wait_for that times out, a fault that cannot be injected —
ends the timeline; a failed expectation does not), then the background faults are
awaited, everything is stopped and collected, and the report is written. The run
passes only if every step ran and every expectation held.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from contract.mutes import AlertMute
from hil.analysis import DeviceFacts, device_metrics
from hil.broker import Mosquitto, free_port
from hil.devices import DeviceUnit, FleetEndpoints
from hil.drivers import make_drivers, transport_for
from hil.expect import facts_for, judge_step, wait_condition
from hil.faults import FaultInjector, FaultRun, crash_state_to_arm
from hil.fleet import FleetServer, FleetSetup, setup_fleet
from hil.links import Link, make_link, namespaces_unavailable
from hil.models import build_variant, tamper_stored_artifacts
from hil.observe import Observer
from hil.operator import Operator, publish_summary
from hil.report import RunReport, StepOutcome, Timeline, write_report
from hil.scenario import Scenario, resolve_sample
from hil.steps import (
    AnyStep,
    BrokerDown,
    DeployStep,
    MuteStep,
    NetworkLoss,
    PowerCut,
    PublishStep,
    SleepStep,
    TrafficStep,
    describe,
    targets,
)
from hil.traffic import TrafficWriter, base_lines
from nanomodel import default_bundle_path

READY_TIMEOUT_S = 90.0


class StepFailed(RuntimeError):
    """A step could not do what it says; the timeline stops."""


class RigBroker(Mosquitto):
    """Mosquitto with persistence (sessions and retained messages survive an outage) and
    extra listeners on the host ends of the devices' veth pairs."""

    def __init__(self, workdir: Path, port: int, extra_addresses: list[str]) -> None:
        self.extra_addresses = extra_addresses
        super().__init__(workdir, port=port, persistence=True)

    def _write_config(self) -> None:
        super()._write_config()
        with self.config.open("a", encoding="utf-8") as f:
            for address in self.extra_addresses:
                f.write(f"listener {self.port} {address}\nallow_anonymous true\n")


def device_drivers(scenario: Scenario, override: str | None) -> dict[str, str]:
    """Each device's driver: the scenario's, unless the run overrides all of them."""
    return {d.id: override or d.driver for d in scenario.devices}


def resolve_networks(scenario: Scenario, drivers: dict[str, str] | None = None,
                     ) -> tuple[dict[str, str], str | None]:
    """Each device's network kind, and why namespaces are unavailable (if they are).
    An SSH or systemd device always lives in a namespace (its target's own network)."""
    lossy = {s.device for s in scenario.steps if isinstance(s, NetworkLoss)}
    drivers = drivers or {}
    wanted = {d.id: "namespace" if drivers.get(d.id) in ("ssh", "systemd") else d.network
              for d in scenario.devices}
    why_not = None
    if any(k == "namespace" or (k == "auto" and d in lossy) for d, k in wanted.items()):
        why_not = namespaces_unavailable()
    out: dict[str, str] = {}
    for device, kind in wanted.items():
        if kind == "auto":
            kind = "direct" if device not in lossy else ("proxy" if why_not else "namespace")
        elif kind == "namespace" and why_not:
            raise RuntimeError(f"device {device!r} wants a network namespace, but {why_not}; "
                               "use network = \"proxy\" or \"auto\"")
        out[device] = kind
    return out, why_not


class Rig:
    def __init__(self, scenario: Scenario, report_dir: Path, *,
                 scenario_file: Path | None = None, keep_workdir: bool = False,
                 device_driver: str | None = None) -> None:
        self.scenario = scenario
        self.drivers = device_drivers(scenario, device_driver)
        self.scenario_file = scenario_file
        self.report_dir = report_dir
        self.keep = keep_workdir
        self.timeline = Timeline()
        self.units: dict[str, DeviceUnit] = {}
        self.links: dict[str, Link] = {}
        self.since_deploy: dict[str, float] = {d.id: 0.0 for d in scenario.devices}
        self.mutes: dict[str, tuple[AlertMute, float]] = {}  # device -> latest mute, when
        self.device_ids = [d.id for d in scenario.devices]
        self.deadline = time.monotonic() + scenario.max_duration_s
        self._stop_watch = threading.Event()
        self._noted_exits: set[tuple[str, int]] = set()
        # Short: the agents' control sockets live under it (Unix socket paths <= 107 bytes).
        self.workdir = Path(tempfile.mkdtemp(prefix="hil-"))
        self.broker: RigBroker | None = None
        self.server: FleetServer | None = None
        self.fleet: FleetSetup | None = None
        self.observer: Observer | None = None
        self.injector: FaultInjector | None = None
        self.environment: dict[str, Any] = {"host": platform.node(),
                                            "python": platform.python_version()}

    # --- set-up ------------------------------------------------------------------------
    def _setup(self) -> None:
        sc = self.scenario
        self.report_dir.mkdir(parents=True, exist_ok=True)
        networks, why_not = resolve_networks(sc, self.drivers)
        port = free_port()
        for device, kind in networks.items():
            self.links[device] = make_link(kind, port)
        if why_not:
            self.environment["network namespaces"] = f"unavailable ({why_not})"
        extra = [a for a in (ln.listen_address() for ln in self.links.values()) if a]
        self.broker = RigBroker(self.workdir / "broker", port, extra)
        self.broker.start()
        self.timeline.add("rig", f"mosquitto on 127.0.0.1:{port}"
                          + (f" and {', '.join(extra)}" if extra else ""))
        self.fleet = setup_fleet(self.workdir / "fleet", mqtt_port=port)
        # The same patience as for agents: a cold start of the server (FastAPI, SQLAlchemy,
        # TUF) took over 30 s here at a load average above 20 on 2 cores.
        self.server = FleetServer(self.fleet).start(timeout=READY_TIMEOUT_S)
        self.server.wait_mqtt(timeout=30.0)
        self.timeline.add("rig", f"fleet server on {self.fleet.url}")
        self.operator = Operator(self.fleet, self.workdir / "operator-cache")
        if sc.fleet.initial_release:
            result = self.operator.publish(default_bundle_path().read_bytes())
            self.timeline.add("rig", publish_summary(result))
        self.observer = Observer(port, self.device_ids, self.report_dir / "mqtt.jsonl")
        endpoints = FleetEndpoints(self.fleet.url, self.fleet.root_file)
        transports = {d.id: transport_for(self.links[d.id], d.ota_transport) for d in sc.devices}
        drivers = make_drivers(self.drivers, self.links, transports, self.workdir, sc.agent,
                               endpoints, self.timeline)
        for spec in sc.devices:
            driver = drivers[spec.id]
            traffic = sc.traffic_of(spec.id)
            sample = resolve_sample(traffic, self.scenario_file) \
                if traffic.source == "sample" else None
            writer = TrafficWriter(spec.id, base_lines(traffic, sample), traffic.lines_per_s,
                                   driver.append_lines)
            unit = DeviceUnit(driver, writer)
            unit.armed = crash_state_to_arm(sc.steps, 0, spec.id, self.device_ids)
            driver.power_on(crash_at_ota_state=unit.armed)
            self.units[spec.id] = unit
        for unit in self.units.values():
            unit.driver.wait_ready(READY_TIMEOUT_S)
            self.timeline.add("device", f"agent ready ({unit.driver.describe()}, OTA over "
                              f"{'mqtt' if unit.driver.link.kind != 'direct' else 'http'})",
                              unit.device_id)
        for unit in self.units.values():
            unit.writer.start()
        assert self.broker is not None
        self.injector = FaultInjector(self.timeline, self.broker, self.units, sc.steps,
                                      self._fault_done)
        threading.Thread(target=self._watch_exits, name="hil-exits", daemon=True).start()

    def _watch_exits(self) -> None:
        """Agents that exit although no power cut was injected (a crash) are noted."""
        while not self._stop_watch.wait(0.2):
            for unit in self.units.values():
                # The power on first: an exit read while the next power on starts belongs
                # to the run before, which was noted (or cut) already.
                key = (unit.device_id, unit.driver.power_ons)
                try:
                    code = unit.driver.exit_code()
                except Exception:  # a device that did not answer this time: asked again
                    continue
                if code is None or unit.cutting or key in self._noted_exits or \
                        key[1] != unit.driver.power_ons:
                    continue
                if unit.armed and code == 137:
                    continue  # the armed crash hook: the power_cut step takes it from here
                self._noted_exits.add(key)
                text = f"agent exited on its own with code {code}"
                unit.unexpected_exits.append(text)
                self.timeline.add("device", text, unit.device_id)

    def _fault_done(self, run: FaultRun) -> None:
        if run.index < len(self.outcomes) and self.outcomes[run.index].status == "background":
            outcome = self.outcomes[run.index]
            outcome.status = "failed" if run.error else "ok"
            outcome.detail = run.error or "fault over"
            outcome.duration_s = round(self.timeline.now() - outcome.started_s, 3)

    # --- the timeline ------------------------------------------------------------------
    def _remaining(self) -> float:
        return self.deadline - time.monotonic()

    def _run_step(self, index: int, step: AnyStep, outcome: StepOutcome) -> None:
        if isinstance(step, SleepStep):
            time.sleep(min(step.seconds, max(0.0, self._remaining())))
        elif isinstance(step, PublishStep):
            assert self.fleet is not None
            bundle = build_variant(step.variant, step.version, step.seed)
            result = self.operator.publish(bundle, step.minimum_version)
            outcome.detail = publish_summary(result)
            if step.variant == "tampered":
                changed = tamper_stored_artifacts(self.fleet.config.repo_path,
                                                  self.scenario.fleet.model, step.version)
                outcome.detail += f"; then altered {len(changed)} stored artifact(s)"
        elif isinstance(step, DeployStep):
            devices = targets(step, self.device_ids)
            now = time.time()
            for d in devices:
                self.since_deploy[d] = now
            result = self.operator.deploy(self.scenario.fleet.model, step.version, devices)
            outcome.detail = ", ".join(f"{d['device_id']} revision {d['revision']}"
                                       for d in result["devices"])
        elif isinstance(step, MuteStep):
            muted = []
            for d in targets(step, self.device_ids):
                mute = self.operator.mute_top(d, step.days)
                self.mutes[d] = (mute, time.time())
                muted.append(f"{d}: {mute.shape!r} ({mute.source})")
            outcome.detail = "; ".join(muted)
        elif isinstance(step, TrafficStep):
            for d in targets(step, self.device_ids):
                (self.units[d].writer.resume if step.run else self.units[d].writer.pause)()
        elif isinstance(step, PowerCut | BrokerDown | NetworkLoss):
            assert self.injector is not None
            if step.background:
                outcome.status = "background"
            self.injector.inject(index, step)
        elif step.action == "wait_for":
            assert self.observer is not None
            timeout = min(step.timeout_s, max(0.0, self._remaining()))
            met, detail = wait_condition(step, self.observer, self.units, self.since_deploy,
                                         self.device_ids, timeout)
            outcome.detail = detail
            if not met:
                raise StepFailed(detail)
        else:
            assert self.observer is not None
            for check in judge_step(step, self.observer, self.units, self.since_deploy,
                                    self.device_ids, index, self.mutes):
                self.timeline.checks.append(check)
                self.timeline.add("check", f"{check.check}: {'pass' if check.passed else 'FAIL'}"
                                  f" — {check.detail}", check.device)
            failed = [c for c in self.timeline.checks if c.step == index and not c.passed]
            outcome.detail = f"{len(failed)} failed" if failed else "passed"

    def _timeline(self) -> None:
        for index, step in enumerate(self.scenario.steps):
            outcome = self.outcomes[index]
            if self._remaining() <= 0:
                raise StepFailed(f"the run exceeded max_duration_s "
                                 f"({self.scenario.max_duration_s} s)")
            outcome.started_s = self.timeline.now()
            outcome.status = "running"
            self.timeline.add("step", f"[{index}] {outcome.description}")
            try:
                self._run_step(index, step, outcome)
            except Exception as exc:
                outcome.status = "failed"
                outcome.detail = str(exc) if isinstance(exc, StepFailed) else \
                    f"{type(exc).__name__}: {exc}"
                outcome.duration_s = round(self.timeline.now() - outcome.started_s, 3)
                self.timeline.add("step", f"[{index}] failed: {outcome.detail}")
                raise StepFailed(f"step {index} failed: {outcome.detail}") from None
            if outcome.status == "running":
                outcome.status = "ok"
                outcome.duration_s = round(self.timeline.now() - outcome.started_s, 3)

    # --- the run -----------------------------------------------------------------------
    def run(self) -> RunReport:
        self.outcomes = [StepOutcome(i, describe(s), status="pending")
                         for i, s in enumerate(self.scenario.steps)]
        error: str | None = None
        try:
            self._setup()
            self._timeline()
        except StepFailed as exc:
            error = str(exc)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.timeline.add("rig", f"run error: {error}")
        finally:
            devices = self._teardown()
            for o in self.outcomes:
                if o.status == "pending":
                    o.status = "skipped"
                elif o.status == "background":
                    o.status, o.detail = "failed", "the fault was still running at the end"
        report = self._report(error, devices)
        write_report(report, self.report_dir)
        return report

    def _facts(self, device: str) -> DeviceFacts:
        assert self.observer is not None
        return facts_for(device, self.observer, self.units[device], self.since_deploy[device])

    def _teardown(self) -> dict[str, dict[str, Any]]:
        if self.injector is not None:
            for run in self.injector.join(timeout=max(5.0, min(120.0, self._remaining()))):
                self.timeline.add("rig", f"fault of step {run.index} still running at the end")
        devices: dict[str, dict[str, Any]] = {}
        for unit in self.units.values():
            unit.writer.stop()
        time.sleep(0.5 if self.units else 0)
        for device, unit in self.units.items():
            facts = self._facts(device) if self.observer is not None else None
            devices[device] = {"driver": unit.driver.describe(), "network": unit.driver.link.kind,
                               "metrics": device_metrics(facts) if facts else {}}
        self._stop_watch.set()
        for unit in self.units.values():
            unit.cutting = True
            driver = unit.driver
            try:
                driver.shutdown()
                driver.collect(self.report_dir / "devices" / unit.device_id)
            except Exception as exc:  # one device's failure must not leak the others
                self.timeline.add("rig", f"collecting failed: {type(exc).__name__}: {exc}",
                                  unit.device_id)
            finally:
                driver.close()
        if self.observer is not None:
            self._add_device_events()
            self.observer.close()
        if self.server is not None:
            self.server.stop()
            shutil.copyfile(self.server.log_path, self.report_dir / "fleet-server.log")
        if self.broker is not None:
            self.broker.stop()
            if self.broker.log.exists():
                shutil.copyfile(self.broker.log, self.report_dir / "mosquitto.log")
        for link in self.links.values():
            link.close()
        if self.keep:
            self.timeline.add("rig", f"work directory kept: {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return devices

    def _add_device_events(self) -> None:
        """OTA events (device clock) and status changes (when the rig received them)."""
        assert self.observer is not None
        for device in self.device_ids:
            last = None
            for status in self.observer.snapshot(device).status:
                if status.get("state") != last:
                    last = status.get("state")
                    self.timeline.add("status", f"{last}", device, wall=status["_received"])
            for e in self.observer.ota_events(device):
                extra = " ".join(str(x) for x in (e.get("artifact"), e.get("reason")) if x)
                self.timeline.add("ota", f"{e['state']} v{e.get('from_version')}->"
                                  f"v{e.get('to_version')} {extra}".rstrip(), device,
                                  wall=e["ts"])

    def _report(self, error: str | None, devices: dict[str, dict[str, Any]]) -> RunReport:
        checks = self.timeline.checks
        steps_ok = all(o.status == "ok" for o in self.outcomes)
        passed = error is None and steps_ok and bool(checks) and all(c.passed for c in checks)
        if error is None and not checks:
            error = "the scenario has no expect step: nothing was checked"
        files = sorted(str(p.relative_to(self.report_dir)) for p in self.report_dir.rglob("*")
                       if p.is_file() and p.name not in ("report.json", "report.md"))
        return RunReport(
            scenario=self.scenario.name, description=self.scenario.description,
            scenario_file=str(self.scenario_file or ""), params=dict(self.scenario.params),
            passed=passed, error=error, duration_s=round(self.timeline.now(), 3),
            started_at=self.timeline.start_wall,
            environment={**self.environment,
                         "links": {d: ln.describe() for d, ln in self.links.items()}},
            devices=devices, steps=self.outcomes, checks=checks,
            timeline=self.timeline.sorted_events(), files=files + ["report.json", "report.md"])


def run_scenario(scenario: Scenario, report_dir: Path, scenario_file: Path | None = None,
                 keep_workdir: bool = False, device_driver: str | None = None) -> RunReport:
    return Rig(scenario, report_dir, scenario_file=scenario_file, keep_workdir=keep_workdir,
               device_driver=device_driver).run()
