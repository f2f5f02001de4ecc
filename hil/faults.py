"""Fault injection: power cuts, broker outages, one device's network loss.

- ``power_cut``: kill -9 of the agent (no clean-up runs; its traffic stops, as a
  powered-off device writes no logs), power back on after ``off_s``. With
  ``at_ota_state`` the cut happens right after the agent persists that OTA state,
  the agent having been started through :mod:`hil.ota_crash` (``os._exit(137)``). It
  is armed when the agent starts, so the rig starts an agent armed for the next cut
  planned for it (:func:`crash_state_to_arm`); if a cut comes that the running agent
  is not armed for, the agent is restarted cleanly to arm it (the timeline says so).
- ``broker_down``: Mosquitto stops (SIGTERM: sessions and retained messages are
  saved) and starts again on the same port after ``duration_s``.
- ``network_loss``: the device's :class:`~hil.links.Link` is cut for ``duration_s``
  (a veth taken down in a network namespace, or the rig's TCP relay frozen).

A fault either blocks the timeline until it is over or runs in the background
(``background = true``); :meth:`FaultInjector.join` waits for those at the end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from hil.broker import Mosquitto
from hil.devices import DeviceUnit
from hil.ota_crash import CRASH_EXIT
from hil.report import Timeline
from hil.steps import AnyStep, BrokerDown, DeployStep, NetworkLoss, PowerCut, targets

READY_TIMEOUT_S = 60.0


class FaultError(RuntimeError):
    """A fault could not be injected as the scenario says."""


def crash_state_to_arm(steps: Sequence[AnyStep], start: int, device: str,
                       all_devices: list[str]) -> str | None:
    """The OTA state an agent powered on before ``steps[start]`` should crash at: that of
    the device's next power cut if it names one and no deploy to the device comes first
    (an update that starts earlier must not hit the hook)."""
    for step in steps[start:]:
        if isinstance(step, DeployStep) and device in targets(step, all_devices):
            return None
        if isinstance(step, PowerCut) and step.device == device:
            return step.at_ota_state
    return None


class FaultRun:
    """One injected fault (its thread when in the background)."""

    def __init__(self, index: int, name: str) -> None:
        self.index, self.name = index, name
        self.error: str | None = None
        self.done = threading.Event()
        self.thread: threading.Thread | None = None


class FaultInjector:
    def __init__(self, timeline: Timeline, broker: Mosquitto, units: dict[str, DeviceUnit],
                 steps: Sequence[AnyStep], on_done: Callable[[FaultRun], None]) -> None:
        self.timeline = timeline
        self.broker = broker
        self.units = units
        self.steps = steps
        self.runs: list[FaultRun] = []
        self._on_done = on_done

    def inject(self, index: int, step: PowerCut | BrokerDown | NetworkLoss) -> FaultRun:
        """Run the fault; in the background if the step says so. Raises FaultError when
        a blocking fault fails."""
        run = FaultRun(index, step.fault)
        self.runs.append(run)

        def body() -> None:
            try:
                if isinstance(step, PowerCut):
                    self._power_cut(index, step)
                elif isinstance(step, BrokerDown):
                    self._broker_down(step)
                else:
                    self._network_loss(step)
            except Exception as exc:  # reported as the step's failure
                run.error = f"{type(exc).__name__}: {exc}"
                self.timeline.add("fault", f"{step.fault} failed: {run.error}",
                                  getattr(step, "device", None))
            finally:
                run.done.set()
                self._on_done(run)

        if step.background:
            run.thread = threading.Thread(target=body, name=f"fault-{index}", daemon=True)
            run.thread.start()
        else:
            body()
            if run.error:
                raise FaultError(run.error)
        return run

    def join(self, timeout: float) -> list[FaultRun]:
        """Wait for background faults; the ones still running after ``timeout``."""
        deadline = time.monotonic() + timeout
        for run in self.runs:
            run.done.wait(max(0.0, deadline - time.monotonic()))
        return [r for r in self.runs if not r.done.is_set()]

    # --- the faults --------------------------------------------------------------------
    def _power_cut(self, index: int, step: PowerCut) -> None:
        unit = self.units[step.device]
        driver = unit.driver
        if step.at_ota_state is None:
            unit.cutting = True
            unit.writer.pause()
            driver.power_cut()
            self.timeline.add("fault", "power cut (kill -9 of the agent)", step.device)
        else:
            if unit.armed != step.at_ota_state:
                self.timeline.add("fault", f"arming the crash hook at {step.at_ota_state}: "
                                  "clean restart of the agent", step.device)
                unit.cutting = True  # the clean stop is the rig's, not a crash
                try:
                    driver.shutdown()
                    driver.power_on(crash_at_ota_state=step.at_ota_state)
                finally:
                    unit.cutting = False
                unit.armed = step.at_ota_state
                driver.wait_ready(READY_TIMEOUT_S)
            unit.cutting = True
            deadline = time.monotonic() + step.within_s
            while driver.exit_code() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            code = driver.exit_code()
            if code is None:
                unit.cutting = False
                raise FaultError(f"{step.device} did not reach OTA state {step.at_ota_state} "
                                 f"within {step.within_s} s")
            unit.writer.pause()
            if code != CRASH_EXIT:
                unit.cutting = False
                raise FaultError(f"{step.device}'s agent exited with {code}, not at the "
                                 f"crash hook ({CRASH_EXIT})")
            driver.power_cut()  # collects the process
            self.timeline.add("fault", f"power cut right after OTA state {step.at_ota_state} "
                              "was persisted (agent died with exit 137)", step.device)
        time.sleep(step.off_s)
        if step.new_boot:
            driver.new_boot()
        arm = crash_state_to_arm(self.steps, index + 1, step.device, list(self.units))
        self.timeline.add("fault", f"power back on after {step.off_s} s"
                          + (" (a new boot)" if step.new_boot else " (same boot: the agent "
                             "alone had died)")
                          + (f" (crash hook armed at {arm})" if arm else ""), step.device)
        driver.power_on(crash_at_ota_state=arm)
        unit.armed = arm
        unit.cutting = False
        unit.writer.resume()  # the device's own logs start with its power
        driver.wait_ready(READY_TIMEOUT_S)
        self.timeline.add("device", "agent answering again", step.device)

    def _broker_down(self, step: BrokerDown) -> None:
        self.broker.stop()
        self.timeline.add("fault", f"broker down for {step.duration_s} s")
        time.sleep(step.duration_s)
        self.broker.start()
        self.timeline.add("fault", f"broker back on port {self.broker.port}")

    def _network_loss(self, step: NetworkLoss) -> None:
        link = self.units[step.device].driver.link
        link.cut()
        self.timeline.add("fault", f"network lost ({link.kind}) for {step.duration_s} s",
                          step.device)
        try:
            time.sleep(step.duration_s)
        finally:
            link.restore()
        self.timeline.add("fault", "network restored", step.device)
