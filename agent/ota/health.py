"""Trial health: pure decisions on what a new model did while it was live.

Two kinds of evidence:

- :class:`TrialStats`, counted on every batch the new model served (errors,
  non-finite rows, rows whose probabilities do not sum to 1, labels, latency);
- :class:`PairedSample`, the old and the new model run on the *same* sampled
  trial lines at verdict time, so the label mix and the latency of the two are
  compared on equal input — a quiet night is not mistaken for a collapse, and a
  busy CPU slows both.

:func:`early_failure` may end a trial at once (errors, non-finite output);
:func:`trial_phase` says when a verdict is due; :func:`evaluate` gives it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from agent.ota.config import TrialConfig
from contract.reasons import OtaReason


@dataclass(frozen=True)
class TrialStats:
    """What the new model did on live traffic during the trial."""

    lines: int = 0          # lines classified (including those of failed calls)
    calls: int = 0          # classify calls
    error_lines: int = 0    # lines of calls that raised
    nonfinite_rows: int = 0  # rows with NaN/inf probabilities or an anomaly not in [0, 1]
    bad_sum_rows: int = 0   # finite rows whose probabilities do not sum to 1
    labels: dict[str, int] = field(default_factory=dict)
    latency_p99_ms: float = 0.0
    last_error: str | None = None


@dataclass(frozen=True)
class PairedSample:
    """Old and new model on the same sampled lines."""

    lines: int
    baseline_labels: dict[str, int]
    candidate_labels: dict[str, int]
    baseline_p99_ms: float
    candidate_p99_ms: float
    # lines flagged (anomaly above TrialConfig.flag_threshold) by each, of ``lines``
    baseline_flagged: int = 0
    candidate_flagged: int = 0
    # (old model's label, new model's label) -> lines, where both gave finite outputs
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferenceLine:
    """One example line of the configured (factory) bundle: the label it was built to give,
    and the labels the old and the new model give it. The arbiter when the two models
    exchange labels: the old one may be the model that is wrong."""

    expected: str
    old: str
    new: str


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: OtaReason | None  # None when healthy
    detail: str
    figures: dict[str, float] = field(default_factory=dict)


def _rate(n: int, total: int) -> float:
    return n / total if total else 0.0


def early_failure(stats: TrialStats, cfg: TrialConfig) -> Verdict | None:
    """Failures that need no comparison and no waiting: roll back now."""
    if stats.error_lines and _rate(stats.error_lines, stats.lines) > cfg.max_error_rate:
        return Verdict(False, OtaReason.HEALTH_ERRORS,
                       f"{stats.error_lines} of {stats.lines} lines failed inference "
                       f"(max rate {cfg.max_error_rate}): {stats.last_error}",
                       {"error_rate": _rate(stats.error_lines, stats.lines)})
    finite_rows = stats.lines - stats.error_lines
    if stats.nonfinite_rows and _rate(stats.nonfinite_rows, finite_rows) > cfg.max_nonfinite_rate:
        return Verdict(False, OtaReason.HEALTH_NON_FINITE,
                       f"{stats.nonfinite_rows} of {finite_rows} output rows contain NaN or "
                       f"inf or an anomaly outside [0, 1] (max rate {cfg.max_nonfinite_rate})",
                       {"nonfinite_rate": _rate(stats.nonfinite_rows, finite_rows)})
    if stats.bad_sum_rows and _rate(stats.bad_sum_rows, finite_rows) > cfg.max_bad_sum_rate:
        return Verdict(False, OtaReason.HEALTH_PROBABILITIES,
                       f"{stats.bad_sum_rows} of {finite_rows} output rows are not "
                       f"probabilities summing to 1 (±{cfg.prob_sum_tolerance})",
                       {"bad_sum_rate": _rate(stats.bad_sum_rows, finite_rows)})
    return None


MIB = 1024.0 * 1024.0


def memory_growth_mb(baseline_bytes: float | None, resident_bytes: float | None) -> float | None:
    """MiB the agent's resident memory grew since ``baseline_bytes`` (None without /proc)."""
    if baseline_bytes is None or resident_bytes is None:
        return None
    return (resident_bytes - baseline_bytes) / MIB


# A model unpacks its weights and keeps the bundle's bytes: about three times the bundle's
# size beside the live model (measured on 10-30 MiB bundles, December 2026).
BUNDLE_MEMORY_FACTOR = 4.0


def memory_allowance_mb(cfg: TrialConfig, bundle_bytes: int) -> float | None:
    """MiB the agent may grow by with a candidate of ``bundle_bytes`` loaded: the
    configured headroom plus four times the bundle (a bigger model on disk is a bigger
    one in memory, and a site that ships one has chosen it). None: not checked."""
    if not cfg.max_memory_growth_mb:
        return None
    return cfg.max_memory_growth_mb + BUNDLE_MEMORY_FACTOR * bundle_bytes / MIB


def memory_failure(grown_mb: float | None, allowed_mb: float | None,
                   during: str) -> Verdict | None:
    """Too much memory for the new model: a device's RAM is shared with what it is there
    for, and the kernel's OOM killer may pick that instead of the agent. Measured as the
    whole process's resident memory at its peak (what the OOM killer and a unit's
    ``MemoryMax`` see), not a runtime's own account, which a graph's arena can bypass."""
    if allowed_mb is None or grown_mb is None or grown_mb <= allowed_mb:
        return None
    return Verdict(False, OtaReason.HEALTH_MEMORY,
                   f"the agent's resident memory grew by {grown_mb:.1f} MiB {during} "
                   f"(allowed {allowed_mb:.1f} MiB: [ota.trial] max_memory_growth_mb plus "
                   f"{BUNDLE_MEMORY_FACTOR:g} times the bundle's size)",
                   {"memory_growth_mb": round(grown_mb, 1)})


def trial_phase(elapsed_s: float, lines: int,
                cfg: TrialConfig) -> Literal["running", "ready", "timed_out"]:
    """``ready``: long enough and enough lines; ``timed_out``: out of time, decide anyway."""
    if elapsed_s >= cfg.duration_s and lines >= cfg.min_inferences:
        return "ready"
    if elapsed_s >= cfg.timeout_s:
        return "timed_out"
    return "running"


def collapse(sample: PairedSample, cfg: TrialConfig) -> tuple[str, float, float] | None:
    """(label, new share, old share) when the new model piles the sample on one label
    that the old model used far less on the same lines; else None."""
    if sample.lines < cfg.min_sample_lines or not sample.candidate_labels:
        return None
    label, count = max(sample.candidate_labels.items(), key=lambda kv: kv[1])
    new_share = count / sample.lines
    old_share = sample.baseline_labels.get(label, 0) / sample.lines
    if new_share >= cfg.collapse_share and old_share <= new_share - cfg.collapse_margin:
        return label, new_share, old_share
    return None


RingStep = tuple[str, str, int, int]  # (old label, new label, lines moved, old label's lines)


def swapped_labels(sample: PairedSample, cfg: TrialConfig) -> list[list[RingStep]]:
    """The rings of labels the new model exchanged, each as its ``(old label, new label,
    lines moved, lines the old model gave the old label)`` steps; empty when there is none.

    Each label the old model gave to at least ``swap_min_lines`` sampled lines leads to
    the label the new model gives most of those lines, when that is another label and at
    least ``swap_share`` of them. A ring (A -> B -> A) is what a training or packaging
    mix-up of the output order does: every count and rate still looks right, but the
    device files a failing disk under security. A site's fine-tune that moves one
    category into another (or to normal) is no ring."""
    totals: dict[str, int] = {}
    for (old, _), n in sample.pairs.items():
        totals[old] = totals.get(old, 0) + n
    leads: dict[str, tuple[str, int]] = {}
    for old, total in totals.items():
        if total < cfg.swap_min_lines:
            continue
        new, n = max(((b, c) for (a, b), c in sample.pairs.items() if a == old),
                     key=lambda bc: (bc[1], bc[0]))
        if new != old and n >= cfg.swap_share * total:
            leads[old] = (new, n)
    return _rings(leads, totals)


def _rings(leads: dict[str, tuple[str, int]], totals: dict[str, int]) -> list[list[RingStep]]:
    """Every ring of the leads, each once."""
    rings: list[list[RingStep]] = []
    seen: set[str] = set()
    for start in sorted(leads):
        if start in seen:
            continue
        ring, at = [start], leads[start][0]
        while at in leads and at not in ring:
            ring.append(at)
            at = leads[at][0]
        if at == start:
            seen.update(ring)
            rings.append([(a, leads[a][0], leads[a][1], totals[a]) for a in ring])
    return rings


def old_model_is_the_odd_one(ring: list[RingStep],
                             reference: Sequence[ReferenceLine]) -> bool:
    """Whether the factory's example lines of the ring's labels side with the new model:
    it gives each of them the label it was built with, the old model does not on some.
    Then the old model is the swapped one (committed before this check, or through a
    trial too quiet to show it) and the new one is its cure (review, December 2026: the
    fix of a swapped model was rolled back as swapped). No such lines: no say."""
    labels = {old for old, _, _, _ in ring}
    rows = [r for r in reference if r.expected in labels]
    return bool(rows) and all(r.new == r.expected for r in rows) and \
        any(r.old != r.expected for r in rows)


def flag_rate(sample: PairedSample, cfg: TrialConfig) -> str | None:
    """Why the new model's flags on the sample are out of line with the old model's on
    the same lines (an alert storm, or, when configured, silence); else None."""
    if sample.lines < cfg.min_sample_lines:
        return None
    old, new = sample.baseline_flagged, sample.candidate_flagged
    old_share, new_share = old / sample.lines, new / sample.lines
    # Several times fewer lines left unflagged (and more than the margin more flags): most
    # of what was quiet is flagged now. Not "several times the flags": a site's fine-tune
    # that finds what the base model missed multiplies a small share of flags, and the
    # demo's v2 was rolled back by that (measured, December 2026).
    if (new_share > old_share + cfg.flag_margin
            and 1.0 - new_share < (1.0 - old_share) / cfg.max_flag_ratio):
        return (f"flags {new} of {sample.lines} sampled lines ({new_share:.0%}); the previous "
                f"model flagged {old} ({old_share:.0%}) of the same lines (max ratio "
                f"{cfg.max_flag_ratio}, margin {cfg.flag_margin})")
    if cfg.silence_min_flags and old >= cfg.silence_min_flags and new == 0:
        return (f"flags none of {sample.lines} sampled lines; the previous model flagged {old} "
                f"(silence_min_flags {cfg.silence_min_flags})")
    return None


def evaluate(stats: TrialStats, sample: PairedSample | None, cfg: TrialConfig, *,
             timed_out: bool, reference: Sequence[ReferenceLine] = (),
             grown_mb: float | None = None, allowed_mb: float | None = None) -> Verdict:
    """The verdict at the end of a trial (``reference``: see :class:`ReferenceLine`;
    ``grown_mb``: the most the agent's memory grew since the new model loaded, against
    ``allowed_mb``: :func:`memory_allowance_mb`)."""
    overruled = ""
    figures: dict[str, float] = {"lines": float(stats.lines),
                                 "live_p99_ms": round(stats.latency_p99_ms, 3)}
    failure = early_failure(stats, cfg) or memory_failure(grown_mb, allowed_mb,
                                                          "during the trial")
    if failure is not None:
        return failure
    memory = ""
    if grown_mb is not None:
        figures["memory_growth_mb"] = round(grown_mb, 1)
        memory = f", memory {grown_mb:+.1f} MiB"
    if sample is not None and sample.lines >= cfg.min_sample_lines:
        figures |= {"sample_lines": float(sample.lines),
                    "baseline_p99_ms": round(sample.baseline_p99_ms, 3),
                    "candidate_p99_ms": round(sample.candidate_p99_ms, 3)}
        limit = max(cfg.latency_floor_ms, sample.baseline_p99_ms * cfg.max_latency_ratio)
        if sample.candidate_p99_ms > limit:
            return Verdict(False, OtaReason.HEALTH_LATENCY,
                           f"p99 batch latency {sample.candidate_p99_ms:.2f} ms against "
                           f"{sample.baseline_p99_ms:.2f} ms for the previous model on the same "
                           f"lines (max ratio {cfg.max_latency_ratio})", figures)
        collapsed = collapse(sample, cfg)
        if collapsed is not None:
            label, new_share, old_share = collapsed
            return Verdict(False, OtaReason.HEALTH_COLLAPSE,
                           f"{new_share:.0%} of {sample.lines} sampled lines get label "
                           f"{label!r}; the previous model gave it to {old_share:.0%} of them",
                           figures | {"collapse_share": round(new_share, 4)})
        rings = swapped_labels(sample, cfg)
        # Each ring on its own: the cure of one swap must not carry another one in.
        standing = [r for r in rings if not old_model_is_the_odd_one(r, reference)]
        if standing:
            steps = "; ".join(f"{moved} of the {total} lines the previous model called {a!r} "
                              f"are {b!r} now" for ring in standing
                              for a, b, moved, total in ring)
            return Verdict(False, OtaReason.HEALTH_LABELS_SWAPPED,
                           f"labels exchanged on {sample.lines} sampled lines: {steps}",
                           figures | {"swapped_labels": float(sum(map(len, standing)))})
        if rings:
            labels = sorted(a for ring in rings for a, _, _, _ in ring)
            overruled = (f"; labels {', '.join(labels)} exchanged against the previous model, "
                         "which the factory bundle's example lines show to be the swapped one")
        figures |= {"baseline_flagged": float(sample.baseline_flagged),
                    "candidate_flagged": float(sample.candidate_flagged)}
        storm = flag_rate(sample, cfg)
        if storm is not None:
            return Verdict(False, OtaReason.HEALTH_FLAG_RATE, storm, figures)
    if timed_out and stats.lines < cfg.min_inferences:
        note = (f"only {stats.lines} of {cfg.min_inferences} lines within "
                f"{cfg.timeout_s:.0f} s")
        if cfg.on_low_traffic == "rollback":
            return Verdict(False, OtaReason.HEALTH_LOW_TRAFFIC, f"{note}; policy: roll back",
                           figures)
        return Verdict(True, None, f"{note}; no fault seen, committed by policy", figures)
    compared = (f"; on {sample.lines} sampled lines p99 {sample.candidate_p99_ms:.2f} ms "
                f"vs {sample.baseline_p99_ms:.2f} ms before"
                if sample is not None and sample.lines >= cfg.min_sample_lines else "")
    return Verdict(True, None, f"healthy on {stats.lines} lines: no errors, sane outputs, "
                   f"live p99 {stats.latency_p99_ms:.2f} ms{memory}{compared}{overruled}",
                   figures)
