"""Fuzz every target of ``tests/fuzz_targets`` for many cases; print the figures.

    python -m benchmarks.fuzz [--cases 100000] [--jobs 2] [--only NAME ...] [--out DIR]

Per target: cases, cases/s, crashes (must be 0) and peak RSS growth over the run
(after the seeds warmed the caches; bound: ``--rss-bound-mib``, 64 MiB by default).
Each target runs in its own worker process (``--jobs`` at a time), so one target's
memory cannot hide another's. Crash inputs are saved under ``--out`` (each becomes a
regression file under tests/fuzz_targets/regressions/<target>/). Exits non-zero on
any crash. Run it under ``nice``: it keeps ``--jobs`` cores busy.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tests.fuzz_targets import all_targets
from tests.support.fuzzer import DEFAULT_DEADLINE_S, RunReport, fuzz


@dataclass(frozen=True)
class Figures:
    target: str
    cases: int
    rate: float
    crashes: list[str]
    rss_growth_mib: float


def run_one(name: str, cases: int, out: Path, deadline_s: float, rss_bound: int,
            seed: int) -> Figures:
    target = next(t for t in all_targets() if t.name == name)

    def progress(report: RunReport) -> None:
        print(f"  {name}: {report.cases} cases, {report.rate:.0f}/s", file=sys.stderr,
              flush=True)

    report = fuzz(target, cases, out_dir=out, seed=seed, deadline_s=deadline_s,
                  rss_bound=rss_bound, progress=progress)
    crashes = [f"{c.kind} at case {c.index}: {c.path}" for c in report.crashes]
    return Figures(name, report.cases, report.rate, crashes, report.rss_growth / (1 << 20))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases per target")
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once")
    parser.add_argument("--only", nargs="*", default=None, help="target names (default: all)")
    parser.add_argument("--out", type=Path, default=Path("fuzz-crashes"),
                        help="where crash inputs are saved")
    parser.add_argument("--deadline-s", type=float, default=DEFAULT_DEADLINE_S,
                        help="per-case deadline")
    parser.add_argument("--rss-bound-mib", type=int, default=64,
                        help="allowed peak RSS growth per target")
    parser.add_argument("--seed", type=int, default=0, help="mutation seed")
    args = parser.parse_args(argv)
    names = [t.name for t in all_targets()]
    if args.only:
        unknown = set(args.only) - set(names)
        if unknown:
            parser.error(f"unknown targets {sorted(unknown)}; known: {names}")
        names = [n for n in names if n in args.only]
    started = time.perf_counter()
    results: list[Figures] = []
    # One fresh process per target: one target's memory cannot hide another's.
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), max_tasks_per_child=1) as pool:
        futures = [pool.submit(run_one, name, args.cases, args.out, args.deadline_s,
                               args.rss_bound_mib << 20, args.seed) for name in names]
        for future in as_completed(futures):
            fig = future.result()
            results.append(fig)
            print(f"{fig.target:24} {fig.cases:>8} cases {fig.rate:>8.0f}/s "
                  f"crashes {len(fig.crashes)}  peak RSS +{fig.rss_growth_mib:.1f} MiB",
                  flush=True)
            for line in fig.crashes:
                print(f"    {line}", flush=True)
    print("\n| target | cases | cases/s | crashes | peak RSS growth |\n|---|---|---|---|---|")
    for fig in sorted(results, key=lambda f: f.target):
        print(f"| {fig.target} | {fig.cases} | {fig.rate:.0f} | {len(fig.crashes)} | "
              f"{fig.rss_growth_mib:.1f} MiB |")
    print(f"\n{len(results)} targets in {time.perf_counter() - started:.0f} s; bound "
          f"{args.rss_bound_mib} MiB RSS growth, {args.deadline_s} s per case")
    return 1 if any(f.crashes for f in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
