"""How much of a small data change's move is the trainer's own draw.

    python benchmarks/training_noise.py             # the first of the 8 held-out groups
    python benchmarks/training_noise.py --group 3 --jobs 2

Trains the shipped recipe's held-out model for one group of sources several times,
each time with one difference — one initial weight moved by one ulp, one training line
duplicated, another seed — once with the shipped trainer (one generator for all draws)
and once with draws keyed by the row (``MixConfig.keyed_draws``,
``TrainConfig.keyed_draws``: nanomodel.keyed_draws), and prints the share of the
group's held-out lines whose flag (anomaly > 0.5) differs from the unchanged model's,
the correlation of the scores, and each model's false alarms and alerts found.
docs/model.md, "How chaotic is training", holds a run's figures. About 25 minutes of
CPU (8 models) on the 2-core machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nanomodel import train as train_module  # noqa: E402
from nanomodel.blas_pin import reexec_pinned  # noqa: E402
from nanomodel.build_default import real_training_lines, recipe  # noqa: E402
from nanomodel.features import Featurizer, default_spec  # noqa: E402
from nanomodel.network import FloatParams, init_params  # noqa: E402
from nanomodel.realeval import score_heldout, source_folds  # noqa: E402
from nanomodel.realtrain import mixed_trainer  # noqa: E402

DIFFERENCES = ("none", "ulp", "duplicate", "seed")


def _nudged_init(*args: object, **kwargs: object) -> FloatParams:
    """The trainer's initial weights with the first layer's first one moved by one ulp."""
    p = init_params(*args, **kwargs)  # type: ignore[arg-type]
    p.w1[0, 0] = np.nextafter(p.w1[0, 0], np.float32(1))
    return p


def scores(job: tuple[int, bool, str]) -> np.ndarray:
    """The held-out group's anomaly scores from a model trained with ``difference``."""
    group, keyed, difference = job
    mix, cfg, _ = recipe(quiet=True)
    mix, cfg = replace(mix, keyed_draws=keyed), replace(cfg, keyed_draws=keyed)
    lines = real_training_lines(own_draws=keyed)
    held = source_folds([s for _, _, s in lines], 8)[group]
    if difference == "duplicate":
        lines = lines + [next(row for row in lines if row[2] not in held)]
    elif difference == "seed":
        mix = replace(mix, seed=mix.seed + 10)
    # The nudge is undone after: pool workers run the next job in the same process.
    train_module.init_params = _nudged_init if difference == "ulp" else init_params
    try:
        return score_heldout(lines, mixed_trainer(Featurizer(default_spec()), mix, cfg),
                             held)
    finally:
        train_module.init_params = init_params


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, default=0, help="which of the 8 groups (0-7)")
    parser.add_argument("--jobs", type=int, default=2, help="models trained at once")
    args = parser.parse_args(argv)
    if not 0 <= args.group < 8:
        parser.error("--group is one of 0..7")
    jobs = [(args.group, keyed, d) for keyed in (False, True) for d in DIFFERENCES]
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("fork")) \
            as pool:
        results = dict(zip(jobs, pool.map(scores, jobs), strict=True))
    print("| difference | trainer | flags differing | score correlation | "
          "false alarms | alerts found |")
    print("|---|---|---|---|---|---|")
    for keyed in (False, True):
        lines = real_training_lines(own_draws=keyed)
        held = set(source_folds([s for _, _, s in lines], 8)[args.group])
        alert = np.array([label != "normal" for _, label, s in lines if s in held])
        base = results[(args.group, keyed, "none")]
        for d in DIFFERENCES:
            s = results[(args.group, keyed, d)]
            print(f"| {d} | {'keyed' if keyed else 'one stream'} | "
                  f"{((s > 0.5) != (base > 0.5)).mean():.1%} | "
                  f"{np.corrcoef(s, base)[0, 1]:.3f} | {int((s[~alert] > 0.5).sum())} | "
                  f"{int((s[alert] > 0.5).sum())} of {int(alert.sum())} |")
    return 0


if __name__ == "__main__":
    reexec_pinned()
    raise SystemExit(main())
