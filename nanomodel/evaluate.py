"""Evaluate a bundle on labeled lines through the agent's real inference path.

Quality (per-class precision/recall/F1, macro-F1, the keyword baseline beside
it) and speed (batch throughput with tokenization and inference timed apart,
single-line latency percentiles), as one JSON-ready dict.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from agent.model import LoadedModel
from nanomodel.baseline import KeywordBaseline
from nanomodel.dataio import DataError, LabeledData
from nanomodel.metrics import Report, score


def measure_throughput(model: LoadedModel, texts: Sequence[str], batch: int = 64,
                       min_seconds: float = 0.5) -> dict[str, float]:
    """Lines/s at ``batch``, with tokenization and inference timed separately."""
    if not texts:
        raise ValueError("no lines to time")
    pool = list(texts)
    while len(pool) < batch:
        pool += list(texts)
    batches = [pool[i : i + batch] for i in range(0, len(pool) - batch + 1, batch)]
    model.runtime.run(model.featurizer.transform(batches[0]))  # warm-up
    tok = inf = 0.0
    lines = 0
    start = time.perf_counter()
    while True:
        for chunk in batches:
            t0 = time.perf_counter()
            x = model.featurizer.transform(chunk)
            t1 = time.perf_counter()
            model.runtime.run(x)
            t2 = time.perf_counter()
            tok += t1 - t0
            inf += t2 - t1
            lines += len(chunk)
        if time.perf_counter() - start >= min_seconds:
            break
    return {"batch": batch, "lines": lines, "lines_per_s": lines / (tok + inf),
            "tokenize_lines_per_s": lines / tok, "inference_lines_per_s": lines / inf,
            "tokenize_us_per_line": 1e6 * tok / lines, "inference_us_per_line": 1e6 * inf / lines}


def measure_single_latency(model: LoadedModel, texts: Sequence[str],
                           count: int = 500) -> dict[str, float]:
    """Per-call latency of ``classify([line])`` (tokenize + run), percentiles in ms."""
    if not texts:
        raise ValueError("no lines to time")
    model.classify([texts[0]])
    samples = []
    for i in range(count):
        t0 = time.perf_counter()
        model.classify([texts[i % len(texts)]])
        samples.append(time.perf_counter() - t0)
    ms = np.array(samples) * 1e3
    return {"calls": count, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


def score_bundle(model: LoadedModel, texts: Sequence[str], batch: int = 256
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, anomaly) of every line, through the agent's runtime, a batch at a
    time (a whole evaluation file in one call would size the runtime's buffers to it)."""
    probs: list[np.ndarray] = []
    anomaly: list[np.ndarray] = []
    for i in range(0, len(texts), batch):
        p, a = model.classify(list(texts[i:i + batch]))
        probs.append(np.asarray(p))
        anomaly.append(np.asarray(a))
    return np.concatenate(probs), np.concatenate(anomaly)


def _report_dict(report: Report) -> dict[str, Any]:
    return {"macro_f1": report.macro_f1, "accuracy": report.accuracy,
            "per_class": [asdict(c) for c in report.per_class]}


def evaluate_bundle(data: LabeledData, bundle: Path, runtime: str = "onnxruntime",
                    batch: int = 64, timing: bool = True) -> dict[str, Any]:
    model = LoadedModel.load(bundle, runtime)
    try:
        labels = model.labels
        stray = sorted(set(data.labels) - set(labels))
        if stray:
            raise DataError(f"{data.source}: labels {stray} are not in the bundle's labels "
                            f"{labels} (for alert / no-alert figures on any labels: --alerts)")
        truth = [labels.index(lab) for lab in data.labels]
        probs, _ = score_bundle(model, data.texts, batch)
        ours = score(truth, [int(k) for k in probs.argmax(axis=1)], labels)
        base = score(truth, KeywordBaseline(labels, model.manifest.normal_label)
                     .predict(data.texts), labels)
        result: dict[str, Any] = {
            "bundle": str(bundle), "bundle_sha256": model.bundle_sha256,
            "model": f"{model.manifest.name} v{model.manifest.version}",
            "runtime": model.runtime_name, "lines": len(data.texts),
            "model_scores": _report_dict(ours), "keyword_baseline": _report_dict(base),
        }
        if timing:
            result["throughput"] = measure_throughput(model, data.texts, batch)
            result["single_line"] = measure_single_latency(model, data.texts, 300)
        return result
    finally:
        model.close()
