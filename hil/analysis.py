"""What happened, as pure functions over what the rig observed: OTA updates and their
durations, result gaps, lost lines, counters across restarts, and the verdict of
each expectation. No I/O here; the rig gathers :class:`DeviceFacts` and asks."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from contract.mutes import AlertMute, message_shape
from hil.observe import DeviceRecord
from hil.steps import (
    ExpectAlertsMuted,
    ExpectInferenceErrors,
    ExpectLiveModel,
    ExpectMaxResultGap,
    ExpectNoLostLines,
    ExpectNoUnexpectedExits,
    ExpectOtaFinal,
    ExpectOtaStatesSeen,
    ExpectResultsByVersion,
)

TERMINAL = ("committed", "failed", "rolled_back")
SLOT = "logs"

Expectation = (ExpectNoLostLines | ExpectOtaFinal | ExpectLiveModel | ExpectInferenceErrors
               | ExpectMaxResultGap | ExpectOtaStatesSeen | ExpectResultsByVersion
               | ExpectAlertsMuted | ExpectNoUnexpectedExits)


@dataclass
class Update:
    """One update attempt: OTA events from the first in-progress state to its end."""

    to_version: int | None
    from_version: int | None
    states: list[str]
    start: float
    end: float | None  # None: not finished
    final: str | None
    artifact: str | None
    reason: str | None
    bytes_downloaded: int | None

    @property
    def duration_s(self) -> float | None:
        return None if self.end is None else round(self.end - self.start, 3)


def updates(events: list[dict[str, Any]]) -> list[Update]:
    """Group OTA events (sorted by seq) into update attempts."""
    out: list[Update] = []
    current: Update | None = None
    for e in sorted(events, key=lambda e: (e["seq"], e["ts"])):
        if e["state"] == "idle":
            continue
        if current is not None and current.end is not None and e["state"] == current.final \
                and e.get("to_version") == current.to_version:
            continue  # the agent re-reports where it stands after a restart
        if current is None or current.end is not None:
            current = Update(e.get("to_version"), e.get("from_version"), [], e["ts"], None, None,
                             None, None, None)
            out.append(current)
        current.states.append(e["state"])
        current.artifact = e.get("artifact") or current.artifact
        current.bytes_downloaded = e.get("bytes_downloaded") or current.bytes_downloaded
        current.reason = e.get("reason") or current.reason
        if e["state"] in TERMINAL:
            current.end, current.final = e["ts"], e["state"]
    return out


def max_gap(stamps: list[float], windows: list[tuple[float, float]]) -> float | None:
    """The longest time between consecutive result batches (device timestamps) that
    overlaps one of ``windows``; None without windows."""
    if not windows:
        return None
    times = sorted(stamps)
    worst = 0.0
    for start, end in windows:
        inside = [t for t in times if start <= t <= end]
        before = [t for t in times if t < start][-1:]
        after = [t for t in times if t > end][:1]
        points = before + inside + after
        if not points:
            worst = max(worst, end - start)
            continue
        # With no batch before (after) the window, its edge stands in for one.
        points = ([] if before else [start]) + points + ([] if after else [end])
        worst = max(worst, *(b - a for a, b in pairwise(points)))
    return round(worst, 3)


def counter_total(metrics: list[dict[str, Any]], name: str,
                  live: dict[str, int] | None = None) -> int:
    """A counter summed over agent runs (counters restart at 0 with the process: a run
    ends where uptime goes down); ``live`` is the running agent's current counters."""
    total, last = 0, 0
    prev_uptime = -1.0
    for m in sorted(metrics, key=lambda m: m["ts"]):
        uptime = float(m.get("uptime_s", 0.0))
        if uptime < prev_uptime:
            total += last
            last = 0
        prev_uptime = uptime
        last = int(m.get("counters", {}).get(name, 0))
    if live is not None:
        last = max(last, int(live.get(name, 0)))
    return total + last


def lost_lines(written: int, seen: set[int]) -> list[int]:
    return [n for n in range(written) if n not in seen]


@dataclass
class DeviceFacts:
    """What the rig knows about one device when a check runs."""

    device: str
    record: DeviceRecord
    written: int  # lines 0..written-1 were in its log when the check began
    since: float  # wall time of the latest deploy step (0: none yet)
    live_models: list[dict[str, Any]] | None  # the agent's `models` answer; None: no answer
    live_counters: dict[str, int] | None
    unexpected_exits: list[str] = field(default_factory=list)
    mute: tuple[AlertMute, float] | None = None  # the latest mute step's mute, and when

    def updates_since(self) -> list[Update]:
        return updates([e for e in self.record.ota if e["ts"] >= self.since])

    def all_updates(self) -> list[Update]:
        return updates(self.record.ota)


@dataclass
class Verdict:
    passed: bool
    detail: str


def _subsequence(want: list[str], got: list[str]) -> bool:
    it = iter(got)
    return all(any(g == w for g in it) for w in want)


def _fmt_lines(ns: list[int]) -> str:
    shown = ", ".join(f"#{n}" for n in ns[:8])
    return shown + (f" and {len(ns) - 8} more" if len(ns) > 8 else "")


def judge(check: Expectation, f: DeviceFacts) -> Verdict:
    """The verdict of one expectation on one device."""
    if isinstance(check, ExpectNoLostLines):
        lost = lost_lines(f.written, set(f.record.lines))
        if lost:
            return Verdict(False, f"{len(lost)} of {f.written} lines have no result: "
                           f"{_fmt_lines(lost)}")
        return Verdict(True, f"all {f.written} lines have a result "
                       f"({f.record.duplicates} duplicate batches dropped by msg_id)")
    if isinstance(check, ExpectOtaFinal):
        ups = [u for u in f.updates_since() if u.final is not None]
        if not ups:
            states = [u.states for u in f.updates_since()]
            return Verdict(False, f"no update ended since the deploy (events: {states})")
        last = ups[-1]
        wrong = [f"state {last.final} (wanted {check.state})" if last.final != check.state else "",
                 f"version {last.to_version} (wanted {check.version})"
                 if check.version is not None and last.to_version != check.version else "",
                 f"artifact {last.artifact} (wanted {check.artifact})"
                 if check.artifact is not None and last.artifact != check.artifact else "",
                 f"reason {last.reason} (wanted {check.reason})"
                 if check.reason is not None and last.reason != check.reason else ""]
        wrong = [w for w in wrong if w]
        summary = (f"{' -> '.join(last.states)} v{last.from_version}->v{last.to_version} "
                   f"{last.artifact or ''} {last.reason or ''}").strip()
        return Verdict(not wrong, summary + ("" if not wrong else "; " + "; ".join(wrong)))
    if isinstance(check, ExpectLiveModel):
        return _judge_live(check, f)
    if isinstance(check, ExpectInferenceErrors):
        total = counter_total(f.record.metrics, "inference_errors", f.live_counters)
        return Verdict(total <= check.max, f"inference_errors = {total} (max {check.max})")
    if isinstance(check, ExpectMaxResultGap):
        windows = [(u.start, u.end) for u in f.all_updates() if u.end is not None]
        gap = max_gap([b["ts"] for b in f.record.batches], windows)
        if gap is None:
            return Verdict(False, "no finished update to measure a gap in")
        return Verdict(gap <= check.max_s, f"longest gap during {len(windows)} update(s): "
                       f"{gap:.3f} s (max {check.max_s} s)")
    if isinstance(check, ExpectOtaStatesSeen):
        got = [s for u in f.updates_since() for s in u.states]
        ok = _subsequence(list(check.states), got)
        return Verdict(ok, f"reported {' -> '.join(got) or 'nothing'}")
    if isinstance(check, ExpectResultsByVersion):
        n = f.record.results_by_version.get(check.version, 0)
        ok = n >= check.min and (check.max is None or n <= check.max)
        bounds = f">= {check.min}" + (f" and <= {check.max}" if check.max is not None else "")
        return Verdict(ok, f"{n} lines classified by v{check.version} (wanted {bounds})")
    if isinstance(check, ExpectAlertsMuted):
        return _judge_muted(check, f)
    if f.unexpected_exits:
        return Verdict(False, "; ".join(f.unexpected_exits))
    return Verdict(True, "the agent exited only when a power cut was injected")


def _judge_muted(check: ExpectAlertsMuted, f: DeviceFacts) -> Verdict:
    if f.mute is None:
        return Verdict(False, "no mute step muted anything on this device before the check")
    mute, at = f.mute
    loud = [a["text"] for a in f.record.alert_items if a["_received"] > at + check.settle_s
            and mute.matches(a["source"], message_shape(a["text"]))]
    held = (f.live_counters or {}).get("alerts_muted")
    problems = []
    if loud:
        problems.append(f"{len(loud)} alert(s) of the muted shape arrived, e.g. {loud[0]!r}")
    if held is None or held < check.min_held:
        problems.append(f"the agent held back {held} (wanted at least {check.min_held})")
    if problems:
        return Verdict(False, "; ".join(problems))
    return Verdict(True, f"no alert of {mute.shape!r} ({mute.source}) after the mute; the "
                   f"agent held back {held} since its last start")


def _judge_live(check: ExpectLiveModel, f: DeviceFacts) -> Verdict:
    problems = []
    if f.live_models is None:
        return Verdict(False, "the agent did not answer the models query")
    slot = [m for m in f.live_models if m.get("slot") == SLOT]
    versions = [m.get("version") for m in slot]
    if versions != [check.version]:
        problems.append(f"agent serves {versions} in slot {SLOT} (wanted [{check.version}])")
    status = f.record.status[-1] if f.record.status else None
    if status is not None and status.get("state") == "online":
        reported = [m.get("version") for m in status.get("models", []) if m.get("slot") == SLOT]
        if reported != [check.version]:
            problems.append(f"retained status reports {reported}")
    ended = [u.end for u in f.all_updates() if u.end is not None]
    after = max(ended) if ended else 0.0
    stray = sorted({b["model_version"] for b in f.record.batches if b["ts"] > after + 0.5}
                   - {check.version})
    if stray:
        problems.append(f"results after the last update came from v{stray}")
    if problems:
        return Verdict(False, "; ".join(problems))
    return Verdict(True, f"one live model v{check.version}: agent, status and results agree")


def device_metrics(f: DeviceFacts) -> dict[str, Any]:
    """Key figures for the report."""
    ups = f.all_updates()
    windows = [(u.start, u.end) for u in ups if u.end is not None]
    lost = lost_lines(f.written, set(f.record.lines))
    return {
        "lines_written": f.written,
        "lines_with_result": f.written - len(lost),
        "lines_lost": len(lost),
        "result_batches": len(f.record.batches),
        "duplicate_batches": f.record.duplicates,
        "replayed_batches": f.record.replayed,
        "results_by_version": {str(k): v for k, v in sorted(f.record.results_by_version.items())},
        "alerts": f.record.alerts,
        "max_result_gap_during_updates_s": max_gap([b["ts"] for b in f.record.batches],
                                                   windows),
        "inference_errors": counter_total(f.record.metrics, "inference_errors",
                                          f.live_counters),
        "updates": [{"from_version": u.from_version, "to_version": u.to_version,
                     "final": u.final, "reason": u.reason, "artifact": u.artifact,
                     "bytes_downloaded": u.bytes_downloaded, "duration_s": u.duration_s,
                     "states": u.states} for u in ups],
        "live_models": f.live_models,
        "unexpected_exits": f.unexpected_exits,
    }
