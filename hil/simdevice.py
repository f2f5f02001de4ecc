"""Lightweight simulated devices: real MQTT connections, the agent's real OTA reporting.

Each :class:`SimDevice` has its own MQTT v5 connection (client id = device id), a
retained ``status`` with a Last Will, subscribes to its retained ``desired`` state and
answers it as an agent does: its update record moves through the agent's own state
machine (``downloading -> verifying -> staged -> smoke_testing -> trial -> committed``,
or ``failed`` / ``rolled_back`` where its :class:`Behaviour` says so, or where the real
verification refuses the artifact), and each change is published as the agent's
``OtaEvent``. ``action = "rollback"`` ends a trial (or one about to start) with
``rolled_back`` / ``operator-rollback``. No model runs: this is for rollout logic and
scale, where real agents are too heavy. With a :class:`~hil.simota.VerifyKit` the
devices also run the agent's real TUF refresh, delta download, delta apply and hash
checks (see :mod:`hil.simota`).

One :class:`SimFleet` drives many devices from one thread: a selector loop over all
sockets (paho's external-loop callbacks) plus a timer heap, so a few processes hold a
thousand connections. Other threads talk to it only through :meth:`SimFleet.call`.

``python -m hil.simdevice --port 1883 --count 250 --prefix sim-`` runs a fleet
process until SIGTERM/SIGINT (for benchmarks: several such processes; ``--verify``
with ``--repo-url``, ``--root`` and ``--base-bundle`` for the real verification path).
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
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from agent.ota.record import InstalledRef
from contract import topics
from contract.bundle_features import BUNDLE_FEATURES
from contract.messages import DesiredState, ModelInfo, OtaEvent, OtaState, Status
from hil.simota import NO_SHA, Behaviour, DeviceOta, OtaDriver, VerifyKit

STEPS: tuple[OtaState, ...] = ("downloading", "verifying", "staged", "smoke_testing", "trial")
AGENT_VERSION = "sim-0.1"

__all__ = ["STEPS", "Behaviour", "SimDevice", "SimFleet", "make_devices"]


@dataclass
class SimDevice:
    device_id: str
    model: str = "nano-logs"
    version: int = 1  # provisioned version (plain mode); the live one is ``live_version``
    slot: str = "logs"
    behaviour: Behaviour = field(default_factory=Behaviour)
    # The bundle features its status says it reads: today's agent's; None: an agent before
    # December 2026, which says nothing (the fleet server skips bundles it cannot read).
    reads: tuple[str, ...] | None = tuple(sorted(BUNDLE_FEATURES))
    # --- runtime state (loop thread only) ---
    client: mqtt.Client | None = None
    connected: bool = False
    seq: int = 0
    desired_seen: int = 0
    ota: DeviceOta = field(init=False)
    outbox: list[bytes] = field(default_factory=list)  # OTA events while offline (the spool)

    def __post_init__(self) -> None:
        self.provision(InstalledRef(model=self.model, version=self.version, sha256=NO_SHA,
                                    file="simulated"))

    def provision(self, base: InstalledRef) -> None:
        """Start from ``base`` (a fresh record): before the fleet connects."""
        self.model, self.version = base.model, base.version
        self.ota = DeviceOta(self.device_id, self.slot, base, self.behaviour)

    @property
    def state(self) -> OtaState:
        return self.ota.record.state

    @property
    def live_version(self) -> int:
        return self.ota.live.version

    @property
    def history(self) -> list[tuple[str, int | None, str | None]]:
        return self.ota.history

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def status_doc(self, state: str = "online") -> bytes:
        # As the agent: during a trial the candidate serves, flagged as on trial.
        rec = self.ota.record
        trial = rec.state == "trial" and rec.candidate is not None
        live = rec.candidate if trial and rec.candidate is not None else self.ota.live
        models = [ModelInfo(slot=self.slot, name=live.model, version=live.version,
                            label=f"v{live.version}", runtime="sim", sha256=live.sha256,
                            trial=trial)]
        return Status(seq=self.next_seq(), device_id=self.device_id, state=state,  # type: ignore[arg-type]
                      agent_version=AGENT_VERSION, models=models, health="ok",
                      started_at=time.time(),
                      reads=None if self.reads is None else list(self.reads),
                      ).model_dump_json().encode()


class SimFleet:
    """Many :class:`SimDevice` connections driven by one thread."""

    def __init__(self, port: int, devices: list[SimDevice], host: str = "127.0.0.1",
                 keepalive: int = 30, verify: VerifyKit | None = None) -> None:
        self.host, self.port, self.keepalive = host, port, keepalive
        self.devices = {d.device_id: d for d in devices}
        if verify is not None:
            for d in devices:
                d.provision(verify.base)
        self.ota = OtaDriver(self, verify)
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
        self.ota.stop()

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
        return self.call(lambda: {d.device_id: (d.state, d.live_version)
                                  for d in self.devices.values()})

    def stats(self) -> dict[str, Any]:
        """Devices, their states and versions, and what the verification path did."""
        def collect() -> dict[str, Any]:
            devs = list(self.devices.values())
            states: dict[str, int] = {}
            versions: dict[str, int] = {}
            for d in devs:
                states[d.state] = states.get(d.state, 0) + 1
                versions[str(d.live_version)] = versions.get(str(d.live_version), 0) + 1
            return {"devices": len(devs), "events_sent": self.events_sent, "states": states,
                    "live_versions": versions,
                    "devices_verified": sum(1 for d in devs if d.ota.verified),
                    "verifying": self.ota.kit is not None, **self.ota.stats()}
        result: dict[str, Any] = self.call(collect)
        return result

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_w.send(b"x")

    # --- OtaHost (hil.simota) ---------------------------------------------------------------
    def publish_ota(self, ota: DeviceOta, fields: dict[str, Any]) -> None:
        dev = self.devices[ota.device_id]
        event = OtaEvent(seq=dev.next_seq(), device_id=dev.device_id, **fields)
        payload = event.model_dump_json().encode()
        self.events_sent += 1
        if dev.client is None or not dev.connected:
            dev.outbox.append(payload)  # as the agent's spool: sent when it reconnects
            return
        dev.client.publish(topics.ota(dev.device_id), payload, qos=1)
        if event.state in ("committed", "rolled_back"):  # the live model changed
            dev.client.publish(topics.status(dev.device_id), dev.status_doc(), qos=1,
                               retain=True)

    def after(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._tick), fn))

    def post(self, fn: Callable[[], None]) -> None:
        self.call(fn, wait=False)

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
        for payload in dev.outbox:
            client.publish(topics.ota(dev.device_id), payload, qos=1)
        dev.outbox.clear()
        client.subscribe(topics.desired(dev.device_id), qos=1)

    def _on_disconnect(self, client: mqtt.Client, dev: SimDevice, flags: Any, rc: ReasonCode,
                       props: Any = None) -> None:
        dev.connected = False

    def _on_message(self, client: mqtt.Client, dev: SimDevice, msg: mqtt.MQTTMessage) -> None:
        if not msg.payload:
            return
        dev.desired_seen += 1
        self.ota.on_desired(dev.ota, DesiredState.model_validate_json(msg.payload))


def make_devices(prefix: str, count: int, start: int = 0, version: int = 1,
                 behaviour: Callable[[int], Behaviour] | None = None) -> list[SimDevice]:
    return [SimDevice(f"{prefix}{i:04d}", version=version,
                      behaviour=behaviour(i) if behaviour else Behaviour())
            for i in range(start, start + count)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.simdevice",
                                description="Run simulated devices until SIGTERM; print one "
                                "JSON line when connected ('ready') and one at the end.")
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
    v = p.add_argument_group("real verification path (--verify)")
    v.add_argument("--verify", action="store_true",
                   help="run the agent's TUF refresh, download, delta apply and hash checks")
    v.add_argument("--repo-url", help="repository base URL (with metadata/ and targets/)")
    v.add_argument("--root", type=Path, help="the provisioned root.json")
    v.add_argument("--base-bundle", type=Path, help="the bundle devices run at start")
    v.add_argument("--state-dir", type=Path, help="shared TUF metadata, cache and models")
    args = p.parse_args(argv)
    kit = None
    if args.verify:
        if not (args.repo_url and args.root and args.base_bundle and args.state_dir):
            p.error("--verify needs --repo-url, --root, --base-bundle and --state-dir")
        kit = VerifyKit.create(args.state_dir, args.repo_url, args.root, args.base_bundle)

    def behaviour(i: int) -> Behaviour:
        fail = args.fail_trial_every and i % args.fail_trial_every == 0
        return Behaviour(step_s=args.step_s, trial_s=args.trial_s,
                         fail_at="trial" if fail else None)

    fleet = SimFleet(args.port, make_devices(args.prefix, args.count, args.start, args.version,
                                             behaviour), host=args.host, verify=kit).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    fleet.wait_connected(timeout=120)
    print(json.dumps({"ready": len(fleet.devices)}), flush=True)
    stop.wait()
    stats = fleet.stats()
    fleet.stop()
    stats["committed"] = stats["states"].get("committed", 0)
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
