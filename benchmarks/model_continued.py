"""The captured_next lines taught by continuing the recipe's model, measured in pairs.

    python benchmarks/model_continued.py --jobs 2      # software never seen (8 groups)
    python benchmarks/model_continued.py --known       # the next lines' daemons, new lines
    python benchmarks/model_continued.py --known --retrain-seed 10  # ... a retrain instead

Each model is trained twice from one start: the shipped recipe without the lines of
``captured_next/`` (the base: exactly the model the recipe trains), then that model
continued for a few epochs on all the lines (``nanomodel.continued``). Both score the
same lines, so what differs is the continued stage alone, not a new draw of the
trainer (docs/model.md, "Continued training").

Default: every source's lines scored by a base and a continued model trained without
that source (the 8 groups of ``model_real.py --folds 8``; the base column reproduces the
recorded held-out figures). ``--known``: the base on every line, continued with half of
the next lines (split by distinct text), scored on the other half — what a device running
those daemons meets — and both models on the public sample, the journal and the
hand-written lines. ``--retrain-seed N`` (with ``--known``): instead of a continued stage,
the recipe retrained from scratch on mix seed N without and with that half — the paired
comparison a retrain allows, one seed at a time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.model_real import _parallel  # noqa: E402
from nanomodel.blas_pin import reexec_pinned  # noqa: E402
from nanomodel.build_default import real_training_lines, recipe  # noqa: E402
from nanomodel.continued import ContinueConfig, base_and_continued, paired_trainer  # noqa: E402
from nanomodel.features import Featurizer, default_spec  # noqa: E402
from nanomodel.network import ShippedModel, reference_forward  # noqa: E402
from nanomodel.realeval import (  # noqa: E402
    OVERALL,
    AlertFigures,
    RealLine,
    recall_at_false_alarms,
    report,
    split_known,
)
from nanomodel.realtext import load_captured_next  # noqa: E402
from nanomodel.realtrain import train_distilled  # noqa: E402

NAMES: tuple[str, ...] = ("base", "continued", "control")
RETRAIN_NAMES: tuple[str, ...] = ("without", "with")


def _figures(f: AlertFigures) -> str:
    return f"{f.f1:.3f} / {100 * f.false_alarm_rate:.1f} % / {100 * f.recall:.1f} %"


def _compare(title: str, lines: Sequence[RealLine], scores: np.ndarray,
             per_source: bool = False, names: Sequence[str] = NAMES) -> None:
    """Both columns' figures on ``lines`` (F1 / false alarms / recall, ranking)."""
    print(f"\n{title}: {len(lines)} lines, {sum(lab != 'normal' for _, lab, _ in lines)} alerts")
    reps = [report(lines, scores[:, i]) for i in range(scores.shape[1])]
    for name, rep, i in zip(names, reps, range(len(reps)), strict=False):
        at = recall_at_false_alarms(lines, scores[:, i], (0.02, 0.05))
        won = sum(r["model"].f1 > r["keyword"].f1 for s, r in rep.items() if s != OVERALL)
        print(f"  {name:9} {_figures(rep[OVERALL]['model'])}, {won} of {len(rep) - 1} "
              f"sources won, recall at 2 / 5 % false alarms {100 * at[0.02]:.1f} / "
              f"{100 * at[0.05]:.1f}")
    print(f"  grep      {_figures(reps[0][OVERALL]['keyword'])}")
    flags = scores > 0.5
    print("  flags that differ from the base's: " + ", ".join(
        f"{names[i]} {int((flags[:, 0] != flags[:, i]).sum())}" for i in range(1, len(reps))))
    if per_source:
        for source in sorted(s for s in reps[0] if s != OVERALL):
            each = [rep[source]["model"] for rep in reps]
            if len({(f.false_alarm_rate, f.recall) for f in each}) > 1:
                print(f"    {source:18} " + " -> ".join(_figures(f) for f in each))


def _score(models: Sequence[ShippedModel], featurizer: Featurizer,
           texts: list[str]) -> np.ndarray:
    x = featurizer.transform(texts)
    return np.stack([reference_forward(m, x)[1] for m in models], axis=1)


def _recorded_and_next() -> tuple[list[RealLine], list[RealLine]]:
    """The recorded lines (the shipped recipe's, drawn alike) and captured_next's, rendered
    once: ``real_lines(with_next=True)`` appends the next lines after the others."""
    lines = real_training_lines(with_next=True)
    cut = len(lines) - len(load_captured_next())
    return lines[:cut], lines[cut:]


def _heldout(jobs: int, cont: ContinueConfig, control: bool) -> None:
    mix, cfg, _ = recipe(quiet=True)
    base, added = _recorded_and_next()
    lines = base + added
    trainer = paired_trainer(Featurizer(default_spec()), mix, cfg, added, cont,
                             control=control)
    start = time.monotonic()

    def progress(i: int, n: int, held: list[str]) -> None:
        print(f"[{time.monotonic() - start:6.0f}s] models {i + 1}/{n}, holding out "
              f"{', '.join(held)}", file=sys.stderr, flush=True)

    scores = _parallel(lines, trainer, 8, jobs, progress, width=3 if control else 2)
    print(f"software never seen (8 groups), {cont}, {time.monotonic() - start:.0f} s")
    _compare("the recorded lines (base: the recorded figures)", base, scores[:len(base)],
             per_source=True)
    _compare("captured_next lines (their sources held out)", added, scores[len(base):],
             per_source=True)


def _known(cont: ContinueConfig, control: bool, retrain_seed: int | None) -> None:
    from nanomodel.realistic import CHECK_LINES, FRESH_CHECK_LINES
    from nanomodel.realtext import load_journal, load_samples

    mix, cfg, _ = recipe(quiet=True)
    base, added = _recorded_and_next()
    train_next, test = split_known([], added)
    featurizer = Featurizer(default_spec())
    start = time.monotonic()
    if retrain_seed is None:
        models = base_and_continued(base + train_next, train_next, featurizer, mix, cfg, cont,
                                    control=control)
        how, names = f"continued with {len(train_next)} next lines, {cont}", NAMES
    else:
        mix = replace(mix, seed=retrain_seed)
        models = (train_distilled(base, featurizer, mix, cfg),
                  train_distilled(base + train_next, featurizer, replace(mix, next_lines=True),
                                  cfg))
        how = f"retrained (mix seed {retrain_seed}) with {len(train_next)} next lines"
        names = RETRAIN_NAMES
    print(f"known daemons: base on every recorded line, {how}, "
          f"{time.monotonic() - start:.0f} s")
    _compare("the other next lines (new lines of known daemons)", test,
             _score(models, featurizer, [t for t, _, _ in test]), per_source=True, names=names)
    for title, rows in (("public sample", [c.row for c in load_samples()]),
                        ("device journal (words)", [c.row for c in load_journal()]),
                        ("hand-written check lines", [(t, lab, "hand") for t, lab in
                                                      [*CHECK_LINES, *FRESH_CHECK_LINES]])):
        _compare(title, rows, _score(models, featurizer, [t for t, _, _ in rows]), names=names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--known", action="store_true",
                        help="new lines of the next lines' daemons, and the public sample")
    parser.add_argument("--jobs", type=int, default=1, help="held-out models in parallel")
    parser.add_argument("--epochs", type=int, default=ContinueConfig.epochs)
    parser.add_argument("--lr", type=float, default=ContinueConfig.lr)
    parser.add_argument("--head-epochs", type=int, default=None,
                        help="epochs of the head's refit after the stage (default: the recipe's)")
    parser.add_argument("--retrain-seed", type=int, default=None, metavar="N",
                        help="with --known: a from-scratch retrain on mix seed N, without and "
                        "with the lines, instead of a continued stage")
    parser.add_argument("--control", action="store_true",
                        help="also the base continued on its own lines only (a third model)")
    args = parser.parse_args(argv)
    if args.retrain_seed is not None and (not args.known or args.control):
        parser.error("--retrain-seed goes with --known, without --control (no stage to control)")
    cont = ContinueConfig(epochs=args.epochs, lr=args.lr, head_epochs=args.head_epochs)
    if args.known:
        _known(cont, args.control, args.retrain_seed)
    else:
        _heldout(max(args.jobs, 1), cont, args.control)
    return 0


if __name__ == "__main__":
    reexec_pinned()
    sys.exit(main())
