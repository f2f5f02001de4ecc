"""The fleet server's mute list on its way from paho's network thread to the mute set.

``dev/{id}/mutes`` carries the device's whole :class:`contract.mutes.MuteList`, retained,
so it arrives after every (re)connect. A payload that is not a valid list is refused,
counted (``mutes_rejected``) and logged once, and the list held stays in force: a broken
message must neither crash the agent nor lift mutes nor invent them.

An accepted list is also kept in the state directory (``mutes.json``, with when it
arrived) and restored at start: a device that restarts while the broker is away would
otherwise alert on every muted line until it reconnects — and the outbox would deliver
those alerts later. The restored list keeps its 90-day bound from its first arrival.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from paho.mqtt.client import MQTTMessage
from pydantic import ValidationError

from agent.metrics import Counters
from agent.mutes import MuteSet
from contract.files import write_atomic
from contract.limits import AGENT_RECEIVE_MAX_BYTES
from contract.messages import format_validation_error
from contract.mutes import MuteList

log = logging.getLogger("nanofleet.agent.mutes")

# The broker already withholds larger packets from us (the agent's CONNECT announces
# this limit); checked again so a broker that ignores it cannot make us parse more.
MAX_MUTE_LIST_BYTES = AGENT_RECEIVE_MAX_BYTES
# A list of 256 broken mutes has ~700 validation errors: the log gets the first words.
MAX_REASON_CHARS = 300
# mutes.json: a header line (when the list arrived) and the list's own bytes.
MAX_KEPT_BYTES = MAX_MUTE_LIST_BYTES + 4096


def _kept_list(raw: bytes) -> tuple[float, MuteList]:
    """``(received_at, list)`` of a ``mutes.json``: the header line and the payload as
    received, or the one-object form of agents before December 2026."""
    head, newline, payload = raw.partition(b"\n")
    if newline:
        received_at = float(json.loads(head)["received_at"])  # OverflowError: past floats
        return received_at, MuteList.model_validate_json(payload)
    kept = json.loads(raw)
    return float(kept["received_at"]), MuteList.model_validate(kept["list"])


class MuteInbox:
    def __init__(self, mutes: MuteSet, counters: Counters, device_id: str,
                 store: Path | None = None) -> None:
        self.mutes = mutes
        self.counters = counters
        self.device_id = device_id
        self.store = store  # where the accepted list is kept across restarts (None: nowhere)

    def on_message(self, msg: MQTTMessage) -> None:
        self.submit(bytes(msg.payload))

    def submit(self, payload: bytes, now: float | None = None) -> bool:
        """Apply a ``dev/{id}/mutes`` payload; True when it replaced the list held."""
        # Tests pass one clock; the agent passes both (the 90-day bound is monotonic).
        monotonic = time.monotonic() if now is None else None
        now = time.time() if now is None else now
        if not payload:
            # The retained list was deleted: the server holds none for this device, so
            # nothing is muted (the safe side: alerts are sent). The next list applies
            # whatever its revision, as after a restart.
            if self.mutes.revision is not None:
                log.info("mute list cleared: every alert is sent",
                         extra={"device_id": self.device_id})
            self.mutes.clear()
            if self.store is not None:
                self.store.unlink(missing_ok=True)
            return True
        doc = self._parse(payload)
        if doc is None:
            return False
        held = self.mutes.revision
        if not self.mutes.replace(doc, now, monotonic):
            if held is not None and doc.revision < held:
                # Not a replay of the list held: the server numbers below what this device
                # took (a list from elsewhere, or a restored server's): say so, an operator
                # can send the server's lists again with `nanofleet mutes resend --reset`.
                self.counters.inc("mute_lists_stale")
                log.warning("mute list revision %d ignored: revision %d applied already "
                            "(nanofleet mutes resend --reset applies the server's)",
                            doc.revision, held, extra={"device_id": self.device_id})
            else:
                log.debug("mute list revision %d ignored: revision %s applied already",
                          doc.revision, held)
            return False
        self.counters.inc("mute_lists_applied")
        log.info("mute list revision %d applied: %d mutes active", doc.revision,
                 len(self.mutes.active(now, monotonic)),
                 extra={"device_id": self.device_id, "mute_revision": doc.revision})
        self._keep(payload, now)
        return True

    def _keep(self, payload: bytes, received_at: float) -> None:
        """One header line, then the payload's own bytes: never longer than what was
        accepted, whatever it holds. (Before, review December 2026: the list was written
        again with JSON's ASCII escapes, a list of non-ASCII lines came out up to three
        times its size, past what ``restore`` reads, and was lost at the next start.)"""
        if self.store is None:
            return
        header = json.dumps({"received_at": received_at}).encode()
        try:
            write_atomic(self.store, header + b"\n" + payload, mode=0o640)
        except OSError as exc:  # a full disk costs the list after a restart, nothing else
            log.warning("mute list not kept on disk (%s): after a restart it applies again "
                        "when the broker sends it", exc, extra={"device_id": self.device_id})

    def restore(self, now: float | None = None, monotonic: float | None = None) -> bool:
        """At start: apply the list kept on disk, its 90-day bound counted from when it
        first arrived (as far as the wall clock can tell). A missing file is normal; an
        unreadable one is counted (``mutes_rejected``), logged and ignored."""
        if self.store is None or not self.store.exists():
            return False
        now = time.time() if now is None else now
        monotonic = time.monotonic() if monotonic is None else monotonic
        try:
            if not self.store.is_file():  # a FIFO or a link to /dev/zero: never read
                raise ValueError(f"{self.store} is not a regular file")
            with self.store.open("rb") as fh:
                raw = fh.read(MAX_KEPT_BYTES + 1)
            if len(raw) > MAX_KEPT_BYTES:
                raise ValueError(f"{self.store} is larger than {MAX_KEPT_BYTES} bytes")
            received_at, doc = _kept_list(raw)
        except (OSError, ValueError, KeyError, TypeError, RecursionError, OverflowError,
                ValidationError) as exc:
            self.counters.inc("mutes_rejected")
            log.warning("mute list kept on disk is unreadable, ignored until the broker "
                        "sends one: %s", str(exc)[:MAX_REASON_CHARS],
                        extra={"device_id": self.device_id})
            return False
        # A clock behind the time the list arrived (a device without a real-time clock,
        # before NTP) cannot say how long ago that was: count from now.
        elapsed = max(0.0, now - received_at)
        if not self.mutes.replace(doc, now, monotonic - elapsed):
            return False
        log.info("mute list revision %d restored from disk: %d mutes active", doc.revision,
                 len(self.mutes.active(now, monotonic)),
                 extra={"device_id": self.device_id, "mute_revision": doc.revision})
        return True

    def _parse(self, payload: bytes) -> MuteList | None:
        reason: str | None = None
        doc: MuteList | None = None
        if len(payload) > MAX_MUTE_LIST_BYTES:
            reason = f"{len(payload)} bytes, more than {MAX_MUTE_LIST_BYTES}"
        else:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError as exc:
                reason = f"not UTF-8 (byte {exc.start})"
            else:
                try:
                    doc = MuteList.model_validate_json(payload)
                except ValidationError as exc:
                    reason = format_validation_error(exc)
        if doc is None:
            self.counters.inc("mutes_rejected")
            log.warning("mute list refused, keeping the mutes held: %s",
                        (reason or "invalid")[:MAX_REASON_CHARS],
                        extra={"device_id": self.device_id})
        return doc
