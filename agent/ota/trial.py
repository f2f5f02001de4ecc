"""The model in trial, observed: it serves the pipeline like any model while every
call is counted for :mod:`agent.ota.health`. Also the trial watch loop, the paired
comparison of old and new model on sampled lines, and how a model is let go of.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from agent.memory import release_freed_memory
from agent.metrics import LatencyWindow, resident_bytes
from agent.ota.config import TrialConfig
from agent.ota.health import (
    PairedSample,
    ReferenceLine,
    TrialStats,
    Verdict,
    early_failure,
    evaluate,
    memory_failure,
    memory_growth_mb,
    swapped_labels,
    trial_phase,
)
from contract.bundle import BundleManifest
from contract.reasons import OtaReason

log = logging.getLogger("nanofleet.agent.ota")


class ServingModel(Protocol):
    """What the pipeline and queries use (agent.model.LoadedModel satisfies it)."""

    manifest: BundleManifest
    runtime_name: str
    bundle_sha256: str

    def classify(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class MemoryBudget:
    """What a new model may take: the agent's resident bytes just before it loaded, the
    MiB allowed above them (None: not checked) and how memory is read since: the peak
    (``VmHWM``, reset at the baseline) where the kernel allows it, else a sample."""

    baseline: float | None
    allowed_mb: float | None
    read: Callable[[], float | None] = resident_bytes

    def grown_mb(self) -> float | None:
        return memory_growth_mb(self.baseline, self.read())


class ObservedModel:
    """Wraps the candidate during its trial.

    After :meth:`retire` (a rollback) every call goes to ``fallback`` instead: a batch
    that took this wrapper from the slot just before the swap back still gets a result,
    and no call can reach the candidate once it is closed (``_gate`` is held around the
    choice and the call, so ``retire`` returns only when no call is inside the candidate).
    """

    def __init__(self, candidate: ServingModel, fallback: ServingModel, sample_lines: int,
                 prob_sum_tolerance: float, seed: int = 0) -> None:
        self.candidate = candidate
        self.fallback = fallback
        self.manifest = candidate.manifest
        self.runtime_name = candidate.runtime_name
        self.bundle_sha256 = candidate.bundle_sha256
        self._labels = list(candidate.manifest.labels)
        self._tolerance = prob_sum_tolerance
        self._gate = threading.Lock()
        self._retired = False
        self._stats_lock = threading.Lock()
        self._latency = LatencyWindow(1024)
        self._counts = {"lines": 0, "calls": 0, "error_lines": 0, "nonfinite_rows": 0,
                        "bad_sum_rows": 0}
        self._labels_seen: dict[str, int] = {}
        self._last_error: str | None = None
        self._sample: list[str] = []
        self._sample_size = sample_lines
        self._rng = random.Random(seed)

    def classify(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        with self._gate:
            if self._retired:
                return self.fallback.classify(texts)
            t0 = time.perf_counter()
            try:
                probs, anomaly = self.candidate.classify(texts)
            except Exception as exc:
                self._record_error(len(texts), exc)
                raise
            self._record(texts, probs, anomaly, time.perf_counter() - t0)
            return probs, anomaly

    def classify_unobserved(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """A technician's query: answered by the model that serves now, and not counted.
        (Before, review December 2026: one 256-line query met ``min_inferences`` and filled
        the whole sample the verdict compares old and new model on, so a technician trying
        the new model on a few failure lines could roll it back, or commit a bad one.)"""
        with self._gate:
            model = self.fallback if self._retired else self.candidate
            return model.classify(texts)

    def explain(self, texts: list[str], top: int = 5) -> list[list[dict[str, float | str]]]:
        """Why, from the model that would answer :meth:`classify` now. The choice is made
        under the gate, the explaining outside it: it reads the bundle's weights, never the
        runtime, and held the gate (review, December 2026) explanations stalled the
        pipeline's batches for up to 2 s during a trial."""
        with self._gate:
            model = self.fallback if self._retired else self.candidate
        explain = getattr(model, "explain", None)
        if explain is None:
            raise ValueError("the live model cannot explain its decisions")
        result: list[list[dict[str, float | str]]] = explain(texts, top)
        return result

    def retire(self) -> None:
        with self._gate:
            self._retired = True

    def close(self) -> None:
        """Closing the wrapper closes nothing: the engine owns both models."""

    # --- bookkeeping ---------------------------------------------------------------------
    def _record_error(self, n: int, exc: Exception) -> None:
        with self._stats_lock:
            self._counts["lines"] += n
            self._counts["calls"] += 1
            self._counts["error_lines"] += n
            self._last_error = f"{type(exc).__name__}: {exc}"[:300]

    def _record(self, texts: list[str], probs: np.ndarray, anomaly: np.ndarray,
                seconds: float) -> None:
        # The anomaly is an output of its own (the alerts' score): NaN there silences
        # anomaly alerts and cannot be published; well above 1 or below 0 it is no
        # probability (a sure model's float32 sum may pass 1 by a rounding error).
        score = np.asarray(anomaly, dtype=np.float64).reshape(-1)
        finite = np.all(np.isfinite(probs), axis=1)
        if score.shape[0] == finite.shape[0]:
            finite &= np.isfinite(score) & (score >= -self._tolerance) \
                & (score <= 1.0 + self._tolerance)
        else:
            finite[:] = False  # one anomaly per line, or the output is not sane
        sums_bad = finite & (np.abs(probs.sum(axis=1) - 1.0) > self._tolerance)
        best = probs.argmax(axis=1)
        with self._stats_lock:
            c = self._counts
            c["calls"] += 1
            c["nonfinite_rows"] += int((~finite).sum())
            c["bad_sum_rows"] += int(sums_bad.sum())
            for i in np.flatnonzero(finite):
                label = self._labels[int(best[i])]
                self._labels_seen[label] = self._labels_seen.get(label, 0) + 1
            for text in texts:  # reservoir sampling (Algorithm R): a uniform, bounded sample
                c["lines"] += 1
                if len(self._sample) < self._sample_size:
                    self._sample.append(text)
                else:
                    j = self._rng.randrange(c["lines"])
                    if j < self._sample_size:
                        self._sample[j] = text
        self._latency.add(seconds)

    def stats(self) -> TrialStats:
        with self._stats_lock:
            c = dict(self._counts)
            labels = dict(self._labels_seen)
            last_error = self._last_error
        return TrialStats(lines=c["lines"], calls=c["calls"], error_lines=c["error_lines"],
                          nonfinite_rows=c["nonfinite_rows"], bad_sum_rows=c["bad_sum_rows"],
                          labels=labels, latency_p99_ms=self._latency.percentile(99) * 1000,
                          last_error=last_error)

    def sample(self) -> list[str]:
        with self._stats_lock:
            return list(self._sample)


def _p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) * 1000 if values else 0.0


def _label_counts(model: ServingModel, probs: np.ndarray) -> dict[str, int]:
    labels = model.manifest.labels
    counts: dict[str, int] = {}
    for row in probs:
        if np.all(np.isfinite(row)):
            name = labels[int(row.argmax())]
            counts[name] = counts.get(name, 0) + 1
    return counts


def compare_on_sample(baseline: ServingModel, candidate: ServingModel, texts: list[str],
                      batch_size: int = 32, rounds: int = 3,
                      clock: Callable[[], float] = time.perf_counter,
                      flag_threshold: float = 0.5) -> PairedSample:
    """Run both models on the same batches, back to back, ``rounds`` times.

    ``clock``: ``time.thread_time`` (CPU time of this thread) when the runtime computes
    on the calling thread (one runtime thread): it ignores time spent waiting — for the
    candidate's lock, which the pipeline holds while it serves traffic, or for a CPU
    other processes keep busy — so only the model's own cost is compared. A batch's
    time is its best of the rounds (noise only ever adds time; a slow model is slow
    every time); the p99 is then taken over the batches."""
    batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    best = {id(baseline): [float("inf")] * len(batches),
            id(candidate): [float("inf")] * len(batches)}
    outputs: dict[int, list[np.ndarray]] = {id(baseline): [], id(candidate): []}
    flagged = {id(baseline): 0, id(candidate): 0}
    for r in range(rounds):
        for b, batch in enumerate(batches):
            for model in (baseline, candidate):
                t0 = clock()
                probs, anomaly = model.classify(batch)
                best[id(model)][b] = min(best[id(model)][b], clock() - t0)
                if r == 0:
                    outputs[id(model)].append(probs)
                    flagged[id(model)] += int(np.count_nonzero(
                        np.asarray(anomaly, dtype=np.float64) > flag_threshold))

    def labels(model: ServingModel) -> dict[str, int]:
        outs = outputs[id(model)]
        k = len(model.manifest.labels)
        return _label_counts(model, np.concatenate(outs) if outs else np.zeros((0, k)))

    return PairedSample(lines=len(texts), baseline_labels=labels(baseline),
                        candidate_labels=labels(candidate),
                        baseline_p99_ms=_p99(best[id(baseline)]),
                        candidate_p99_ms=_p99(best[id(candidate)]),
                        baseline_flagged=flagged[id(baseline)],
                        candidate_flagged=flagged[id(candidate)],
                        pairs=_label_pairs(baseline, candidate, outputs[id(baseline)],
                                           outputs[id(candidate)]))


def _label_pairs(baseline: ServingModel, candidate: ServingModel, old: list[np.ndarray],
                 new: list[np.ndarray]) -> dict[tuple[str, str], int]:
    """(old label, new label) -> lines, over the lines both models gave finite rows."""
    if not old or not new:
        return {}
    a, b = np.concatenate(old), np.concatenate(new)
    ok = np.all(np.isfinite(a), axis=1) & np.all(np.isfinite(b), axis=1)
    names_a, names_b = baseline.manifest.labels, candidate.manifest.labels
    pairs: dict[tuple[str, str], int] = {}
    for i, j in zip(a[ok].argmax(axis=1), b[ok].argmax(axis=1), strict=True):
        key = (names_a[int(i)], names_b[int(j)])
        pairs[key] = pairs.get(key, 0) + 1
    return pairs


def golden_texts(*models: ServingModel) -> list[str]:
    """The bundles' own example lines (their golden vectors' texts), old model's first.
    A quiet device (a night, a rarely logging sensor) samples too few live lines to
    compare old and new model on; with these the comparison is still made. Before
    (review, December 2026) such a trial compared nothing and a collapsed, 50x slower
    model committed by ``on_low_traffic``."""
    texts: list[str] = []
    for model in models:
        texts += [g.text for g in model.manifest.golden if g.text not in texts]
    return texts


def reference_lines(baseline: ServingModel, candidate: ServingModel,
                    examples: Sequence[tuple[str, str]]) -> list[ReferenceLine]:
    """The factory bundle's example lines ``(text, label it was built to give)`` with the
    labels the old and the new model give them (rows not finite in either: left out)."""
    if not examples:
        return []
    texts = [text for text, _ in examples]
    old, _ = baseline.classify(texts)
    new, _ = candidate.classify(texts)
    rows = []
    for (_, expected), a, b in zip(examples, np.asarray(old), np.asarray(new), strict=True):
        if np.all(np.isfinite(a)) and np.all(np.isfinite(b)):
            rows.append(ReferenceLine(expected, baseline.manifest.labels[int(a.argmax())],
                                      candidate.manifest.labels[int(b.argmax())]))
    return rows


def watch_trial(observed: ObservedModel, baseline: ServingModel, cfg: TrialConfig,
                started: float, stop: threading.Event, rollback: threading.Event,
                batch_size: int, clock: Callable[[], float] = time.perf_counter,
                tick_s: float = 0.1,
                examples: Callable[[], Sequence[tuple[str, str]]] = tuple,
                memory: MemoryBudget | None = None) -> Verdict | None:
    """Watch the live candidate until a verdict (None if ``stop`` is set first).
    ``examples``: gives the factory bundle's example lines (:func:`reference_lines`); asked
    only when the models exchanged labels. ``memory``: the candidate's budget, checked at
    every tick."""
    peak: float | None = None
    allowed = memory.allowed_mb if memory is not None else None

    def grown() -> float | None:
        nonlocal peak
        now = memory.grown_mb() if memory is not None else None
        if now is not None:
            peak = now if peak is None else max(peak, now)
        return peak

    while not stop.wait(tick_s):
        if rollback.is_set():
            return Verdict(False, OtaReason.OPERATOR_ROLLBACK,
                           "rollback requested by the desired state")
        stats = observed.stats()
        failure = early_failure(stats, cfg) or memory_failure(grown(), allowed,
                                                              "during the trial")
        if failure is not None:
            return failure
        phase = trial_phase(time.monotonic() - started, stats.lines, cfg)
        if phase == "running":
            continue
        sample = observed.sample()
        fillers = golden_texts(baseline, observed.candidate)
        while fillers and len(sample) < cfg.min_sample_lines:
            # The examples as often as needed to reach min_sample_lines: both models read
            # the same lines, so repeats weigh them, they do not bias old against new.
            sample += fillers[:cfg.min_sample_lines - len(sample)]
        paired = compare_on_sample(baseline, observed.candidate, sample, batch_size,
                                   clock=clock, flag_threshold=cfg.flag_threshold) \
            if len(sample) >= cfg.min_sample_lines else None
        reference = reference_lines(baseline, observed.candidate, examples()) \
            if paired is not None and swapped_labels(paired, cfg) else []
        # After the comparison too: it runs full batches, which a quiet device's live
        # traffic may never have sent.
        return evaluate(observed.stats(), paired, cfg, timed_out=phase == "timed_out",
                        reference=reference, grown_mb=grown(), allowed_mb=allowed)
    return None


def release_model(model: ServingModel) -> None:
    """Close a model and hand its memory back to the OS.

    ONNX Runtime frees a session's buffers with ``free()``, but glibc keeps freed
    arena pages mapped; over many hot-swaps RSS creeps up (see docs/updates.md,
    "On the device"). ``malloc_trim(0)`` returns them."""
    model.close()
    release_freed_memory()
