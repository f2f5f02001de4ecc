"""What alert mutes do to a device's alert stream, measured (``benchmarks/alert_mutes.py``).

A device repeats its few healthy-but-alarming lines all day; an operator who judges the
alerts of the first days and mutes the shape of each false alarm (``contract.mutes``)
should get a quieter stream afterwards *without* losing real alerts. This replays that on
streams of real lines in the order a daemon printed them (the captured lines): per source,
the first ``judged_share`` of the stream is judged — every line some alerter flags and
the labels call normal is muted as the fleet server mutes it (its
:func:`contract.mutes.message_shape`, or for a line of :data:`KEPT_CHARS` or more the start
of it) — and the rest is
scored with and without those mutes, for any alerter (the model's flag, the alerts the
agent sends, the grep; the grep with the same mutes is the technician's ``grep -v``).

Pure: flags and labels in, figures out. Which model's flags (held out, shipped) is the
caller's choice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from contract.mutes import AlertMute, kept_line_mute, message_shape

KEPT_CHARS = 500
"""What the fleet server keeps of an alert's line (``fleet_server.metrics_store``'s
``ALERT_TEXT_CHARS``): a mute of a line this long names the start of its shape
(:func:`contract.mutes.kept_line_mute`, the server's rule)."""


def _muted(text: str, source: str, mutes: list[AlertMute]) -> bool:
    shape = message_shape(text)
    return any(m.matches(source, shape) for m in mutes)


@dataclass(frozen=True)
class MuteFigures:
    """One alerter's figures on the unjudged rest of the streams, before and after."""

    mutes: int                 # shapes muted from the judged part
    judged_false_alarms: int   # false alarms the operator judged to make them
    healthy: int               # healthy lines in the rest
    alerts: int                # alert lines in the rest
    false_alarms_before: int
    false_alarms_after: int
    found_before: int          # alerts flagged in the rest
    found_after: int           # ... and not muted: a real alert lost to a mute drops out here

    @property
    def false_alarm_rate_before(self) -> float:
        return self.false_alarms_before / self.healthy if self.healthy else 0.0

    @property
    def false_alarm_rate_after(self) -> float:
        return self.false_alarms_after / self.healthy if self.healthy else 0.0

    @property
    def recall_before(self) -> float:
        return self.found_before / self.alerts if self.alerts else 1.0

    @property
    def recall_after(self) -> float:
        return self.found_after / self.alerts if self.alerts else 1.0


def replay_mutes(texts: Sequence[str], is_alert: Sequence[bool], sources: Sequence[str],
                 flagged: Sequence[bool], judged_share: float) -> dict[str, MuteFigures]:
    """Per source (and ``"overall"``, pooled) figures of muting the judged false alarms.

    ``texts``/``is_alert``/``sources``/``flagged`` are aligned and each source's lines are
    in stream order. A mute is scoped to its source, as an operator's mute of one device's
    line is."""
    if not 0.0 < judged_share < 1.0:
        raise ValueError(f"judged_share must be between 0 and 1, not {judged_share}")
    if not len(texts) == len(is_alert) == len(sources) == len(flagged):
        raise ValueError("texts, is_alert, sources and flagged must be aligned")
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, source in enumerate(sources):
        by_source[source].append(i)
    alert = np.asarray(is_alert, dtype=bool)
    flag = np.asarray(flagged, dtype=bool)
    out: dict[str, MuteFigures] = {}
    for source in sorted(by_source):
        idx = by_source[source]
        cut = int(len(idx) * judged_share)
        judged, rest = idx[:cut], idx[cut:]
        judged_fa = [i for i in judged if flag[i] and not alert[i]]
        named = {m for i in judged_fa if (m := kept_line_mute(texts[i], KEPT_CHARS))}
        muted = [AlertMute.model_construct(shape=shape, prefix=prefix, source=source)
                 for shape, prefix in sorted(named)]
        kept = [i for i in rest if flag[i] and not _muted(texts[i], source, muted)]
        out[source] = MuteFigures(
            mutes=len(muted), judged_false_alarms=len(judged_fa),
            healthy=sum(1 for i in rest if not alert[i]),
            alerts=sum(1 for i in rest if alert[i]),
            false_alarms_before=sum(1 for i in rest if flag[i] and not alert[i]),
            false_alarms_after=sum(1 for i in kept if not alert[i]),
            found_before=sum(1 for i in rest if flag[i] and alert[i]),
            found_after=sum(1 for i in kept if alert[i]))
    out["overall"] = MuteFigures(*(sum(getattr(f, name) for f in out.values())
                                   for name in MuteFigures.__dataclass_fields__))
    return out
