"""The level a line's text states (agent.text_levels, a source's ``text_levels = true``)
weighed in as a journal line's level, against the words alone and the keywords, on the
lines whose text states one.

    python benchmarks/text_levels.py --scores HELD.npy

``--scores``: held-out anomalies of every real line, as ``benchmarks/model_real.py --folds 8
--save-scores HELD.npy`` saves them (~9 minutes on 2 cores): software the model has never
read, the situation the switch is for. Also the shipped bundle on the public samples' lines
that state a level (other people's logs, mostly of software the model has read).

Figures are alert F1 / false alarms / recall at the 0.5 flag and the ranking (recall at 2 %
and 5 % false alarms): ratios of counts, the same on any machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from agent.keyword_evidence import KeywordEvidenceConfig, keyword_matches
from agent.level_evidence import LevelEvidenceConfig, shift_anomaly
from agent.model import LoadedModel
from agent.text_levels import level_in_text
from nanomodel.build_default import default_bundle_path, real_training_lines
from nanomodel.realeval import OVERALL, RealLine, recall_at_false_alarms, report
from nanomodel.realtext import load_samples


def _row(name: str, lines: list[RealLine], scores: np.ndarray) -> str:
    o = report(lines, scores)[OVERALL]["model"]
    at = recall_at_false_alarms(lines, scores, (0.02, 0.05))
    return (f"| {name} | {o.f1:.3f} / {100 * o.false_alarm_rate:.1f} % / {100 * o.recall:.1f} %"
            f" | {100 * at[0.02]:.1f} / {100 * at[0.05]:.1f} |")


def compare(lines: list[RealLine], anomaly: np.ndarray, title: str) -> None:
    """The table for the lines of ``lines`` whose text states a level."""
    stated = [level_in_text(t) for t, _, _ in lines]
    rows = [i for i, lv in enumerate(stated) if lv is not None]
    sub = [lines[i] for i in rows]
    words = anomaly[rows].astype(np.float64)
    by_level = LevelEvidenceConfig().offsets.by_priority()
    with_level = shift_anomaly(words, np.array([by_level[lv] for lv in stated
                                                if lv is not None]))
    cfg = KeywordEvidenceConfig()
    kw = np.where(keyword_matches([t for t, _, _ in sub], cfg), cfg.matched, cfg.unmatched)
    grep = report(sub, words)[OVERALL]["keyword"]
    print(f"\n{title}: {len(sub)} of {len(lines)} lines state a level\n")
    print("| | alert F1 / false alarms / recall | recall at 2 % / 5 % false alarms |")
    print("|---|---|---|")
    print(_row("words alone", sub, words))
    print(_row("with the stated level", sub, with_level))
    print(_row("with the keywords instead", sub, shift_anomaly(words, kw)))
    print(_row("level and keywords", sub, shift_anomaly(with_level, kw)))
    print(f"| the grep | {grep.f1:.3f} / {100 * grep.false_alarm_rate:.1f} % / "
          f"{100 * grep.recall:.1f} % | - |")
    before, after = report(sub, words), report(sub, with_level)
    for source in sorted(k for k in before if k != OVERALL):
        n = sum(1 for _, _, s in sub if s == source)
        if n >= 50:
            print(f"  {source:12s} {n:5d} lines: {before[source]['model'].f1:.3f} -> "
                  f"{after[source]['model'].f1:.3f} (the grep {before[source]['keyword'].f1:.3f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", type=Path, required=True, metavar="HELD.npy",
                        help="held-out anomalies (model_real.py --folds 8 --save-scores)")
    args = parser.parse_args(argv)
    lines = real_training_lines()
    held = np.load(args.scores)
    if len(held) != len(lines):
        parser.error(f"{args.scores}: {len(held)} scores for {len(lines)} real lines (saved "
                     "from another recipe or data?)")
    compare(lines, held, "held out (software the model has never read)")
    samples = [c.row for c in load_samples()]
    model = LoadedModel.load(default_bundle_path())
    try:
        _, anomaly = model.classify([t for t, _, _ in samples])
    finally:
        model.close()
    compare(samples, np.asarray(anomaly), "public samples, the shipped bundle")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
