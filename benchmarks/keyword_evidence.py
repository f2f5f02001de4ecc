"""The keywords as evidence (agent.keyword_evidence) with the agent's defaults, against the
words alone, on every evaluation set a technician meets: what turning
``keyword_evidence = true`` on buys and costs.

    python benchmarks/keyword_evidence.py                    # the shipped bundle's sets
    python benchmarks/keyword_evidence.py --scores HELD.npy  # and software never seen

``--scores``: held-out anomalies of every real line, as ``benchmarks/model_real.py --folds 8
--save-scores HELD.npy`` saves them (the shipped recipe's 8 groups; ~9 minutes on 2 cores) —
the situation the switch is for: software the model has never read. Sets scored by the
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

from agent.keyword_evidence import KeywordEvidenceConfig, apply_keyword_evidence
from agent.model import LoadedModel
from nanomodel.build_default import default_bundle_path, real_training_lines
from nanomodel.realeval import (
    OVERALL,
    AlertFigures,
    RealLine,
    beats_keyword,
    recall_at_false_alarms,
    report,
    sent_alerts,
)
from nanomodel.reallevels import priority


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
    probs = np.stack([1.0 - anomaly, anomaly], axis=1)  # normal, "an alert"
    _, weighed = apply_keyword_evidence(probs, anomaly, [t for t, _, _ in lines],
                                        [True] * len(lines), cfg, 0)
    grep = report(lines, anomaly)[OVERALL]["keyword"]
    print(f"software never seen ({len(lines)} held-out lines; the grep: {_fig(grep)})\n")
    print("| scored | flag: F1 / false alarms / recall | sources won | anomaly >= 0.95 | "
          "recall at 2 / 5 % false alarms |")
    print("|---|---|---|---|---|")
    for name, a in (("the words alone", anomaly), ("with keyword evidence", weighed)):
        at = recall_at_false_alarms(lines, a, (0.02, 0.05))
        print(f"| {name} | {_cells(lines, a, (a >= 0.95).astype(np.float32))} | "
              f"{100 * at[0.02]:.1f} / {100 * at[0.05]:.1f} |")
    print()


def _shipped(bundle: Path, cfg: KeywordEvidenceConfig) -> None:
    from nanomodel.realistic import CHECK_LINES, FRESH_CHECK_LINES
    from nanomodel.realtext import load_journal, load_samples

    model = LoadedModel.load(bundle)
    normal = model.manifest.labels.index(model.manifest.normal_label)
    journal = load_journal()
    sets: list[tuple[str, list[RealLine], list[bool]]] = [
        ("public samples", [c.row for c in load_samples()], []),
        # Journal lines bring their level: the agent leaves them to it.
        ("journal (lines with a level: left to it)", [c.row for c in journal],
         [priority(c.level) is None for c in journal]),
        ("hand-written check lines", [(t, lab, "check") for t, lab in CHECK_LINES], []),
        ("fresh lines", [(t, lab, "fresh") for t, lab in FRESH_CHECK_LINES], [])]
    print(f"{bundle.name}, as the agent runs it\n")
    print("| set | scored | flag: F1 / false alarms / recall | sources won | sent |")
    print("|---|---|---|---|---|")
    for name, lines, weigh in sets:
        texts = [t for t, _, _ in lines]
        probs, anomaly = (np.asarray(a) for a in model.classify(texts))
        p2, a2 = apply_keyword_evidence(probs, anomaly, texts, weigh or [True] * len(lines),
                                        cfg, normal)
        for how, (p, a) in (("words alone", (probs, anomaly)), ("with keywords", (p2, a2))):
            sent = sent_alerts(model.labels, model.manifest.normal_label, p, a)
            print(f"| {name} | {how} | {_cells(lines, a, sent)} |")


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
