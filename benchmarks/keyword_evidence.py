"""The keywords as evidence (agent.keyword_evidence) against the words alone, on every
evaluation set a technician meets: the agent's default (lines naming a program the model
was not trained on) and every line (a source with ``keyword_evidence = true``).

    python benchmarks/keyword_evidence.py                    # the shipped bundle's sets
    python benchmarks/keyword_evidence.py --scores HELD.npy  # and software never seen

``--scores``: held-out anomalies of every real line, as ``benchmarks/model_real.py --folds 8
--save-scores HELD.npy`` saves them (the shipped recipe's 8 groups; ~9 minutes on 2 cores) —
the situation the keywords are for: software the model has never read (each group's
"known programs" are those of the other groups' sources, as the model that scored it was
trained on them). Sets scored by the
shipped bundle (the public samples: other people's logs, mostly of software the model
has read; a booted systemd's journal, whose lines bring their level and are left to it;
the hand-written lines) show what it costs where the model knows the software.

Figures are alert F1 / false alarms / recall at the 0.5 flag, and the alerts the agent
sends ([alerts] defaults; held out: anomaly >= 0.95 alone, the saved scores carry no
label probabilities). Ratios of counts, not timings: the same on any machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from agent.keyword_evidence import KeywordEvidenceConfig, apply_keyword_evidence, weigh_keywords
from agent.model import LoadedModel
from nanomodel.build_default import default_bundle_path, real_training_lines
from nanomodel.known_programs import trained_programs
from nanomodel.realeval import (
    OVERALL,
    AlertFigures,
    RealLine,
    beats_keyword,
    recall_at_false_alarms,
    report,
    sent_alerts,
    source_folds,
)
from nanomodel.reallevels import priority
from nanomodel.release_gates import DEFAULT_GATES, check, figures_of, flips


def _cells(lines: list[RealLine], flag: np.ndarray, sent: np.ndarray) -> str:
    rep = report(lines, flag)
    o, s = rep[OVERALL]["model"], report(lines, sent)[OVERALL]["model"]
    won = sum(beats_keyword(f) for k, f in rep.items() if k != OVERALL)
    return (f"{_fig(o)} | {won} of {len(rep) - 1} | {_fig(s)}")


def _fig(f: AlertFigures) -> str:
    return f"{f.f1:.3f} / {100 * f.false_alarm_rate:.1f} % / {100 * f.recall:.1f} %"


def _heldout(path: Path, cfg: KeywordEvidenceConfig) -> None:
    lines = real_training_lines()
    anomaly = np.load(path)
    if len(anomaly) != len(lines):
        raise SystemExit(f"{path}: {len(anomaly)} scores for {len(lines)} real lines (saved "
                         "for another recipe or data?)")
    texts, sources = [t for t, _, _ in lines], [s for _, _, s in lines]
    probs = np.stack([1.0 - anomaly, anomaly], axis=1)  # normal, "an alert"
    by_default = anomaly.copy()
    for group in source_folds(sources, 8):
        held = np.isin(sources, group)
        fold_cfg = cfg.model_copy(update={"known_programs": trained_programs(group)})
        _, weighed, _ = weigh_keywords(probs, anomaly, texts, None, [None] * len(texts),
                                       fold_cfg, 0)
        by_default[held] = weighed[held]
    _, every = apply_keyword_evidence(probs, anomaly, texts, [True] * len(lines), cfg, 0)
    grep = report(lines, anomaly)[OVERALL]["keyword"]
    print(f"software never seen ({len(lines)} held-out lines; the grep: {_fig(grep)})\n")
    print("| scored | flag: F1 / false alarms / recall | sources won | anomaly >= 0.95 | "
          "recall at 2 / 5 % false alarms |")
    print("|---|---|---|---|---|")
    for name, a in (("the words alone", anomaly),
                    ("keywords on unknown programs (default)", by_default),
                    ("keywords on every line", every)):
        at = recall_at_false_alarms(lines, a, (0.02, 0.05))
        print(f"| {name} | {_cells(lines, a, (a >= 0.95).astype(np.float32))} | "
              f"{100 * at[0.02]:.1f} / {100 * at[0.05]:.1f} |")
    print()


# The sets' names in the release gates (nanomodel.release_gates.DEFAULT_GATES).
GATE_SETS = {"public samples": "public_sample",
             "journal (lines with a level: left to it)": "journal",
             "hand-written check lines": "check_lines", "fresh lines": "fresh_lines"}


def _shipped(bundle: Path, cfg: KeywordEvidenceConfig) -> None:
    from nanomodel.realistic import CHECK_LINES, FRESH_CHECK_LINES
    from nanomodel.realtext import load_journal, load_samples

    model = LoadedModel.load(bundle)
    normal = model.manifest.labels.index(model.manifest.normal_label)
    journal = load_journal()
    # Journal lines bring their level: the agent leaves them to it. The others bring none.
    sets: list[tuple[str, list[RealLine], list[int | None] | None]] = [
        ("public samples", [c.row for c in load_samples()], None),
        ("journal (lines with a level: left to it)", [c.row for c in journal],
         [priority(c.level) for c in journal]),
        ("hand-written check lines", [(t, lab, "check") for t, lab in CHECK_LINES], None),
        ("fresh lines", [(t, lab, "fresh") for t, lab in FRESH_CHECK_LINES], None)]
    print(f"{bundle.name}, as the agent runs it\n")
    words: dict[str, dict[str, AlertFigures]] = {}
    default: dict[str, dict[str, AlertFigures]] = {}
    moves = {}
    print("| set | scored | flag: F1 / false alarms / recall | sources won | sent |")
    print("|---|---|---|---|---|")
    for name, lines, line_levels in sets:
        texts = [t for t, _, _ in lines]
        probs, anomaly = (np.asarray(a) for a in model.classify(texts))
        levels = line_levels or [None] * len(lines)
        p1, a1, _ = weigh_keywords(probs, anomaly, texts, None, levels, cfg, normal)
        p2, a2, _ = weigh_keywords(probs, anomaly, texts, [True] * len(lines), levels, cfg,
                                   normal)
        key = GATE_SETS[name]
        words[key], default[key] = figures_of(lines, anomaly), figures_of(lines, a1)
        moves[key] = flips(lines, anomaly, a1)
        for how, (p, a) in (("words alone", (probs, anomaly)),
                            ("unknown programs (default)", (p1, a1)),
                            ("every line", (p2, a2))):
            sent = sent_alerts(model.labels, model.manifest.normal_label, p, a)
            print(f"| {name} | {how} | {_cells(lines, a, sent)} |")
    print("\nthe default against the words alone, held to the release gates "
          "(nanomodel.release_gates):")
    for r in check(DEFAULT_GATES, words, default, moves):
        print(f"  {'pass' if r.passed else 'FAIL'}  {r.gate.name}: {100 * r.shipped:.1f} % -> "
              f"{100 * r.candidate:.1f} % ({r.limit()})")


def _cost(bundle: Path, cfg: KeywordEvidenceConfig) -> None:
    """What the default adds per line to the model's own work, in batches of 64 tagged
    lines of programs it has not read (the dearest case: every line is weighed)."""
    import time

    model = LoadedModel.load(bundle)
    normal = model.manifest.labels.index(model.manifest.normal_label)
    texts = [f"Mar  4 11:00:{i % 60:02d} hmi-2 pumpctl[{300 + i}]: cycle {i} took {i % 97} ms, "
             f"valve {i % 7} {'error' if i % 5 == 0 else 'ok'}" for i in range(6400)]
    batches = [texts[i:i + 64] for i in range(0, len(texts), 64)]
    scored = [model.classify(b) for b in batches]  # warm up, and the inputs below
    t0 = time.perf_counter()
    for b in batches:
        model.classify(b)
    classify_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for b, (p, a) in zip(batches, scored, strict=True):
        weigh_keywords(np.asarray(p), np.asarray(a), b, None, [None] * len(b), cfg, normal)
    weigh_s = time.perf_counter() - t0
    print(f"\ncost: the default's weighing adds {100 * weigh_s / classify_s:.1f} % to the "
          f"model's classify time on lines that all name an unknown program "
          f"({1e6 * weigh_s / len(texts):.1f} us against {1e6 * classify_s / len(texts):.1f} "
          "us a line on this machine)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", type=Path, help="held-out anomalies of the real lines "
                        "(benchmarks/model_real.py --folds 8 --save-scores)")
    parser.add_argument("--bundle", type=Path, default=default_bundle_path(),
                        help="the bundle for the other sets (default: the shipped one)")
    args = parser.parse_args(argv)
    cfg = KeywordEvidenceConfig()
    print(f"keyword evidence, the agent's defaults: words {cfg.words}, "
          f"{cfg.matched:+.1f} / {cfg.unmatched:+.1f} log-odds\n")
    if args.scores is not None:
        _heldout(args.scores, cfg)
    _shipped(args.bundle, cfg)
    _cost(args.bundle, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
