"""Nano model budgets: bundle size, throughput, RSS and single-line latency, per runtime.

    python benchmarks/model_speed.py [--bundle PATH] [--repeats 5]

Each runtime is measured in its own child process pinned to one CPU core with
one runtime thread, so RSS is that of a process holding just this model and
throughput is truly single-core. Throughput is lines/s at batch 64 on
generated lines of every style (training and held-out), with tokenization
(``nanomodel.features``) and inference timed apart; the median of
``--repeats`` runs is reported (the machine may be shared). Latency is
``LoadedModel.classify([line])`` per call, tokenization included.

Budgets: bundle <= 1 MiB (issue 3); >= 50,000 lines/s on one core at batch 64
including tokenization (issue 9's "budgets that still hold"; issue 3 asked 20,000).
Prints a human summary, then one JSON line (the last line).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RUNTIMES = ("onnxruntime", "litert")
BATCH = 64
BUDGET_BUNDLE_BYTES = 1024 * 1024
BUDGET_LINES_PER_S = 50_000


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(runtime: str, bundle: Path, repeats: int, cpu: int) -> dict[str, Any]:
    """Runs in the pinned child process."""
    os.sched_setaffinity(0, {cpu})
    rss_start = _rss_mb()
    import numpy as np

    from nanomodel.corpus import STYLES, generate
    from nanomodel.readings import READING_STYLES

    texts = [e.text for e in generate(BATCH * 100, 4711, list(STYLES) + list(READING_STYLES))]
    rss_before = _rss_mb()
    from agent.model import LoadedModel
    from nanomodel.evaluate import measure_single_latency, measure_throughput

    t0 = time.perf_counter()
    model = LoadedModel.load(bundle, runtime, threads=1)
    model.smoke_test()
    load_ms = (time.perf_counter() - t0) * 1e3
    rss_loaded = _rss_mb()
    runs = [measure_throughput(model, texts, BATCH, min_seconds=0.6) for _ in range(repeats)]
    latency = measure_single_latency(model, texts, 2000)
    rss_after = _rss_mb()

    def median(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    return {
        "runtime": model.runtime_name, "cpu": cpu, "load_ms": load_ms,
        "mean_line_chars": float(np.mean([len(t) for t in texts])),
        "lines_per_s": median("lines_per_s"),
        "lines_per_s_best": max(r["lines_per_s"] for r in runs),
        "tokenize_lines_per_s": median("tokenize_lines_per_s"),
        "inference_lines_per_s": median("inference_lines_per_s"),
        "tokenize_us_per_line": median("tokenize_us_per_line"),
        "inference_us_per_line": median("inference_us_per_line"),
        "single_line_p50_ms": latency["p50_ms"], "single_line_p99_ms": latency["p99_ms"],
        "rss_interpreter_mb": rss_start, "rss_before_load_mb": rss_before,
        "rss_loaded_mb": rss_loaded, "rss_after_run_mb": rss_after,
        "rss_model_mb": rss_loaded - rss_before,
    }


def run_child(runtime: str, bundle: Path, repeats: int) -> dict[str, Any]:
    cpu = sorted(os.sched_getaffinity(0))[-1]
    out = subprocess.run(
        [sys.executable, __file__, "--child", runtime, "--bundle", str(bundle),
         "--repeats", str(repeats), "--cpu", str(cpu)],
        capture_output=True, text=True, check=True, timeout=600)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    from nanomodel import default_bundle_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=default_bundle_path())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", choices=RUNTIMES, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.bundle, args.repeats, args.cpu)))
        return 0

    size = args.bundle.stat().st_size
    results = {name: run_child(name, args.bundle, args.repeats) for name in RUNTIMES}
    print(f"bundle {args.bundle.name}: {size} bytes "
          f"({'within' if size <= BUDGET_BUNDLE_BYTES else 'OVER'} the 1 MiB budget)")
    for name, r in results.items():
        ok = r["lines_per_s"] >= BUDGET_LINES_PER_S
        print(f"{name:12s} {r['lines_per_s']:8.0f} lines/s at batch {BATCH} on one core "
              f"({'meets' if ok else 'MISSES'} {BUDGET_LINES_PER_S}); tokenize "
              f"{r['tokenize_us_per_line']:.1f} us/line ({r['tokenize_lines_per_s']:.0f}/s), "
              f"inference {r['inference_us_per_line']:.1f} us/line "
              f"({r['inference_lines_per_s']:.0f}/s)")
        print(f"{'':12s} single line p50 {r['single_line_p50_ms']:.3f} ms, p99 "
              f"{r['single_line_p99_ms']:.3f} ms; RSS {r['rss_loaded_mb']:.1f} MB with the "
              f"model loaded (+{r['rss_model_mb']:.1f} MB for runtime + model; interpreter "
              f"{r['rss_interpreter_mb']:.1f} MB); load + smoke test {r['load_ms']:.0f} ms")
    summary = {
        "bundle_bytes": size, "bundle_within_budget": size <= BUDGET_BUNDLE_BYTES,
        "batch": BATCH, "budget_lines_per_s": BUDGET_LINES_PER_S,
        "runtimes": results,
        "all_budgets_met": size <= BUDGET_BUNDLE_BYTES and all(
            r["lines_per_s"] >= BUDGET_LINES_PER_S for r in results.values()),
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
