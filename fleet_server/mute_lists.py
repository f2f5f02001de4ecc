"""A device's mute list (:class:`contract.mutes.MuteList`) made from the mute rows that
apply to it: which live mutes it carries (:func:`build_mute_list`, :func:`lists_by_device`),
its payload (:func:`encode_mute_list`), and whether a new mute still fits on every list it
joins (:func:`room_refusal`).

Separate from the store (:mod:`fleet_server.mutes`) because it is pure: rows in, a list
and its bytes out, bounded by what reaches the agent; the store and
:mod:`fleet_server.mute_publisher` call it with the rows they read.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from contract.limits import AGENT_RECEIVE_MAX_BYTES, MAX_STORED_INT, PACKET_OVERHEAD_BYTES
from contract.mutes import MAX_MUTES, AlertMute, MuteList

if TYPE_CHECKING:  # the store imports this module: the row is a type here only
    from fleet_server.mutes import AlertMuteRow

# A list must reach the agent: a packet over the Maximum Packet Size it announces is
# dropped by the broker without a word, and with it every later change of the list.
MAX_LIST_BYTES = AGENT_RECEIVE_MAX_BYTES - PACKET_OVERHEAD_BYTES


def _encode(doc: MuteList | AlertMute) -> bytes:
    data = doc.model_dump(mode="json")
    if data.get("reset") is False:  # sent only when true: agents before it refuse the field
        del data["reset"]
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def encode_mute_list(doc: MuteList) -> bytes:
    """The payload published on ``dev/{id}/mutes``."""
    return _encode(doc)


def build_mute_list(rows: list[AlertMuteRow], revision: int, now: float,
                    max_bytes: int = MAX_LIST_BYTES, reset: bool = False
                    ) -> tuple[MuteList, int]:
    """A device's list from the mutes that apply to it: those not expired at ``now``,
    newest first, at most :data:`MAX_MUTES` of them and ``max_bytes`` encoded. Returns
    the list and how many live mutes were left out (the oldest)."""
    live = sorted((r for r in rows if r.expires_at > now),
                  key=lambda r: (r.created_at, r.id), reverse=True)
    size = _list_bytes(revision, reset)
    kept: list[AlertMute] = []
    for row in live[:MAX_MUTES]:
        mute = _as_mute(row)
        size += _mute_bytes(mute)
        if size > max_bytes:
            break
        kept.append(mute)
    return MuteList(revision=revision, mutes=kept, reset=reset), len(live) - len(kept)


def _as_mute(row: AlertMuteRow) -> AlertMute:
    return AlertMute(id=row.id, shape=row.shape, prefix=row.prefix, source=row.source,
                     expires=row.expires_at, reason=row.reason)


def _list_bytes(revision: int, reset: bool = False) -> int:
    """An empty list's bytes, with the largest revision a list can carry."""
    return len(_encode(MuteList(revision=revision, mutes=[], reset=reset)))


def _mute_bytes(mute: AlertMute) -> int:
    return len(_encode(mute)) + 1  # and the comma before the next


def room_refusal(rows: list[AlertMuteRow], new: AlertMuteRow, now: float) -> str | None:
    """Why a new mute would not fit on every list it joins (``rows``: the mutes kept), or
    None. A list carries at most :data:`MAX_MUTES` mutes and :data:`MAX_LIST_BYTES`; past
    that :func:`build_mute_list` leaves the oldest out, and before (review, December 2026)
    the 257th mute of a device was accepted and silently lifted the oldest on the device,
    which the server still listed as in force."""
    live = [r for r in rows if r.expires_at > now and r.id != new.id]
    sizes = {r.id: _mute_bytes(_as_mute(r)) for r in live}
    everywhere = [r.id for r in live if r.device_id is None]
    own: dict[str, list[str]] = {}
    for r in live:
        if r.device_id is not None:
            own.setdefault(r.device_id, []).append(r.id)
    # An every-device mute joins every list: the fullest ones decide (a device with no
    # mutes of its own holds the every-device ones alone).
    devices = [new.device_id] if new.device_id is not None else [*own, None]
    # the largest revision, and `reset` (a resend's): the same list must reach it then too
    header = _list_bytes(MAX_STORED_INT, reset=True) + _mute_bytes(_as_mute(new))
    for device in devices:
        ids = own.get(device, []) if device is not None else []
        count = len(ids) + len(everywhere) + 1
        size = header + sum(sizes[i] for i in ids) + sum(sizes[i] for i in everywhere)
        if count > MAX_MUTES or size > MAX_LIST_BYTES:
            where = f"device {device}" if device is not None else "every device"
            return (f"the mute list of {where} is full ({count - 1} mutes, {size} bytes with "
                    f"this one; at most {MAX_MUTES} mutes and {MAX_LIST_BYTES} bytes reach a "
                    "device): lift mutes that are no longer needed first")
    return None


def lists_by_device(rows: list[AlertMuteRow], device_ids: list[str], revision: int,
                    now: float, reset: bool = False) -> dict[str, tuple[MuteList, int]]:
    """:func:`build_mute_list` for each device, from every mute row at once."""
    everywhere = [r for r in rows if r.device_id is None]
    own: dict[str, list[AlertMuteRow]] = {}
    for r in rows:
        if r.device_id is not None:
            own.setdefault(r.device_id, []).append(r)
    return {d: build_mute_list(own.get(d, []) + everywhere, revision, now, reset=reset)
            for d in device_ids}
