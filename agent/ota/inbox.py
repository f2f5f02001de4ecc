"""The desired state on its way from paho's network thread to the OTA worker.

One slot's newest desired state: a newer revision replaces the one held, an older one
is ignored (retained messages and reconnects replay), and a request to roll back is
also an event the trial watches. The worker takes what is new, or, after its check
interval, the same state again (a failed update's retry may have fallen due).
"""

from __future__ import annotations

import logging
import threading
from typing import Literal

from pydantic import ValidationError

from agent.metrics import Counters
from agent.ota.record import UpdateTarget
from contract.messages import DesiredState, format_validation_error

log = logging.getLogger("nanofleet.agent.ota")
Latest = tuple[UpdateTarget, Literal["install", "rollback"]]


class DesiredInbox:
    def __init__(self, slot_name: str, counters: Counters) -> None:
        self.slot_name = slot_name
        self.counters = counters
        self.wake = threading.Event()  # something arrived, or the worker must stop
        self.rollback = threading.Event()  # a rollback is asked for (the trial watches it)
        self.rollback_rollout: str | None = None
        self._lock = threading.Lock()
        self._latest: Latest | None = None
        self._seq = 0  # how many desired states were taken in

    def submit(self, payload: bytes, manifest_slot: str | None) -> None:
        """A ``dev/{id}/desired`` payload; ``manifest_slot``: the live bundle's slot name,
        which selects this slot's entry as well as the agent's own slot name does."""
        if not payload:
            return  # retained message cleared
        try:
            doc = DesiredState.model_validate_json(payload)
        except ValidationError as exc:
            self.counters.inc("ota_desired_invalid")
            log.warning("desired state ignored: %s", format_validation_error(exc))
            return
        entry = doc.slots.get(self.slot_name) or (
            doc.slots.get(manifest_slot) if manifest_slot is not None else None)
        if entry is None:
            return
        target = UpdateTarget(model=entry.model, version=entry.version, revision=doc.revision,
                              rollout_id=doc.rollout_id, metadata_url=doc.metadata_url,
                              target_base_url=doc.target_base_url)
        with self._lock:
            if self._latest is not None and doc.revision < self._latest[0].revision:
                log.warning("desired revision %d ignored: %d seen already", doc.revision,
                            self._latest[0].revision)
                return
            self._latest = (target, doc.action)
            self._seq += 1
        if doc.action == "rollback":
            self.rollback_rollout = doc.rollout_id
            self.rollback.set()
        self.wake.set()

    def take(self, handled: int, timeout: float,
             stop: threading.Event) -> tuple[int, Latest | None] | None:
        """What to act on after ``handled`` states were taken: a newer one at once, else,
        after ``timeout``, the same one again; None when woken for nothing or stopping."""
        with self._lock:
            seq = self._seq
        if seq == handled:
            woke = self.wake.wait(timeout)
            self.wake.clear()
            with self._lock:
                seq = self._seq
            if stop.is_set() or (woke and seq == handled):
                return None
        with self._lock:
            return self._seq, self._latest

    def arm_rollback(self) -> None:
        """A trial begins: forget rollback requests unless the newest state still is one
        (one asked for before the trial began still counts)."""
        with self._lock:
            if self._latest is None or self._latest[1] != "rollback":
                self.rollback.clear()
