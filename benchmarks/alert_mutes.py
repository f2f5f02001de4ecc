"""Alert mutes on a device's own stream: how quiet it gets, and what it costs.

    python benchmarks/alert_mutes.py                 # held-out models, 8 source groups (~3-5 min)
    python benchmarks/alert_mutes.py --judged 0.1 0.25 0.5
    python benchmarks/alert_mutes.py --samples       # the shipped bundle on the public samples

The captured lines are what real daemons printed here, in order, with their real
repetition. Each source's lines are scored by a model trained without that source (8
groups, as ``model_real.py --folds 8``): software the model has never seen. The first
``--judged`` share of each source's stream is judged by an operator, who mutes the shape
of every false alarm (``contract.mutes.message_shape``, as the fleet server does); the rest
is scored with and without the mutes (``nanomodel.mute_eval.replay_mutes``), for the
model's flag (anomaly > 0.5), the alerts the agent sends by default, and the grep with the
same mutes (a technician's ``grep -v`` of the same lines). ``--samples``: the public
samples are distinct lines from many systems, where shapes rarely repeat — there mutes do
little, which is the point of printing it.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from nanomodel.blas_pin import reexec_pinned
from nanomodel.build_default import real_training_lines, recipe
from nanomodel.features import Featurizer, default_spec
from nanomodel.mute_eval import MuteFigures, replay_mutes
from nanomodel.realeval import KEYWORD_RULE, keyword_flags, sent_alerts, source_folds
from nanomodel.realtext import LABELS, CapturedLine, load_captured, load_samples
from nanomodel.realtrain import mixed_trainer

_CAPTURED: list[CapturedLine] = []


def _held_group(group: list[str]) -> tuple[list[int], np.ndarray]:
    """Probabilities of the captured lines of ``group``'s sources, from a model trained
    on every real line of the other sources (a forked worker)."""
    held = set(group)
    mix, cfg, _ = recipe(quiet=True)
    train = [row for row in real_training_lines() if row[2] not in held]
    score = mixed_trainer(Featurizer(default_spec()), mix, cfg, probs=True)(train)
    idx = [i for i, c in enumerate(_CAPTURED) if c.source in held]
    if not idx:
        return idx, np.zeros((0, len(LABELS)), dtype=np.float32)
    return idx, np.asarray(score([_CAPTURED[i].text for i in idx]), dtype=np.float32)


def heldout_probs(folds: int, jobs: int) -> np.ndarray:
    _CAPTURED[:] = load_captured()
    groups = source_folds([s for _, _, s in real_training_lines()], folds)
    probs = np.full((len(_CAPTURED), len(LABELS)), np.nan, dtype=np.float32)
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        for idx, p in pool.map(_held_group, groups):
            probs[idx] = p
    return probs


def bundle_probs(lines: list[CapturedLine]) -> np.ndarray:
    from agent.model import LoadedModel
    from nanomodel import default_bundle_path

    model = LoadedModel.load(default_bundle_path())
    probs, _ = model.classify([c.text for c in lines])
    return np.asarray(probs, dtype=np.float32)


def _row(name: str, f: MuteFigures) -> str:
    return (f"| {name} | {f.mutes} from {f.judged_false_alarms} | "
            f"{100 * f.false_alarm_rate_before:.2f} % → "
            f"**{100 * f.false_alarm_rate_after:.2f} %** | "
            f"{100 * f.recall_before:.1f} % → {100 * f.recall_after:.1f} % |")


def report(lines: list[CapturedLine], probs: np.ndarray, judged: list[float]) -> None:
    texts = [c.text for c in lines]
    is_alert = [c.label != "normal" for c in lines]
    sources = [c.source for c in lines]
    anomaly = 1.0 - probs[:, LABELS.index("normal")]
    alerters = {
        "model, flag (anomaly > 0.5)": anomaly > 0.5,
        "model, alerts sent (default [alerts])":
            sent_alerts(LABELS, "normal", probs, anomaly) > 0.5,
        "grep (with the same mutes: grep -v)": keyword_flags(texts, KEYWORD_RULE),
    }
    print(f"{len(lines)} lines, {sum(is_alert)} alerts, {len(set(sources))} sources")
    for share in judged:
        print(f"\njudged: the first {100 * share:.0f} % of each source's stream\n")
        print("| alerter | mutes from false alarms judged | false alarms after, before → with mutes"
              " | alerts found, before → with mutes |")
        print("|---|---|---|---|")
        for name, flags in alerters.items():
            print(_row(name, replay_mutes(texts, is_alert, sources, list(flags), share)["overall"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--judged", type=float, nargs="+", default=[0.1, 0.25, 0.5],
                    help="shares of each source's stream judged before measuring")
    ap.add_argument("--folds", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--samples", action="store_true",
                    help="the shipped bundle on the public samples instead")
    args = ap.parse_args(argv)
    if any(not 0 < s < 1 for s in args.judged):
        ap.error("--judged takes shares between 0 and 1, e.g. 0.25")
    if args.samples:
        lines = load_samples()
        report(lines, bundle_probs(lines), args.judged)
    else:
        reexec_pinned()
        report(load_captured(), heldout_probs(args.folds, args.jobs), args.judged)
    return 0


if __name__ == "__main__":
    sys.exit(main())
