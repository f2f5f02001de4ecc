"""The shipped training recipe on real log text, every source held out in turn.

    python benchmarks/model_real.py                 # leave-one-source-out (one model per source)
    python benchmarks/model_real.py --folds 5       # quicker: sources dealt into 5 groups
    python benchmarks/model_real.py --write         # also store the figures for the manifest
    python benchmarks/model_real.py --known         # known daemons, new captured lines
    python benchmarks/model_real.py --samples       # the shipped bundle on public log samples
    python benchmarks/model_real.py --journal       # ... on a booted systemd's journal
    python benchmarks/model_real.py --next          # ... on the December 7 captures (trained on)
    python benchmarks/model_real.py --folds 8 --with-next  # with them whatever the recipe says
    python benchmarks/model_real.py --folds 8 --sent  # the alerts the agent would send, held out
    python benchmarks/model_real.py --folds 8 --keyword-prior  # also the grep as a second opinion
    python benchmarks/model_real.py --folds 8 --levels  # also with each line's level (journald)
    python benchmarks/model_real.py --folds 8 --mix pool_share=0.2 seed=10  # a recipe variant
    python benchmarks/model_real.py --folds 8 --train average_epochs=15  # a trainer variant
    python benchmarks/model_real.py --folds 8 --jobs 2 --save-scores /tmp/nano.npy  # for blends

For each source S, a model is trained exactly as ``nanomodel.build_default`` trains the
shipped one (same corpus mix, same hyper-parameters) but without any line of S, then
scores S's lines as a device sees them (bare or behind the prefixes real logs carry:
:func:`nanomodel.realtext.real_lines`). Prints, per
source and overall (all held-out lines pooled): alert F1, false-alarm rate and alert
recall of the model (flag = anomaly > 0.5) and of the keyword rule
``grep -iE 'fatal|fail|error|panic|critical'`` on the same lines.

``--known`` answers the other question: on daemons the model *was* trained on (every
template, half of the captured real lines), how does it do on the other half of the
captured lines (split by distinct text)? That is the shipped model's situation on a
device running those daemons.

``--samples [BUNDLE]`` scores a bundle (the shipped one by default), through the agent's
own runtime, on the public log samples no model is trained on (fail2ban's test logs:
:func:`nanomodel.realtext.load_samples`): other people's systems and software versions,
per source and overall, against the same keyword rule. ``--journal [BUNDLE]`` does the
same on a booted systemd's journal captured here (:func:`nanomodel.realtext.load_journal`:
the service manager's own lines, each as the agent's journald source reads it), also
with each entry's PRIORITY weighed in as the agent does. ``--next [BUNDLE]`` scores it on
the lines captured here that no shipped model is trained on yet
(:func:`nanomodel.realtext.load_captured_next`: site servers and a real kernel).

``--write`` stores the figures in ``nanomodel/data/real_heldout.json`` with a
fingerprint of the recipe and the data; ``build_default`` copies them into the
bundle's manifest (``evaluation["real_heldout.*"]``) only while the fingerprint still
matches, so a manifest never carries figures of another recipe. Run it under ``nice``:
one model per source takes a while on a shared machine.

The reports with the level, the journal catalog and the keyword prior weighed in are
:mod:`benchmarks.model_real_evidence`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.model_real_evidence import (  # noqa: E402
    _anomaly,
    _keyword_prior,
    _levels,
    _wins,
    _with_levels,
)
from nanomodel import default_bundle_path  # noqa: E402
from nanomodel.blas_pin import reexec_pinned  # noqa: E402
from nanomodel.build_default import (  # noqa: E402
    HELDOUT_FIGURES_PATH,
    REAL_PER_TEMPLATE,
    REAL_SEED,
    heldout_fingerprint,
    real_training_lines,
    recipe,
)
from nanomodel.features import Featurizer, default_spec  # noqa: E402
from nanomodel.realeval import (  # noqa: E402
    OVERALL,
    AlertFigures,
    RealLine,
    Trainer,
    as_dict,
    bias_for_false_alarms,
    fill_heldout,
    format_table,
    heldout_anomaly,
    manifest_figures,
    recall_at_false_alarms,
    report,
    score_heldout,
    sent_alerts,
    source_folds,
    split_known,
)
from nanomodel.reallevels import priority  # noqa: E402
from nanomodel.realtrain import LABELS, MixConfig, mixed_trainer  # noqa: E402
from nanomodel.train import TrainConfig  # noqa: E402

_SHARED: dict[str, object] = {}  # set before the worker processes fork


def _one_group(held: list[str]) -> np.ndarray:
    lines = cast(list[RealLine], _SHARED["lines"])
    return score_heldout(lines, cast(Trainer, _SHARED["trainer"]), held)


def _parallel(lines: list[RealLine], trainer: Trainer, folds: int | None, jobs: int,
              progress: Callable[[int, int, list[str]], None], width: int = 0) -> np.ndarray:
    """Held-out models trained in forked worker processes (same figures as one by one).
    ``width``: the scorer gives that many numbers per line (probabilities), not one."""
    _SHARED.update(lines=lines, trainer=trainer)
    groups = source_folds([s for _, _, s in lines], folds)
    shape = (len(lines), width) if width else (len(lines),)
    anomaly = np.full(shape, np.nan, dtype=np.float32)
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
        for i, (group, scores) in enumerate(zip(groups, pool.map(_one_group, groups),
                                                strict=True)):
            progress(i, len(groups), group)
            fill_heldout(anomaly, lines, group, scores)
    return anomaly


def _known() -> int:
    import random

    from nanomodel.realtext import load_captured, real_lines

    mix, cfg, prior = recipe(quiet=True)
    templates = real_lines(random.Random(REAL_SEED), per_template=REAL_PER_TEMPLATE,
                           captured=False)
    captured = [c.row for c in load_captured()]
    levels = {c.text: priority(c.level) for c in load_captured()}
    train, test = split_known(templates, captured)
    start = time.monotonic()
    score = mixed_trainer(Featurizer(default_spec()), mix, cfg,
                          w1_prior=prior(train) if prior else None, probs=True)(train)
    probs = score([t for t, _, _ in test])
    anomaly = _anomaly(probs)
    rep = report(test, anomaly)
    print(f"known daemons, new lines: trained on {len(train)} lines, scored {len(test)} "
          f"captured lines never trained on, {time.monotonic() - start:.0f} s\n")
    print(format_table(rep))
    _with_levels(test, probs, [levels[t] for t, _, _ in test])
    return 0


def _samples(bundle: Path, journal: bool = False, nxt: bool = False) -> int:
    """The shipped bundle, as the agent runs it, on the public log samples that no model
    is trained on (fail2ban's test logs: other people's systems, many software versions),
    on the journal of a booted systemd (``journal``: with each entry's level too), or on
    the December 7 captures (``nxt``; the shipped model trains on them since rule 6)."""
    from agent.config import AlertConfig
    from agent.model import LoadedModel
    from nanomodel.realtext import load_captured_next, load_journal, load_samples

    captured = (load_journal() if journal else load_captured_next() if nxt
                else load_samples())
    lines = [c.row for c in captured]
    model = LoadedModel.load(bundle)
    probs, anomaly = (np.asarray(a) for a in model.classify([t for t, _, _ in lines]))
    rep = report(lines, anomaly)
    what = ("journal lines of a booted systemd, never trained on" if journal else
            "December 7 captures (trained on since rule 6)" if nxt else
            "public sample lines, never trained on")
    print(f"{bundle.name} on {len(lines)} {what}, {len(rep) - 1} sources\n")
    print(format_table(rep))
    wins = _wins(rep)
    o, k = rep[OVERALL]["model"], rep[OVERALL]["keyword"]
    at = recall_at_false_alarms(lines, anomaly, (k.false_alarm_rate,))
    print(f"\nmodel beats the keyword rule on {wins} of {len(rep) - 1} sources; overall "
          f"false alarms {100 * o.false_alarm_rate:.1f} % (rule {100 * k.false_alarm_rate:.1f} %)"
          f", recall {100 * o.recall:.1f} % (rule {100 * k.recall:.1f} %); at the rule's "
          f"false-alarm rate the model finds {100 * at[k.false_alarm_rate]:.1f} %")
    flags = sent_alerts(model.labels, model.manifest.normal_label, probs, anomaly)
    sent = report(lines, flags)[OVERALL]["model"]
    print(f"alerts as the agent sends them (default [alerts]: a label at >= "
          f"{AlertConfig().default_min_score} or anomaly >= {AlertConfig().anomaly_threshold}"
          f"): F1 {sent.f1:.3f}, false alarms {100 * sent.false_alarm_rate:.1f} %, recall "
          f"{100 * sent.recall:.1f} %")
    if journal:
        _with_levels(lines, probs, [priority(c.level) for c in captured],
                     [c.message_id for c in captured], model.manifest.level_offsets)
    return 0


def _hand_written(bundle: Path) -> int:
    """A bundle on the hand-written line sets (nanomodel.realistic), most honest first:
    healthy lines flagged and alerts found at anomaly > 0.5, the alerts the agent sends,
    and the grep, as counts (the sets are small)."""
    from agent.model import LoadedModel
    from nanomodel.realistic import CHECK_LINES, FRESH_CHECK_LINES, STATE_LINES, TUNING_LINES

    model = LoadedModel.load(bundle)
    print(f"{bundle.name} on the hand-written lines (never trained on; docs/model.md)\n")
    print("| set | lines | flag at 0.5: healthy flagged, alerts found | sent | the grep |")
    print("|---|---|---|---|---|")
    for name, rows in (("fresh (written outside the repository)", FRESH_CHECK_LINES),
                       ("check", CHECK_LINES), ("state (optimistic)", STATE_LINES),
                       ("tuning (optimistic)", TUNING_LINES)):
        lines = [(t, lab, "hand") for t, lab in rows]
        probs, anomaly = (np.asarray(a) for a in model.classify([t for t, _ in rows]))
        sent = sent_alerts(model.labels, model.manifest.normal_label, probs, anomaly)
        rep = report(lines, anomaly)[OVERALL]
        cells = [_counts(f) for f in
                 (rep["model"], report(lines, sent)[OVERALL]["model"], rep["keyword"])]
        print(f"| {name} | {len(rows)} | {' | '.join(cells)} |")
    return 0


def _counts(f: AlertFigures) -> str:
    """`healthy flagged of healthy, alerts found of alerts`, from the figures' own counts."""
    healthy = f.lines - f.alerts
    return (f"{round(f.false_alarm_rate * healthy)} of {healthy}, "
            f"{round(f.recall * f.alerts)} of {f.alerts}")


def mix_variant(pairs: list[str], config: type = MixConfig,
                option: str = "--mix") -> dict[str, Any]:
    """``["seed=10", "pool_share=0.2", "fresh_epochs=true"]`` -> ``config``'s fields
    (MixConfig, or TrainConfig for ``--train``) to replace (numbers, and true/false)."""
    names = {f.name: f.type for f in fields(config)}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in names:
            raise ValueError(f"{option} {pair}: {key!r} is not a {config.__name__} field "
                             f"(one of {', '.join(sorted(names))})")
        if names[key] in (bool, "bool"):
            if value not in ("true", "false"):
                raise ValueError(f"{option} {pair}: {value!r} is not true or false")
            out[key] = value == "true"
            continue
        try:
            out[key] = int(value) if names[key] in (int, "int") else float(value)
        except ValueError:
            raise ValueError(f"{option} {pair}: {value!r} is not a number") from None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=None,
                        help="hold sources out in this many groups (default: one per source)")
    parser.add_argument("--write", action="store_true",
                        help=f"store the figures in {HELDOUT_FIGURES_PATH} for the manifest")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train this many held-out models at once (processes)")
    parser.add_argument("--known", action="store_true",
                        help="known daemons, new lines: score half the captured lines")
    parser.add_argument("--samples", nargs="?", type=Path, const=default_bundle_path(),
                        metavar="BUNDLE", help="score a bundle (default: the shipped one) on "
                        "the public log samples no model is trained on")
    parser.add_argument("--next", nargs="?", type=Path, const=default_bundle_path(),
                        dest="next_lines", metavar="BUNDLE",
                        help="score a bundle (default: the shipped one) on the December 7 "
                        "captures (captured_next/; the shipped model trains on them since "
                        "rule 6, so for it an in-sample figure)")
    parser.add_argument("--with-next", action="store_true",
                        help="train (and hold out) with the December 7 captures (captured_next/) "
                        "too, whatever the recipe says (the shipped recipe has them)")
    parser.add_argument("--journal", nargs="?", type=Path, const=default_bundle_path(),
                        metavar="BUNDLE", help="score a bundle (default: the shipped one) on "
                        "a booted systemd's journal no model is trained on")
    parser.add_argument("--hand", nargs="?", type=Path, const=default_bundle_path(),
                        metavar="BUNDLE", help="score a bundle (default: the shipped one) on "
                        "the hand-written line sets: healthy flagged and alerts found, sent, "
                        "the grep")
    parser.add_argument("--sent", action="store_true",
                        help="score the alerts the agent would send (default [alerts] "
                        "policy) instead of the anomaly > 0.5 flag; not with --write")
    parser.add_argument("--keyword-prior", action="store_true",
                        help="also print the held-out figures with the grep as a second "
                        "opinion (nanomodel.realeval.nested_keyword_prior; measured, not "
                        "shipped)")
    parser.add_argument("--levels", action="store_true",
                        help="also score the lines with the level their code logs them at, "
                        "as the journal gives it to the agent (agent.level_evidence); "
                        "needs --folds")
    parser.add_argument("--mix", nargs="+", default=[], metavar="FIELD=VALUE",
                        help="measure a variant of the shipped recipe: MixConfig fields "
                        "replaced (e.g. seed=10 pool_share=0.2 teacher_words=64); not with "
                        "--write")
    parser.add_argument("--train", nargs="+", default=[], metavar="FIELD=VALUE",
                        help="measure a variant of the shipped recipe: TrainConfig fields "
                        "replaced (e.g. average_epochs=15 lr=0.001); not with --write")
    parser.add_argument("--match-false-alarms", type=float, default=None, metavar="RATE",
                        help="also print the normal bias to add so that the held-out models "
                        "flag RATE of the normal lines (how the recipe's normal_bias is "
                        "chosen: docs/model.md)")
    parser.add_argument("--save-scores", type=Path, default=None, metavar="NPY",
                        help="also save the held-out anomaly of every line (the order of "
                        "real_training_lines) to this .npy file, to measure other scorers "
                        "or blends against the same models (benchmarks/teacher_probe.py)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train this many epochs instead of the recipe's (not with "
                        "--write)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.write:
        parser.error("--epochs measures a variant: its figures are not the shipped recipe's")
    try:
        variant = mix_variant(args.mix)
        train_variant = mix_variant(args.train, TrainConfig, "--train")
    except ValueError as exc:
        parser.error(str(exc))
    if train_variant and args.write:
        parser.error("--train measures a variant: its figures are not the shipped recipe's, "
                     "so they are not written")
    if variant and args.write:
        parser.error("--mix measures a variant: its figures are not the shipped recipe's, "
                     "so they are not written")
    if args.keyword_prior and (args.sent or args.folds is None):
        parser.error("--keyword-prior needs --folds (its choice is nested over the groups) "
                     "and not --sent")
    if args.levels and (args.sent or args.folds is None or args.keyword_prior):
        parser.error("--levels needs --folds (its fit is nested over the groups), and not "
                     "--sent or --keyword-prior (it prints the sent alerts itself)")
    if args.sent and args.write:
        parser.error("--sent figures are not the manifest's: run --write without --sent")
    if args.known:
        return _known()
    if args.samples:
        return _samples(args.samples)
    if args.journal:
        return _samples(args.journal, journal=True)
    if args.next_lines:
        return _samples(args.next_lines, nxt=True)
    if args.hand:
        return _hand_written(args.hand)
    mix, cfg, prior = recipe(quiet=True)
    mix = replace(mix, **variant)
    if args.epochs is not None:
        cfg = replace(cfg, epochs=args.epochs)
    cfg = replace(cfg, **train_variant)
    if args.with_next and args.write and not mix.next_lines:
        parser.error("--with-next measures a retrain the shipped model is not: no --write")
    # every epoch renders the captured_next lines again, as it does the others (until
    # December 7, 2026 only the first epoch of thirty had them: that measurement was void)
    mix = replace(mix, next_lines=mix.next_lines or args.with_next)
    lines = real_training_lines(own_draws=mix.keyed_draws, with_next=mix.next_lines,
                                apache22_share=mix.apache22_share)
    featurizer = Featurizer(default_spec())
    trainer = mixed_trainer(featurizer, mix, cfg, w1_prior=prior(lines) if prior else None,
                            sent=args.sent, probs=args.levels)
    start = time.monotonic()

    def progress(i: int, n: int, held: list[str]) -> None:
        print(f"[{time.monotonic() - start:6.0f}s] model {i + 1}/{n}, holding out "
              f"{', '.join(held)}", file=sys.stderr, flush=True)

    probs = None
    if args.levels:
        probs = _parallel(lines, trainer, args.folds, max(args.jobs, 1), progress,
                          width=len(LABELS))
        anomaly = _anomaly(probs)
    elif args.jobs > 1:
        anomaly = _parallel(lines, trainer, args.folds, args.jobs, progress)
    else:
        anomaly = heldout_anomaly(lines, trainer, args.folds, on_fold=progress)
    rep = report(lines, anomaly)
    if args.save_scores is not None:
        np.save(args.save_scores, np.asarray(anomaly, dtype=np.float32))
    scheme = "leave-one-source-out" if args.folds is None else \
        f"sources held out in {args.folds} groups"
    if args.json:
        print(json.dumps(as_dict(rep), indent=1))
    else:
        what = "the alerts the agent would send (default [alerts])" if args.sent else \
            "flag: anomaly > 0.5"
        print(f"{len(lines)} real lines, {len(rep) - 1} sources, {scheme}, {what}, "
              f"{time.monotonic() - start:.0f} s\n")
        print(format_table(rep))
        wins = _wins(rep)
        o = rep[OVERALL]["model"]
        print(f"\nmodel beats the keyword rule on {wins} of {len(rep) - 1} sources; overall "
              f"false alarms {100 * o.false_alarm_rate:.2f} % (bar 2 %), recall "
              f"{100 * o.recall:.1f} % (bar 80 %)")
        k = rep[OVERALL]["keyword"]
        if args.sent:  # 0/1 flags: no ranking to move a threshold along
            return 0
        at = recall_at_false_alarms(lines, anomaly, (0.02, 0.05, k.false_alarm_rate))
        print(f"ranking (threshold moved so that a share of normal lines is flagged): alert "
              f"recall {100 * at[0.02]:.1f} % at 2 % false alarms, {100 * at[0.05]:.1f} % at "
              f"5 %, {100 * at[k.false_alarm_rate]:.1f} % at the keyword rule's "
              f"{100 * k.false_alarm_rate:.1f} % (the rule finds {100 * k.recall:.1f} %)")
    if args.match_false_alarms is not None:
        extra, recall = bias_for_false_alarms(lines, anomaly, args.match_false_alarms)
        print(f"to flag {100 * args.match_false_alarms:.1f} % of normal lines: normal_bias "
              f"{mix.normal_bias + extra:.2f} ({extra:+.3f} on this recipe's "
              f"{mix.normal_bias}), recall there {100 * recall:.1f} %")
    if args.keyword_prior:
        _keyword_prior(lines, anomaly, args.folds)
    if probs is not None and args.folds is not None:
        _levels(lines, probs, args.folds, mix.next_lines)
    if args.write:
        figures = manifest_figures(rep)
        figures["real_heldout.source_groups"] = float(len(source_folds(
            [s for _, _, s in lines], args.folds)))
        for rate, recall in recall_at_false_alarms(lines, anomaly, (0.02, 0.05)).items():
            figures[f"real_heldout.overall.alert_recall_at_{rate * 100:.0f}pct_false_alarms"] = \
                recall
        doc = {"fingerprint": heldout_fingerprint(lines), "scheme": scheme,
               "figures": figures}
        HELDOUT_FIGURES_PATH.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"wrote {HELDOUT_FIGURES_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    reexec_pinned()  # the figures of one BLAS kernel on every x86-64 CPU (nanomodel.blas_pin)
    sys.exit(main())
