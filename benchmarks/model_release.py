"""May a retrained bundle replace the shipped one? Its release gates, side by side.

    python benchmarks/model_release.py CANDIDATE.nfb [--shipped BUNDLE] [--lines 12]

Both bundles run through the agent's own runtime on the evaluation sets no model trains
on — the public log samples (fail2ban's test logs), a booted systemd's journal, the
hand-written check and fresh lines — and on the December 7 captures (``captured_next/``:
trained on since rule 6, so in-sample for both bundles now, said so). It prints each
set's figures for both, the gates of :data:`nanomodel.release_gates.DEFAULT_GATES` with
their verdicts, and the lines whose flag the candidate changes (a moved figure is a few
lines; read them before deciding), with the exact sign test's p on each set's moves (how
likely as many more false alarms, or fewer alerts found, are from a draw no worse).
Exit status 0 when every gate passes, 1 when one fails. The gates are written before a
candidate is measured (docs/model.md, "A retrain held to written gates"); this tool only
applies them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agent.model import LoadedModel  # noqa: E402
from nanomodel import default_bundle_path  # noqa: E402
from nanomodel.realeval import OVERALL, AlertFigures, RealLine  # noqa: E402
from nanomodel.release_gates import DEFAULT_GATES, check, figures_of, flips  # noqa: E402


def evaluation_sets() -> dict[str, list[RealLine]]:
    """The sets a release is held to, as (text, label, source) rows."""
    from nanomodel.realistic import CHECK_LINES, FRESH_CHECK_LINES
    from nanomodel.realtext import load_captured_next, load_journal, load_samples

    return {
        "public_sample": [c.row for c in load_samples()],
        "journal": [c.row for c in load_journal()],
        "check_lines": [(t, lab, "hand") for t, lab in CHECK_LINES],
        "fresh_lines": [(t, lab, "hand") for t, lab in FRESH_CHECK_LINES],
        "captured_next": [c.row for c in load_captured_next()],
    }


def _cell(f: AlertFigures) -> str:
    return f"{f.f1:.3f} / {100 * f.false_alarm_rate:.1f} % / {100 * f.recall:.1f} %"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("candidate", type=Path, help="the retrained bundle (.nfb)")
    parser.add_argument("--shipped", type=Path, default=default_bundle_path(),
                        help="the bundle it would replace (default: the shipped one)")
    parser.add_argument("--lines", type=int, default=12,
                        help="at most this many changed lines listed per kind and set")
    args = parser.parse_args(argv)
    models = {"shipped": LoadedModel.load(args.shipped),
              "candidate": LoadedModel.load(args.candidate)}
    sets = evaluation_sets()
    scores = {who: {name: np.asarray(m.classify([t for t, _, _ in lines])[1])
                    for name, lines in sets.items()} for who, m in models.items()}
    figs = {who: {name: figures_of(sets[name], s) for name, s in per.items()}
            for who, per in scores.items()}

    print(f"{args.candidate.name} against {args.shipped.name} (flag: anomaly > 0.5; "
          "F1 / false alarms / recall)\n")
    print("| set | lines | alerts | shipped | candidate | healthy flagged: new / gone (p) "
          "| alerts found: new / lost (p) |")
    print("|---|---|---|---|---|---|---|")
    moved = {name: flips(sets[name], scores["shipped"][name], scores["candidate"][name])
             for name in sets}
    for name in sets:
        s, c = figs["shipped"][name][OVERALL], figs["candidate"][name][OVERALL]
        note = " (in-sample if trained on captured_next)" if name == "captured_next" else ""
        f = moved[name]
        print(f"| {name}{note} | {s.lines} | {s.alerts} | {_cell(s)} | {_cell(c)} | "
              f"{len(f.newly_flagged_healthy)} / {len(f.no_longer_flagged_healthy)} "
              f"({f.false_alarm_p():.2g}) | {len(f.newly_found_alerts)} / "
              f"{len(f.newly_missed_alerts)} ({f.recall_p():.2g}) |")

    results = check(DEFAULT_GATES, figs["shipped"], figs["candidate"], moved)
    print("\n| gate | shipped | candidate | condition | verdict |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r.gate.name} | {100 * r.shipped:.1f} % | {100 * r.candidate:.1f} % | "
              f"{r.limit()} | {'pass' if r.passed else 'FAIL'} |")

    for name, lines in sets.items():
        f = moved[name]
        for kind, idx in (("healthy lines newly flagged", f.newly_flagged_healthy),
                          ("healthy lines no longer flagged", f.no_longer_flagged_healthy),
                          ("alerts newly missed", f.newly_missed_alerts),
                          ("alerts newly found", f.newly_found_alerts)):
            if not idx:
                continue
            print(f"\n{name}: {kind} ({len(idx)})")
            for i in idx[: args.lines]:
                text, label, source = lines[i]
                print(f"  {scores['shipped'][name][i]:.2f} -> "
                      f"{scores['candidate'][name][i]:.2f} [{source}, {label}] {text[:140]}")
    failed = [r.gate.name for r in results if not r.passed]
    print(f"\n{len(results) - len(failed)} of {len(results)} gates pass"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
