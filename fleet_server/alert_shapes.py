"""Which messages alert most: the alerts the server keeps, grouped by message shape.

A device's false alarms are a few messages repeated; judging and muting the top few of
the first days removes most of them. This ranks the kept alerts (of one device, or of
the fleet) by the shape a mute of them would name
(:func:`fleet_server.mute_rules.mute_shape`: for a line the server kept cut, the start of
its shape) and their source, each group with
its volume (alerts, and the repeats the agent held back and counted in them), labels,
devices, first and last arrival, its newest alert (what ``alerts verdict`` and ``alerts
mute`` take), the verdicts given on its alerts and whether an active mute covers it (the
console's "muted" tag, :func:`covering`: one rule for both).

A line no mute could name (blank, or cut with too short a sure start) is grouped under
its plain :func:`contract.mutes.message_shape`, ``mutable`` false. The ranking is a pure
function (:func:`rank_shapes`); :func:`alert_lines` is the bounded read it ranks.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from contract.mutes import AlertMute, message_shape
from fleet_server.metrics_store import DeviceAlertRow
from fleet_server.mute_rules import MuteRefused, MuteShape, covers, mute_shape
from fleet_server.mutes import AlertMuteRow, active_mutes
from fleet_server.verdicts import AlertVerdictRow, on_its_alert

DEFAULT_LIMIT = 20
MAX_LIMIT = 200
MAX_SCAN = 50_000  # newest alerts one ranking reads (a shape costs up to ~0.15 ms a line)
LISTED_DEVICES = 10  # device ids named per group (the most alerting first); all are counted


class AlertLine(NamedTuple):
    """What the ranking reads of one kept alert (with the verdict on it, if any)."""

    id: int
    device_id: str
    received_at: float
    label: str
    source: str
    text: str
    repeats: int
    verdict: str | None  # false_alarm, right, or None: not judged


@dataclass
class ShapeGroup:
    """One message shape of one source, over the alerts given to :func:`rank_shapes`."""

    shape: str
    prefix: bool  # the start of a shape (the server kept the lines cut)
    mutable: bool  # False: no mute can name it (blank line, too short a sure start)
    source: str
    alerts: int = 0
    repeats: int = 0
    labels: Counter[str] = field(default_factory=Counter)  # volume per label
    per_device: Counter[str] = field(default_factory=Counter)  # volume per device
    first_received_at: float = float("inf")
    last_received_at: float = float("-inf")
    alert_id: int = 0  # the newest alert's
    false_alarms: int = 0
    right: int = 0
    muted_devices: int = 0  # devices of the group on which an active mute covers it

    @property
    def count(self) -> int:
        """The volume: alerts sent, and the alerts of the same kind each one held back."""
        return self.alerts + self.repeats

    @property
    def devices(self) -> int:
        return len(self.per_device)

    @property
    def device_ids(self) -> list[str]:
        """Up to :data:`LISTED_DEVICES`, the most alerting first."""
        ranked = sorted(self.per_device.items(), key=lambda kv: (-kv[1], kv[0]))
        return [d for d, _ in ranked[:LISTED_DEVICES]]

    @property
    def muted(self) -> bool:
        """An active mute covers it on every device it alerted on."""
        return self.devices > 0 and self.muted_devices == self.devices

    @property
    def judged(self) -> bool:
        return self.false_alarms + self.right > 0


@dataclass(frozen=True)
class Ranking:
    groups: list[ShapeGroup]  # at most the limit, the most alerting first
    shapes: int  # groups found in all (before ``unjudged`` and the limit)
    alerts_read: int
    complete: bool = True  # False: more alerts matched than one ranking reads


@functools.lru_cache(maxsize=4096)
def line_shape(text: str) -> tuple[MuteShape, bool]:
    """The shape a mute of this line names and True, or (a mute would refuse it) its
    plain :func:`message_shape` as a whole shape and False. Cached (a few MB at most:
    kept lines are 500 characters at most): the console's device page ranks its newest
    1,000 alerts again at every refresh, and they are mostly the same lines."""
    try:
        return mute_shape(text), True
    except MuteRefused:
        return MuteShape(message_shape(text), False), False


def _rule(mute: AlertMuteRow) -> AlertMute:
    return AlertMute.model_construct(shape=mute.shape, prefix=mute.prefix, source=mute.source)


def covering(mutes: Sequence[AlertMuteRow], device_id: str, source: str,
             line: MuteShape) -> AlertMuteRow | None:
    """The first of ``mutes`` that applies to ``device_id`` (its own, or every device's)
    and covers a kept line of ``source`` whose mute would name ``line``
    (:func:`fleet_server.mute_rules.covers`: the agent's rule, and for a line the server kept
    cut what its kept start decides), or None. The console's "muted" tag and the ranking
    both ask this."""
    for mute in mutes:
        if mute.device_id in (None, device_id) and covers(_rule(mute), source, line):
            return mute
    return None


def _order(g: ShapeGroup) -> tuple[int, int, float, str, str, bool, bool]:
    return (-g.count, -g.alerts, -g.last_received_at, g.source, g.shape, g.prefix, g.mutable)


def rank_shapes(alerts: Iterable[AlertLine], mutes: Sequence[AlertMuteRow], now: float, *,
                limit: int = DEFAULT_LIMIT, unjudged: bool = False) -> Ranking:
    """The alerts grouped by (source, shape), the most alerting first: by volume (alerts
    plus repeats), then more alerts, the more recent last alert, source, shape. ``mutes``:
    those not expired at ``now`` count. ``unjudged``: leave out the groups with a verdict
    on any of their alerts or a mute covering them on any device (someone looked at them
    already). At most ``limit`` groups (1 to :data:`MAX_LIMIT`)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1 to {MAX_LIMIT} (got {limit})")
    live = [m for m in mutes if m.expires_at > now]
    shapes: dict[str, tuple[MuteShape, bool]] = {}  # by text: a line repeated is shaped once
    groups: dict[tuple[str, str, bool, bool], ShapeGroup] = {}
    read = 0
    for a in alerts:
        read += 1
        found = shapes.get(a.text)
        if found is None:
            found = shapes[a.text] = line_shape(a.text)
        (shape, prefix), mutable = found
        key = (a.source, shape, prefix, mutable)
        g = groups.get(key)
        if g is None:
            g = groups[key] = ShapeGroup(shape=shape, prefix=prefix, mutable=mutable,
                                         source=a.source)
        volume = 1 + max(0, a.repeats)
        g.alerts += 1
        g.repeats += volume - 1
        g.labels[a.label] += volume
        g.per_device[a.device_id] += volume
        g.first_received_at = min(g.first_received_at, a.received_at)
        if (a.received_at, a.id) > (g.last_received_at, g.alert_id):
            g.last_received_at, g.alert_id = a.received_at, a.id
        if a.verdict == "false_alarm":
            g.false_alarms += 1
        elif a.verdict == "right":
            g.right += 1
    everywhere = [m for m in live if m.device_id is None]
    own: dict[str, list[AlertMuteRow]] = {}
    for m in live:
        if m.device_id is not None:
            own.setdefault(m.device_id, []).append(m)
    kept: list[ShapeGroup] = []
    for g in sorted(groups.values(), key=_order):  # mute states of the groups shown only
        if g.mutable:
            line = MuteShape(g.shape, g.prefix)
            if covering(everywhere, "", g.source, line) is not None:  # on every device
                g.muted_devices = g.devices
            else:
                g.muted_devices = sum(covering(own.get(d, ()), d, g.source, line) is not None
                                      for d in g.per_device)
        if unjudged and (g.judged or g.muted_devices):
            continue
        kept.append(g)
        if len(kept) == limit:
            break
    return Ranking(groups=kept, shapes=len(groups), alerts_read=read)


def alert_lines(session: Session, device_id: str | None, since: float | None,
                max_rows: int = MAX_SCAN) -> Iterable[AlertLine]:
    """The kept alerts (of ``device_id``; arrived at ``since`` or later), newest first, at
    most ``max_rows`` + 1 of them (one more says the read was cut), with their verdicts:
    one query, read in chunks."""
    query = (select(DeviceAlertRow.id, DeviceAlertRow.device_id, DeviceAlertRow.ts,
                    DeviceAlertRow.label, DeviceAlertRow.source, DeviceAlertRow.text,
                    DeviceAlertRow.repeats, AlertVerdictRow.verdict)
             .outerjoin(AlertVerdictRow, on_its_alert())
             .order_by(DeviceAlertRow.id.desc()).limit(max_rows + 1))
    if device_id is not None:
        query = query.where(DeviceAlertRow.device_id == device_id)
    if since is not None:
        query = query.where(DeviceAlertRow.ts >= since)
    result = session.execute(query.execution_options(yield_per=1000))
    try:
        for row in result:
            yield AlertLine(*row)
    finally:
        result.close()


def shape_ranking(session: Session, device_id: str | None, since: float | None, now: float,
                  *, limit: int = DEFAULT_LIMIT, unjudged: bool = False,
                  max_rows: int = MAX_SCAN,
                  mutes: Sequence[AlertMuteRow] | None = None) -> Ranking:
    """:func:`rank_shapes` of the newest ``max_rows`` kept alerts that match, with the
    mutes active at ``now`` (those that apply to ``device_id`` when given; ``mutes``: those
    already read)."""
    cut = False

    def bounded() -> Iterable[AlertLine]:
        nonlocal cut
        for i, line in enumerate(alert_lines(session, device_id, since, max_rows)):
            if i == max_rows:
                cut = True
                return
            yield line

    if mutes is None:
        mutes = active_mutes(session, now, device_id)
    ranking = rank_shapes(bounded(), mutes, now, limit=limit, unjudged=unjudged)
    return Ranking(ranking.groups, ranking.shapes, ranking.alerts_read, complete=not cut)
