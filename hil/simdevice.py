"""Lightweight simulated devices: real MQTT connections, real contract messages.

Each :class:`SimDevice` has its own MQTT v5 connection (client id = device id), a
retained ``status`` with a Last Will, subscribes to its retained ``desired`` state and
answers it with the OTA state sequence a real agent publishes
(``downloading -> verifying -> staged -> smoke_testing -> trial -> committed``), or a
failure where its :class:`Behaviour` says so. ``action = "rollback"`` ends a trial
(or one about to start) with ``rolled_back`` / ``operator-rollback``, as the agent does.
No model runs: this is for rollout logic and scale, where real agents are too heavy.

One :class:`SimFleet` drives many devices from one thread: a selector loop over all
sockets (paho's external-loop callbacks) plus a timer heap, so a few processes hold a
thousand connections. Other threads talk to it only through :meth:`SimFleet.call`.

``python -m hil.simdevice --port 1883 --count 250 --prefix sim-`` runs a fleet
process until SIGTERM/SIGINT (for benchmarks: several such processes).
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import json
import queue
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from contract import topics
from contract.messages import DesiredState, ModelInfo, OtaEvent, OtaState, Status

STEPS: tuple[OtaState, ...] = ("downloading", "verifying", "staged", "smoke_testing", "trial")
AGENT_VERSION = "sim-0.1"


@dataclass
class Behaviour:
    """How a simulated device reacts to an update."""

    step_s: float = 0.02  # between two OTA states
    trial_s: float = 0.1  # time in trial before the verdict
    fail_at: OtaState | None = None  # trial: rolled_back; earlier states: failed
    fail_reason: str = "health-collapse"
    transient_failures: int = 0  # fail downloading with "unavailable" this many times first
    hang_in: OtaState | None = None  # stop reporting progress in this state


@dataclass
class SimDevice:
    device_id: str
    model: str = "nano-logs"
    version: int = 1
    slot: str = "logs"
    behaviour: Behaviour = field(default_factory=Behaviour)
    # --- runtime state (loop thread only) ---
    client: mqtt.Client | None = None
    connected: bool = False
    seq: int = 0
    state: OtaState = "idle"
    target: tuple[int, int, str | None] | None = None  # (version, revision, rollout id)
    failed_revision: int | None = None
    rollback_requested: bool = False
    desired_seen: int = 0
    history: list[tuple[str, int | None, str | None]] = field(default_factory=list)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def status_doc(self, state: str = "online") -> bytes:
        models = [ModelInfo(slot=self.slot, name=self.model, version=self.version,
                            label=f"v{self.version}", runtime="sim", sha256="0" * 64)]
        return Status(seq=self.next_seq(), device_id=self.device_id, state=state,  # type: ignore[arg-type]
                      agent_version=AGENT_VERSION, models=models, health="ok",
                      started_at=time.time()).model_dump_json().encode()


class SimFleet:
    """Many :class:`SimDevice` connections driven by one thread."""

    def __init__(self, port: int, devices: list[SimDevice], host: str = "127.0.0.1",
                 keepalive: int = 30) -> None:
        self.host, self.port, self.keepalive = host, port, keepalive
        self.devices = {d.device_id: d for d in devices}
        self._sel = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._tick = itertools.count()
        self._calls: queue.Queue[Callable[[], None]] = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="simfleet", daemon=True)
        self.events_sent = 0

    # --- control (any thread) ---------------------------------------------------------------
    def start(self, connect: bool = True) -> SimFleet:
        self._thread.start()
        if connect:
            self.call(self._connect_all)
        return self

    def stop(self) -> None:
        self.call(self._disconnect_all)
        time.sleep(0.1)
        self._stop.set()
        self._wake()
        self._thread.join(timeout=10)

    def call(self, fn: Callable[[], Any], wait: bool = True, timeout: float = 10.0) -> Any:
        """Run ``fn`` on the loop thread (every paho call happens there)."""
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["result"] = fn()
            except Exception as exc:
                box["error"] = exc
            done.set()

        self._calls.put(run)
        self._wake()
        if wait and not done.wait(timeout):
            raise TimeoutError("simulated fleet loop did not answer")
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def connect(self, device_id: str) -> None:
        self.call(lambda: self._connect(self.devices[device_id]))

    def drop(self, device_id: str) -> None:
        """Lose the connection: the broker publishes the Last Will (status offline)."""
        self.call(lambda: self._drop(self.devices[device_id]))

    def wait_connected(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(d.connected for d in self.devices.values()):
            if time.monotonic() > deadline:
                missing = [d.device_id for d in self.devices.values() if not d.connected]
                raise TimeoutError(f"not connected: {missing[:10]}")
            time.sleep(0.02)

    def snapshot(self) -> dict[str, tuple[str, int]]:
        """device id -> (OTA state, live version)."""
        return self.call(lambda: {d.device_id: (d.state, d.version)
                                  for d in self.devices.values()})

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"x")

    # --- the loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        last_misc = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            timeout = 0.5 if not self._timers else max(0.0, min(0.5, self._timers[0][0] - now))
            for key, mask in self._sel.select(timeout):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(4096)
                    continue
                client: mqtt.Client = key.data
                if mask & selectors.EVENT_READ:
                    client.loop_read()
                if mask & selectors.EVENT_WRITE:
                    client.loop_write()
            while True:
                try:
                    self._calls.get_nowait()()
                except queue.Empty:
                    break
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, fn = heapq.heappop(self._timers)
                fn()
            if now - last_misc >= 1.0:
                last_misc = now
                for d in self.devices.values():
                    if d.client is not None:
                        d.client.loop_misc()

    def _after(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._tick), fn))

    # --- connections (loop thread) ------------------------------------------------------
    def _connect_all(self) -> None:
        for dev in self.devices.values():
            self._connect(dev)

    def _connect(self, dev: SimDevice) -> None:
        if dev.client is None:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=dev.device_id,
                            protocol=mqtt.MQTTv5, userdata=dev)
            c.on_socket_open = self._on_socket_open
            c.on_socket_close = lambda cl, ud, sock: self._unregister(sock)
            c.on_socket_register_write = self._want_write
            c.on_socket_unregister_write = self._written
            c.on_connect = self._on_connect
            c.on_disconnect = self._on_disconnect
            c.on_message = self._on_message
            dev.client = c
        # The Will is stamped now; the server applies statuses in arrival order.
        dev.client.will_set(topics.status(dev.device_id), dev.status_doc("offline"), qos=1,
                            retain=True)
        dev.client.connect(self.host, self.port, keepalive=self.keepalive)

    def _on_socket_open(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._sel.register(sock, selectors.EVENT_READ, client)

    def _want_write(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, client)

    def _written(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._sel.modify(sock, selectors.EVENT_READ, client)

    def _unregister(self, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(sock)

    def _drop(self, dev: SimDevice) -> None:
        if dev.client is not None and dev.connected:
            dev.connected = False
            # MQTT v5 reason 0x04: disconnect *with* the Will message, as if the link died.
            dev.client.disconnect(ReasonCode(PacketTypes.DISCONNECT, identifier=4))

    def _disconnect_all(self) -> None:
        for d in self.devices.values():
            if d.client is not None and d.connected:
                d.connected = False
                d.client.publish(topics.status(d.device_id), d.status_doc("stopped"), qos=1,
                                 retain=True)
                d.client.disconnect()

    def _on_connect(self, client: mqtt.Client, dev: SimDevice, flags: Any, rc: ReasonCode,
                    props: Any = None) -> None:
        if rc.is_failure:
            return
        dev.connected = True
        client.publish(topics.status(dev.device_id), dev.status_doc(), qos=1, retain=True)
        client.subscribe(topics.desired(dev.device_id), qos=1)

    def _on_disconnect(self, client: mqtt.Client, dev: SimDevice, flags: Any, rc: ReasonCode,
                       props: Any = None) -> None:
        dev.connected = False

    # --- the OTA behaviour (loop thread) ------------------------------------------------
    def _on_message(self, client: mqtt.Client, dev: SimDevice, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:
            return
        doc = DesiredState.model_validate_json(msg.payload)
        dev.desired_seen += 1
        entry = doc.slots.get(dev.slot)
        if entry is None or entry.model != dev.model:
            return
        if doc.action == "rollback":
            if dev.state in STEPS:
                dev.rollback_requested = True
                if dev.state == "trial":
                    self._finish(dev, "rolled_back", "operator-rollback",
                                 f"rollback asked for (rollout {doc.rollout_id})")
            return
        if dev.state in STEPS or entry.version == dev.version:
            return  # one update at a time; already live
        if dev.failed_revision == doc.revision:
            return  # refused this revision already: wait for a new one
        if entry.version < dev.version:
            dev.target = (entry.version, doc.revision, doc.rollout_id)
            self._finish(dev, "failed", "downgrade", f"v{entry.version} is below the live "
                         f"v{dev.version}")
            return
        dev.target = (entry.version, doc.revision, doc.rollout_id)
        dev.rollback_requested = False
        self._step(dev, 0)

    def _step(self, dev: SimDevice, index: int) -> None:
        if not dev.connected or dev.target is None:
            self._after(0.2, lambda: self._step(dev, index))  # offline: the spool waits
            return
        b = dev.behaviour
        state = STEPS[index]
        if state == "downloading" and b.transient_failures > 0:
            b.transient_failures -= 1
            self._report(dev, "downloading")
            self._after(b.step_s, lambda: self._finish(dev, "failed", "unavailable",
                                                       "simulated download error"))
            return
        self._report(dev, state)
        if b.hang_in == state:
            return
        if state == "trial" and dev.rollback_requested:
            self._finish(dev, "rolled_back", "operator-rollback", "rollback asked for")
            return
        if b.fail_at == state:
            verdict: OtaState = "rolled_back" if state == "trial" else "failed"
            delay = b.trial_s if state == "trial" else b.step_s
            self._after(delay, lambda: self._finish(dev, verdict, b.fail_reason,
                                                    f"simulated {b.fail_reason}"))
            return
        if state == "trial":
            self._after(b.trial_s, lambda: self._finish(dev, "committed", None, None))
        else:
            self._after(b.step_s, lambda: self._step(dev, index + 1))

    def _finish(self, dev: SimDevice, state: OtaState, reason: str | None,
                detail: str | None) -> None:
        if dev.state not in STEPS and state != "failed":
            return  # e.g. a rollback after the verdict
        if state == "committed" and dev.rollback_requested:
            state, reason, detail = "rolled_back", "operator-rollback", "rollback asked for"
        assert dev.target is not None
        old = dev.version
        if state == "committed":
            dev.version = dev.target[0]
        else:
            dev.failed_revision = dev.target[1]
        self._report(dev, state, reason, detail, from_version=old)
        if state in ("committed", "rolled_back") and dev.client is not None:
            dev.client.publish(topics.status(dev.device_id), dev.status_doc(), qos=1,
                               retain=True)

    def _report(self, dev: SimDevice, state: OtaState, reason: str | None = None,
                detail: str | None = None, from_version: int | None = None) -> None:
        assert dev.target is not None and dev.client is not None
        dev.state = state
        dev.history.append((state, dev.target[0], reason))
        event = OtaEvent(seq=dev.next_seq(), device_id=dev.device_id, slot=dev.slot,
                         state=state, from_version=from_version or dev.version,
                         to_version=dev.target[0], rollout_id=dev.target[2],
                         artifact="delta" if state != "downloading" else None,
                         bytes_downloaded=3000 if state not in ("downloading",) else None,
                         reason=reason, detail=detail)
        dev.client.publish(topics.ota(dev.device_id), event.model_dump_json(), qos=1)
        self.events_sent += 1


def make_devices(prefix: str, count: int, start: int = 0, version: int = 1,
                 behaviour: Callable[[int], Behaviour] | None = None) -> list[SimDevice]:
    return [SimDevice(f"{prefix}{i:04d}", version=version,
                      behaviour=behaviour(i) if behaviour else Behaviour())
            for i in range(start, start + count)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.simdevice",
                                description="Run simulated devices until SIGTERM.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--start", type=int, default=0, help="first device number")
    p.add_argument("--prefix", default="sim-")
    p.add_argument("--version", type=int, default=1, help="live model version at start")
    p.add_argument("--step-s", type=float, default=0.02)
    p.add_argument("--trial-s", type=float, default=0.1)
    p.add_argument("--fail-trial-every", type=int, default=0,
                   help="every Nth device fails its trial (0: none)")
    args = p.parse_args(argv)

    def behaviour(i: int) -> Behaviour:
        fail = args.fail_trial_every and i % args.fail_trial_every == 0
        return Behaviour(step_s=args.step_s, trial_s=args.trial_s,
                         fail_at="trial" if fail else None)

    fleet = SimFleet(args.port, make_devices(args.prefix, args.count, args.start, args.version,
                                             behaviour), host=args.host).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    states = fleet.snapshot()
    fleet.stop()
    print(json.dumps({"devices": len(states), "events_sent": fleet.events_sent,
                      "committed": sum(1 for s, _ in states.values() if s == "committed")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
