"""The fleet server's mute list on its way from paho's network thread to the mute set.

``dev/{id}/mutes`` carries the device's whole :class:`contract.mutes.MuteList`, retained,
so it arrives after every (re)connect. A payload that is not a valid list is refused,
counted (``mutes_rejected``) and logged once, and the list held stays in force: a broken
message must neither crash the agent nor lift mutes nor invent them.
"""

from __future__ import annotations

import logging
import time

from paho.mqtt.client import MQTTMessage
from pydantic import ValidationError

from agent.metrics import Counters
from agent.mutes import MuteSet
from contract.limits import AGENT_RECEIVE_MAX_BYTES
from contract.messages import format_validation_error
from contract.mutes import MuteList

log = logging.getLogger("nanofleet.agent.mutes")

# The broker already withholds larger packets from us (the agent's CONNECT announces
# this limit); checked again so a broker that ignores it cannot make us parse more.
MAX_MUTE_LIST_BYTES = AGENT_RECEIVE_MAX_BYTES
# A list of 256 broken mutes has ~700 validation errors: the log gets the first words.
MAX_REASON_CHARS = 300


class MuteInbox:
    def __init__(self, mutes: MuteSet, counters: Counters, device_id: str) -> None:
        self.mutes = mutes
        self.counters = counters
        self.device_id = device_id

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
            return True
        doc = self._parse(payload)
        if doc is None:
            return False
        if not self.mutes.replace(doc, now, monotonic):
            log.debug("mute list revision %d ignored: revision %s applied already",
                      doc.revision, self.mutes.revision)
            return False
        self.counters.inc("mute_lists_applied")
        log.info("mute list revision %d applied: %d mutes active", doc.revision,
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
