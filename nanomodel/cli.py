"""``nanofleet model train|eval|inspect``.

:func:`add_model_commands` adds the ``model`` command to any argparse
sub-parsers (the fleet CLI mounts it); :func:`main` runs it standalone. Every
handler returns an exit code: 0 ok, 2 bad input (data, bundle, arguments).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

from contract.bundle import BundleError, load_bundle
from contract.bundle_features import features_needed

# Sources, labels and lines a device chose reach these tables through `nanofleet alerts
# export`: printed as shown(...) (review, December 2026).
from contract.display import printable_lines as shown
from nanomodel.dataio import DataError, load_labeled
from nanomodel.train import TrainConfig

EXIT_OK, EXIT_BAD_INPUT = 0, 2


def _label_list(values: list[str] | None) -> list[str] | None:
    """``--labels a b c`` or ``--labels a,b,c``."""
    if not values:
        return None
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def cmd_train(args: argparse.Namespace) -> int:
    from nanomodel.finetune import TrainRequest, train_bundle

    data = load_labeled(args.data)
    eval_data = load_labeled(args.eval_data) if args.eval_data else None
    config = TrainConfig(seed=args.seed, progress=not args.quiet)
    if args.epochs is not None:
        # Asked for explicitly: exactly that many, no minimum-steps top-up.
        config = dataclasses.replace(config, epochs=args.epochs, min_steps=0)
    result = train_bundle(TrainRequest(
        data=data, out=args.out, base=args.base, head_only=args.head_only,
        labels=_label_list(args.labels), normal_label=args.normal_label, version=args.version,
        version_label=args.version_label, name=args.name, slot=args.slot,
        mix_corpus=args.mix_corpus, eval_data=eval_data, config=config,
        balance=args.balance))
    newly_known = result.programs_taught
    summary = {"out": str(args.out), "bytes": len(result.bundle), "version": result.version,
               "labels": result.labels, "normal_label": result.normal_label,
               "training_lines": len(data.texts), "mixed_corpus_lines": result.mixed_corpus_lines,
               "head_only": args.head_only, "evaluation": result.figures,
               "programs_taught": newly_known}
    if args.json:
        print(json.dumps(summary, sort_keys=True))
        return EXIT_OK
    print(f"wrote {args.out} ({len(result.bundle)} bytes), version {result.version}, "
          f"labels {', '.join(result.labels)} (normal: {result.normal_label})")
    print(f"trained on {len(data.texts)} lines" + (
        f" + {result.mixed_corpus_lines} lines of what the base knew (taught its answers)"
        if result.mixed_corpus_lines else "") + (" (head only)" if args.head_only else ""))
    for key, value in result.figures.items():
        print(f"  {key:36s} {value:.4f}")
    if newly_known:
        print("programs these lines name that the base had not read, now in the bundle's "
              "known_programs (the agent leaves their lines to the model's words instead of "
              f"weighing the keywords in): {', '.join(newly_known)}")
    return EXIT_OK


def _scores_table(title: str, scores: dict[str, Any]) -> list[str]:
    lines = [f"{title}: macro-F1 {scores['macro_f1']:.4f}  accuracy {scores['accuracy']:.4f}",
             f"  {'label':14s} {'precision':>9s} {'recall':>9s} {'f1':>9s} {'support':>8s}"]
    for c in scores["per_class"]:
        lines.append(f"  {c['label']:14s} {c['precision']:9.4f} {c['recall']:9.4f} "
                     f"{c['f1']:9.4f} {c['support']:8d}")
    return lines


def cmd_eval_alerts(args: argparse.Namespace) -> int:
    """``eval --alerts``: alert / no alert on the site's own labels (nanomodel.alert_eval)."""
    from agent.config import AlertConfig, ConfigError, load_config
    from agent.journal_catalog import CatalogEvidenceConfig
    from agent.keyword_evidence import KeywordEvidenceConfig
    from agent.level_evidence import LevelEvidenceConfig
    from nanomodel.alert_eval import (
        ALERT_EVAL_FIELDS,
        evaluate_alerts,
        format_alerts,
        keyword_rule,
    )

    alerts, levels, policy = AlertConfig(), LevelEvidenceConfig(), "defaults"
    catalog, keywords = CatalogEvidenceConfig(), KeywordEvidenceConfig()
    if args.agent_config is not None:
        try:
            cfg = load_config(args.agent_config, secrets=False)
        except ConfigError as exc:
            raise DataError(str(exc)) from None
        alerts, levels, policy = cfg.alerts, cfg.model.level_evidence, str(args.agent_config)
        catalog, keywords = cfg.model.catalog_evidence, cfg.model.keyword_evidence
    if args.no_levels:  # the words alone: no level, catalog id or keywords
        levels = LevelEvidenceConfig(enabled=False)
        catalog = CatalogEvidenceConfig(enabled=False)
        keywords = keywords.model_copy(update={"unknown_programs": False})
    result = evaluate_alerts(load_labeled(args.data, ALERT_EVAL_FIELDS), args.bundle,
                             args.runtime, args.normal_label or "normal",
                             keyword_rule(args.keyword), args.threshold, levels, alerts,
                             args.fit_levels, policy, catalog, keywords, args.keywords,
                             args.text_levels)
    print(json.dumps(result, sort_keys=True) if args.json else shown(format_alerts(result)))
    return EXIT_OK


def cmd_eval(args: argparse.Namespace) -> int:
    from nanomodel.evaluate import evaluate_bundle

    if args.alerts:
        return cmd_eval_alerts(args)
    only = [flag for flag, given in (("--normal-label", args.normal_label is not None),
                                     ("--keyword", args.keyword is not None),
                                     ("--threshold", args.threshold != 0.5),
                                     ("--agent-config", args.agent_config is not None),
                                     ("--no-levels", args.no_levels),
                                     ("--text-levels", args.text_levels),
                                     ("--fit-levels", args.fit_levels)) if given]
    if only:
        raise DataError(f"{', '.join(only)} only apply to alert figures: add --alerts")
    result = evaluate_bundle(load_labeled(args.data), args.bundle, args.runtime,
                             timing=not args.no_timing)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return EXIT_OK
    print(shown(f"{result['model']} ({result['bundle']}) on {result['lines']} lines, "
          f"runtime {result['runtime']}"))
    out = _scores_table("model", result["model_scores"])
    out += _scores_table("keyword baseline", result["keyword_baseline"])
    if "throughput" in result:
        t, s = result["throughput"], result["single_line"]
        out.append(f"latency: {t['lines_per_s']:.0f} lines/s at batch {t['batch']} "
                   f"(tokenize {t['tokenize_us_per_line']:.1f} us/line, inference "
                   f"{t['inference_us_per_line']:.1f} us/line); single line p50 "
                   f"{s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms")
    print(shown("\n".join(out)))
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    m = bundle.manifest
    if args.json:
        print(json.dumps({"sha256": bundle.sha256, "manifest": m.model_dump(mode="json")},
                         sort_keys=True))
        return EXIT_OK
    t = m.tokenizer
    out = [
        f"bundle     {args.bundle} ({args.bundle.stat().st_size} bytes)",
        f"sha256     {bundle.sha256}",
        f"model      {m.name}  slot {m.slot}  version {m.version} ({m.version_label})",
        f"task       {m.task}",
        f"labels     {', '.join(m.labels)}  (normal: {m.normal_label})",
        f"tokenizer  {t.kind}: {t.buckets} buckets, char n-grams {t.char_ngrams}, word "
        f"n-grams {t.word_ngrams}, lowercase={t.lowercase}, mask_digits={t.mask_digits}, "
        f"max_chars={t.max_chars}, seed={t.seed}, head={t.head}",
        "inputs     " + ", ".join(f"{s.name} {s.dtype}{s.shape}" for s in m.inputs),
        "outputs    " + ", ".join(f"{s.name} {s.dtype}{s.shape}" for s in m.outputs),
        "runtimes   " + ", ".join(f"{k} -> {v}" for k, v in sorted(m.runtimes.items())),
        "levels     " + ("(none: the agent's defaults)" if m.level_offsets is None else
                         ", ".join(f"{k} {v:+.2f}" for k, v in
                                   m.level_offsets.model_dump().items())),
        "programs   " + ("(none named: the agent's own list)" if m.known_programs is None else
                         f"{len(m.known_programs)} read in training: "
                         + (", ".join(m.known_programs) or "(none)")),
        "needs      " + (", ".join(sorted(features_needed(m))) or "bundle format 1 only")
        + " (agents that cannot read these are skipped by rollouts)",
        "files",
    ]
    for f in m.files:
        out.append(f"  {f.path:14s} {f.size:8d} bytes  sha256 {f.sha256[:16]}…  "
                   f"{len(f.tensors)} tensors")
        for tensor in f.tensors:
            out.append(f"    {tensor.name:22s} {tensor.dtype:8s} {tensor.shape!s:14s} "
                       f"bytes {tensor.offset}..{tensor.offset + tensor.length}")
    out.append(f"golden     {len(m.golden)} vectors, tolerance {m.golden_atol}")
    out.append("evaluation" + ("" if m.evaluation else "  (none)"))
    out += [f"  {k:40s} {v:.4f}" for k, v in sorted(m.evaluation.items())]
    out.append(f"created by {m.created_by or '(unknown)'}")
    print(shown("\n".join(out)))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.model_func(args))
    except (DataError, BundleError) as exc:
        print(shown(f"error: {exc}"), file=sys.stderr)
        return EXIT_BAD_INPUT
    except FileNotFoundError as exc:
        print(shown(f"error: {exc.filename}: no such file"), file=sys.stderr)
        return EXIT_BAD_INPUT


def add_model_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``model train|eval|inspect`` to ``subparsers`` (from ``add_subparsers()``).
    Dispatch with ``args.func(args)``, which returns the exit code."""
    model = subparsers.add_parser("model", help="train, evaluate and inspect nano models",
                                  description="Train, evaluate and inspect nano model bundles.")
    model.set_defaults(func=lambda _args: (model.print_help(), EXIT_BAD_INPUT)[1])
    sub = model.add_subparsers(dest="model_command", metavar="{train,eval,inspect}")

    train = sub.add_parser("train", help="train or fine-tune a bundle on labeled lines")
    train.add_argument("--data", type=Path, required=True,
                       help="labeled lines: JSONL with text,label fields or CSV text,label")
    train.add_argument("--out", type=Path, required=True, help="bundle file to write (.nfb)")
    train.add_argument("--base", type=Path, help="bundle to start from")
    train.add_argument("--head-only", action="store_true",
                       help="keep the base body byte-identical; train only the head")
    train.add_argument("--labels", nargs="+", help="output labels in order (default: from "
                       "the base, else the data's labels)")
    train.add_argument("--normal-label", help="the label meaning 'nothing wrong' "
                       "(default: 'normal')")
    train.add_argument("--version", type=int, help="version (default: base version + 1, or 1)")
    train.add_argument("--version-label", help="human version label (default: vN)")
    train.add_argument("--name", help="model name (default: the base's, or nano-custom)")
    train.add_argument("--slot", help="slot (default: the base's, or logs)")
    train.add_argument("--mix-corpus", type=int, metavar="N",
                       help="also train on N lines of what the base was trained on (a "
                       "third generated, the rest real daemons' lines), taught the base's own "
                       "answers so that it keeps them (default: 9000 when fine-tuning a base "
                       "whose categories match, else 0)")
    train.add_argument("--balance", action="store_true", help="the data's healthy lines and "
                       "its alert lines weigh the same in total (verdicts on alerts: a few "
                       "false alarms beside many right alerts)")
    train.add_argument("--eval-data", type=Path, help="labeled lines to report figures on")
    train.add_argument("--epochs", type=int, help="epochs of full training (default: 6, more "
                       "for small data sets so that training makes at least 600 steps)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--json", action="store_true", help="print a JSON summary")
    train.set_defaults(func=_run, model_func=cmd_train)

    ev = sub.add_parser("eval", help="score a bundle on labeled lines, beside a keyword "
                        "baseline, with latency")
    ev.add_argument("--data", type=Path, required=True, help="labeled lines (JSONL or CSV)")
    ev.add_argument("--bundle", type=Path, required=True, help="bundle file (.nfb)")
    ev.add_argument("--runtime", choices=["onnxruntime", "litert"], default="onnxruntime")
    ev.add_argument("--no-timing", action="store_true", help="skip the latency measurement")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--alerts", action="store_true", help=(
        "alert figures instead: a line is an alert unless labelled normal (any label set, "
        "e.g. ok/alert); the model's flags (anomaly > --threshold), the alerts the agent "
        "sends, and a keyword rule on the same lines; optional columns: source, level"))
    ev.add_argument("--normal-label", help="with --alerts: the label of healthy lines "
                    "(default: normal)")
    ev.add_argument("--keyword", help="with --alerts: the rule to compare with, a regular "
                    "expression matched case-insensitively (default: the grep "
                    "'fatal|fail|error|panic|critical')")
    ev.add_argument("--threshold", type=float, default=0.5, help="with --alerts: flag a line "
                    "when its anomaly is above this (default 0.5)")
    ev.add_argument("--agent-config", type=Path, help="with --alerts: the agent's config; "
                    "its [alerts], [model.level_evidence] and [model.catalog_evidence] decide "
                    "what is sent (default: the agent's defaults)")
    ev.add_argument("--no-levels", action="store_true", help="with --alerts: ignore the "
                    "level and message_id columns and weigh no keywords but --keywords' (the "
                    "words alone decide)")
    ev.add_argument("--keywords", action="store_true", help="with --alerts: weigh the "
                    "keywords in on every line without a level, as a source with "
                    "keyword_evidence = true does (the [model.keyword_evidence] of "
                    "--agent-config, or the defaults); without it, only on lines naming a "
                    "program the model has not read, as the agent does by default. Measure it "
                    "on your own application's lines before turning it on")
    ev.add_argument("--text-levels", action="store_true", help="with --alerts: a line "
                    "without a level column value takes the level its text states (log4j "
                    "'ERROR [main]', Apache's '[error]', level=warn), as a source with "
                    "text_levels = true does")
    ev.add_argument("--fit-levels", action="store_true", help="with --alerts: fit the level "
                    "offsets to this model and these labels and print them for "
                    "[model.level_evidence.offsets], with the figures they give")
    ev.set_defaults(func=_run, model_func=cmd_eval)

    ins = sub.add_parser("inspect", help="show a bundle's manifest")
    ins.add_argument("bundle", type=Path, help="bundle file (.nfb)")
    ins.add_argument("--json", action="store_true", help="print the manifest as JSON")
    ins.set_defaults(func=_run, model_func=cmd_inspect)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nanofleet")
    add_model_commands(parser.add_subparsers(dest="command", metavar="{model}"))
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
