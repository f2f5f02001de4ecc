"""Release gates: may a retrained bundle replace the shipped one?

A retrain is a new draw of the model: draws of one recipe differ by points of false
alarms on other people's logs (docs/model.md, "How chaotic is training"), so a candidate
is held to conditions written *before* its figures are seen, on the evaluation sets a
technician meets first — the public log samples, a device's own journal, the
hand-written lines — each against the shipped bundle on the same lines (a margin, or
the sign test on the lines whose flag moved) or an absolute limit. This module decides;
``benchmarks/model_release.py`` scores the two bundles and prints the verdict. Pure
functions of their inputs.

Held-out figures (software never seen) are not here: they need the recipe trained once
per group of sources (``benchmarks/model_real.py --folds 8``), and the seed is chosen on
them before a candidate bundle exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nanomodel.realeval import OVERALL, THRESHOLD, AlertFigures, RealLine, report

FIGURES = ("false_alarm_rate", "recall")


@dataclass(frozen=True)
class Gate:
    """One condition on one figure of one evaluation set (or one source of it).

    ``at_most``/``at_least`` are absolute limits; ``worse_by_at_most`` is relative to the
    shipped bundle on the same lines: a rise of the false-alarm rate, or a fall of the
    recall, of at most that much (rates as fractions: 0.01 is one point)."""

    name: str
    evaluation: str  # a key of the figures: "public_sample", "journal", "check_lines", ...
    figure: str  # "false_alarm_rate" or "recall"
    source: str = OVERALL
    at_most: float | None = None
    at_least: float | None = None
    worse_by_at_most: float | None = None
    # fail when the figure is worse *and* the sign test on the set's moved lines finds
    # it unlikely from a draw no worse (p below this); a whole set's figure only
    significance: float | None = None

    def __post_init__(self) -> None:
        if self.figure not in FIGURES:
            raise ValueError(f"gate {self.name}: figure must be one of {FIGURES}")
        limits = (self.at_most, self.at_least, self.worse_by_at_most, self.significance)
        if limits == (None, None, None, None):
            raise ValueError(f"gate {self.name}: give at_most, at_least, worse_by_at_most "
                             "or significance")
        if self.significance is not None and self.source != OVERALL:
            raise ValueError(f"gate {self.name}: the sign test is on a whole set's lines")


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    shipped: float
    candidate: float
    passed: bool

    def limit(self) -> str:
        """The condition as a reader checks it, in percent."""
        g, parts = self.gate, []
        if g.at_most is not None:
            parts.append(f"≤ {100 * g.at_most:.1f} %")
        if g.at_least is not None:
            parts.append(f"≥ {100 * g.at_least:.1f} %")
        if g.worse_by_at_most is not None:
            sign = "+" if g.figure == "false_alarm_rate" else "-"
            parts.append(f"shipped {sign} {100 * g.worse_by_at_most:.1f} points")
        if g.significance is not None:
            parts.append(f"not worse with p < {g.significance:g}")
        return ", ".join(parts)


# The rule written on December 7, 2026 after a draw failed gates of fixed margins on
# moves a redraw makes (docs/model.md, "A retrain held to written gates"): on each set
# a technician meets first, no false alarms added and no alerts lost beyond what a draw
# no worse makes (the sign test), and an SSH server's attacks still found.
DEFAULT_GATES: tuple[Gate, ...] = (
    *(Gate(f"{name}: false alarms", name, "false_alarm_rate", significance=0.05)
      for name in ("public_sample", "journal", "check_lines", "fresh_lines")),
    *(Gate(f"{name}: alerts found", name, "recall", significance=0.05)
      for name in ("public_sample", "journal", "check_lines", "fresh_lines")),
    Gate("openssh in public logs: recall", "public_sample", "recall", source="openssh",
         at_least=0.80),
)

Figures = Mapping[str, Mapping[str, AlertFigures]]  # evaluation -> source -> figures


def figures_of(lines: Sequence[RealLine], anomaly: np.ndarray) -> dict[str, AlertFigures]:
    """Per source and overall, the model's figures at the agent's flag."""
    return {source: figs["model"] for source, figs in report(lines, anomaly).items()}


def check(gates: Sequence[Gate], shipped: Figures, candidate: Figures,
          moves: Mapping[str, Flips] | None = None) -> list[GateResult]:
    """Each gate's verdict (``moves``: each set's :func:`flips`, for the gates with a
    ``significance``). A gate whose evaluation or source is missing from either side
    fails: a release cannot pass on a figure nobody measured."""
    out: list[GateResult] = []
    for gate in gates:
        before = shipped.get(gate.evaluation, {}).get(gate.source)
        after = candidate.get(gate.evaluation, {}).get(gate.source)
        moved = (moves or {}).get(gate.evaluation)
        if before is None or after is None or (gate.significance is not None and moved is None):
            out.append(GateResult(gate, float("nan"), float("nan"), False))
            continue
        s, c = getattr(before, gate.figure), getattr(after, gate.figure)
        ok = True
        if gate.at_most is not None:
            ok &= c <= gate.at_most + 1e-12
        if gate.at_least is not None:
            ok &= c >= gate.at_least - 1e-12
        if gate.worse_by_at_most is not None:
            worse = c - s if gate.figure == "false_alarm_rate" else s - c
            ok &= worse <= gate.worse_by_at_most + 1e-12
        if gate.significance is not None and moved is not None:
            ok &= not moved.significantly_worse(gate.figure, gate.significance)
        out.append(GateResult(gate, s, c, bool(ok)))
    return out


@dataclass(frozen=True)
class Flips:
    """Line indices whose flag the candidate changes, by what the change does."""

    newly_flagged_healthy: list[int]  # a false alarm the shipped bundle did not raise
    no_longer_flagged_healthy: list[int]
    newly_missed_alerts: list[int]
    newly_found_alerts: list[int]

    def false_alarm_p(self) -> float:
        """How likely this many more (or fewer) false alarms are from a redraw that is no
        worse: the exact two-sided sign test on the healthy lines that moved (McNemar)."""
        return sign_test(len(self.newly_flagged_healthy), len(self.no_longer_flagged_healthy))

    def recall_p(self) -> float:
        """The same on the alerts that moved."""
        return sign_test(len(self.newly_found_alerts), len(self.newly_missed_alerts))

    def significantly_worse(self, figure: str, level: float) -> bool:
        """More false alarms (``figure`` "false_alarm_rate") or fewer alerts found
        ("recall") than before, by a margin the sign test puts below ``level``."""
        if figure == "false_alarm_rate":
            worse = len(self.newly_flagged_healthy) > len(self.no_longer_flagged_healthy)
            return worse and self.false_alarm_p() < level
        worse = len(self.newly_missed_alerts) > len(self.newly_found_alerts)
        return worse and self.recall_p() < level


def sign_test(up: int, down: int) -> float:
    """Exact two-sided binomial test of ``up`` against ``down`` moves at one half each
    (McNemar's exact test on paired flags): 1.0 when nothing moved. Why: a figure on a
    few hundred lines moves by a few lines with every draw of the model; only moves this
    test finds unlikely are a change, the rest is the draw (docs/model.md, "A retrain
    held to written gates")."""
    n = up + down
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(up, down) + 1)) / 2**n
    return min(1.0, 2 * tail)


def flips(lines: Sequence[RealLine], shipped: np.ndarray, candidate: np.ndarray,
          normal_label: str = "normal") -> Flips:
    """Which lines change their flag (anomaly > 0.5) from the shipped bundle to the
    candidate: the lines behind a moved figure, to read before deciding anything."""
    before, after = np.asarray(shipped) > THRESHOLD, np.asarray(candidate) > THRESHOLD
    alert = np.array([label != normal_label for _, label, _ in lines], bool)
    return Flips(_where(~alert & after & ~before), _where(~alert & before & ~after),
                 _where(alert & before & ~after), _where(alert & after & ~before))


def _where(mask: np.ndarray) -> list[int]:
    return [int(i) for i in np.flatnonzero(mask)]
