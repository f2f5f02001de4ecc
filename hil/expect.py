"""``wait_for`` and ``expect`` steps: gather what the rig knows about each device
(:class:`~hil.analysis.DeviceFacts`) and ask the pure checks in :mod:`hil.analysis`,
retrying until the condition holds or time runs out."""

from __future__ import annotations

import time
from typing import Any

from agent.control import DaemonNotRunning
from contract.mutes import AlertMute
from hil.analysis import DeviceFacts, Expectation, judge, updates
from hil.devices import DeviceUnit
from hil.observe import Observer
from hil.report import CheckOutcome
from hil.steps import (
    WaitOnline,
    WaitOtaDone,
    WaitOtaState,
    WaitResults,
    targets,
)

POLL_S = 0.1
WaitCondition = WaitOtaState | WaitOtaDone | WaitResults | WaitOnline


def _ask(unit: DeviceUnit, cmd: str) -> Any:
    if not unit.driver.running:
        return None
    try:
        answer = unit.driver.query(cmd)
    except (DaemonNotRunning, OSError, ValueError):
        return None
    return answer.get("result") if answer.get("ok") else None


def facts_for(device: str, observer: Observer, unit: DeviceUnit, since: float,
              written: int | None = None,
              mute: tuple[AlertMute, float] | None = None) -> DeviceFacts:
    metrics = _ask(unit, "metrics")
    return DeviceFacts(
        device=device, record=observer.snapshot(device),
        written=unit.writer.written if written is None else written, since=since,
        live_models=_ask(unit, "models"),
        live_counters=metrics.get("counters") if isinstance(metrics, dict) else None,
        unexpected_exits=list(unit.unexpected_exits), mute=mute)


def _events_since(observer: Observer, device: str, since: float) -> list[dict[str, Any]]:
    # Events carry the device's clock: the same machine here (a remote device needs NTP).
    return [e for e in observer.ota_events(device) if e["ts"] >= since]


def _met(step: WaitCondition, observer: Observer, device: str, since: float,
         baseline: int) -> tuple[bool, str]:
    """Whether ``device`` meets the condition, and what it has so far."""
    if isinstance(step, WaitOtaState):
        events = _events_since(observer, device, since)
        hit = any(e["state"] == step.state and
                  (step.version is None or e.get("to_version") == step.version) for e in events)
        return hit, "reported " + (" -> ".join(e["state"] for e in events) or "no OTA event")
    if isinstance(step, WaitOtaDone):
        ups = updates(_events_since(observer, device, since))
        done = [u for u in ups if u.final is not None]
        states = " -> ".join(s for u in ups for s in u.states) or "no OTA event"
        return bool(done), f"reported {states}"
    if isinstance(step, WaitResults):
        got = len(observer.lines_seen(device)) - baseline
        return got >= step.count, f"{got} new lines with a result (wanted {step.count})"
    status = observer.last_status(device)
    state = status.get("state") if status else "no status"
    return state == "online", f"status {state}"


def wait_condition(step: WaitCondition, observer: Observer, units: dict[str, DeviceUnit],
                   since_deploy: dict[str, float], device_ids: list[str],
                   timeout: float) -> tuple[bool, str]:
    """Poll until every targeted device meets ``step``'s condition (True) or ``timeout``."""
    devices = targets(step, device_ids)
    baseline = {d: len(observer.lines_seen(d)) for d in devices}
    start = time.monotonic()
    pending = list(devices)
    notes: dict[str, str] = {}
    while True:
        for d in list(pending):
            ok, notes[d] = _met(step, observer, d, since_deploy[d], baseline[d])
            if ok:
                pending.remove(d)
        took = time.monotonic() - start
        if not pending:
            return True, f"met after {took:.1f} s"
        if took >= timeout:
            return False, (f"{step.condition} not met within {timeout:.0f} s: " +
                           "; ".join(f"{d}: {notes[d]}" for d in pending))
        time.sleep(POLL_S)


def judge_step(step: Expectation, observer: Observer, units: dict[str, DeviceUnit],
               since_deploy: dict[str, float], device_ids: list[str],
               index: int, mutes: dict[str, tuple[AlertMute, float]] | None = None,
               ) -> list[CheckOutcome]:
    """The verdict of ``step`` on each targeted device (retried for up to within_s)."""
    devices = targets(step, device_ids)
    written = {d: units[d].writer.written for d in devices}  # lines in the logs by now
    deadline = time.monotonic() + step.within_s
    out = []
    for d in devices:
        while True:
            verdict = judge(step, facts_for(d, observer, units[d], since_deploy[d], written[d],
                                            (mutes or {}).get(d)))
            if verdict.passed or time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        out.append(CheckOutcome(index, step.check, d, verdict.passed, verdict.detail))
    return out
