"""Reproducibly build the default bundle: ``python -m nanomodel.build_default [--out PATH]``.

Trains (fixed seeds) on real message text of real daemons (:mod:`nanomodel.realtext`,
every source, rendered with fixed seeds) mixed with the generated corpus, evaluates on
unseen generated lines and the hand-written realistic lines beside the keyword
baseline, copies the leave-one-source-out real-log figures that
``benchmarks/model_real.py --write`` stored for this exact recipe and data, and packs
``agent/data/default.nfb``. Same code, same data, same bytes; no network.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

import numpy as np

from contract.bundle_features import BundleLevelOffsets
from nanomodel import default_bundle_path
from nanomodel.baseline import KeywordBaseline
from nanomodel.blas_pin import reexec_pinned
from nanomodel.corpus import Example, default_splits
from nanomodel.features import Featurizer, default_spec
from nanomodel.known_programs import trained_programs
from nanomodel.metrics import score
from nanomodel.network import ShippedModel, reference_forward
from nanomodel.pack import build_bundle
from nanomodel.realeval import RealLine, manifest_figures, report
from nanomodel.realistic import CHECK_LINES, FRESH_CHECK_LINES, STATE_LINES, TUNING_LINES
from nanomodel.realtrain import MixConfig, train_shipped, transfer_lines
from nanomodel.states import framed_states
from nanomodel.templates import LABELS
from nanomodel.train import TrainConfig

NAME, SLOT, VERSION, VERSION_LABEL = "nano-logs", "logs", 1, "default-1"
CORPUS_SEED = 7
REAL_SEED = 0
REAL_PER_TEMPLATE = 1
HELDOUT_FIGURES_PATH = Path(__file__).parent / "data" / "real_heldout.json"

# The shipped recipe (benchmarks/model_real.py evaluates exactly this, source by source).
# Trained to fit (30 epochs) on a fresh rendering of the real lines each epoch, so the
# filled-in values are never learnt by heart; its flag moved (normal_bias) to the false
# alarms the five-epoch, three-teacher model had on software it has never seen: the same
# there, more alerts found, and on known software's new lines and other people's logs far
# fewer false alarms (docs/model.md "Values drawn fresh per epoch"). Teachers did not help
# this recipe (measured there). Bare state lines (`wlan0: link is down`, nanomodel.states)
# teach what devices' own programs say; the bias then chosen again for the same false
# alarms on software never seen (`benchmarks/model_real.py --match-false-alarms 0.119`;
# docs/model.md "State lines"), and once more for the reviewed warning and notice labels
# (`--match-false-alarms 0.11`: the 11.0 % the model before them had; docs/model.md "The
# warning and notice reviews applied"). Since rule 6 (docs/model.md "The trade taken"):
# the December 7 captures (captured_next/), Apache 2.0/2.2's framing for 30 % of Apache's
# lines, seed 0, and its flag again at the shipped model's 10.7 % held-out false alarms.
MIX = MixConfig(corpus_lines=6000, reading_lines=14000, real_share=0.6, normal_weight=4.0,
                teachers=1, fresh_epochs=True, normal_bias=1.59, state_lines=2000,
                next_lines=True, apache22_share=0.3)
TRAIN = TrainConfig(epochs=30, min_steps=0)
# The shipped model's calibration of journald's levels, carried in its manifest (agents
# since December 2026 use it before their own defaults): fitted by maximum likelihood on
# real daemons' held-out lines (`benchmarks/model_real.py --folds 8 --levels`). These are
# the fit for the model before rule 6: refitted for this one (crit 3.53, err 2.30, warning
# 0.93, notice 1.21, info -1.31) they scored no better nested (alert F1 0.724 against
# 0.726; docs/model.md "The trade taken"), so the offsets every agent already used stay.
LEVEL_OFFSETS = BundleLevelOffsets(emerg=3.79, alert=3.79, crit=3.79, err=2.37, warning=1.36,
                                   notice=0.64, info=-1.15, debug=-1.15)
PriorFn = Callable[[list[RealLine]], np.ndarray]


def recipe(quiet: bool = False) -> tuple[MixConfig, TrainConfig, PriorFn | None]:
    """(corpus mix, training config, teacher prior maker or None) of the shipped model."""
    cfg = TrainConfig(**{**TRAIN.__dict__, "progress": not quiet})
    return MIX, cfg, None


def real_training_lines(own_draws: bool | None = None, with_next: bool | None = None,
                        apache22_share: float | None = None) -> list[RealLine]:
    """Every real line the shipped model trains on (fixed seed: same lines every build).
    ``own_draws`` (one generator per template, ``MixConfig.keyed_draws``), ``with_next``
    (also ``captured_next/``, ``MixConfig.next_lines``) and ``apache22_share`` (Apache's
    older framing, ``MixConfig.apache22_share``) default to the shipped recipe's."""
    from nanomodel.realtext import real_lines

    return real_lines(
        random.Random(REAL_SEED), per_template=REAL_PER_TEMPLATE,
        own_draws=MIX.keyed_draws if own_draws is None else own_draws,
        with_next=MIX.next_lines if with_next is None else with_next,
        apache22_share=MIX.apache22_share if apache22_share is None else apache22_share)


# Switches added to MixConfig or TrainConfig after figures were stored, with the value
# that leaves training as it was: at that value a switch is left out of the fingerprint,
# so adding an option that is off does not make the stored figures and bundle "stale".
LATER_SWITCHES: dict[str, object] = {"keyed_draws": False, "average_epochs": 0,
                                      "next_lines": False, "apache22_share": 0.0,
                                      "logcheck_per_rule": 0}


class _Recipe:
    """A config's dataclass repr without the :data:`LATER_SWITCHES` that are off."""

    def __init__(self, config: object) -> None:
        self.config = config

    def __repr__(self) -> str:
        kept = [f for f in fields(self.config) if f.repr and not (  # type: ignore[arg-type]
            f.name in LATER_SWITCHES and getattr(self.config, f.name) == LATER_SWITCHES[f.name])]
        inner = ", ".join(f"{f.name}={getattr(self.config, f.name)!r}" for f in kept)
        return f"{type(self.config).__name__}({inner})"


def heldout_fingerprint(lines: list[RealLine]) -> str:
    """Digest of the recipe, its features and the real data: held-out figures belong to
    these (the features too: dropping lines' heads changed the figures and nothing else)."""
    mix, cfg, prior = recipe(quiet=True)
    h = hashlib.sha256(repr((_Recipe(mix), _Recipe(cfg), prior is not None)).encode())
    h.update(default_spec().model_dump_json().encode())
    for text, label, source in lines:
        h.update(f"{source}\x1f{label}\x1f{text}\x1e".encode())
    for text in transfer_lines(mix):  # the teachers' transfer set is training data too
        h.update(f"{text}\x1e".encode())
    for e in framed_states(mix.state_lines, mix.seed + 103):  # and the state lines' first draw
        h.update(f"{e.label}\x1f{e.text}\x1e".encode())
    if mix.teacher_words:  # the LLM-distilled word vectors the teachers read
        from importlib.metadata import version

        h.update(f"wordllama {version('wordllama')}".encode())
    return h.hexdigest()


def stored_heldout_figures(lines: list[RealLine]) -> dict[str, float]:
    """The leave-one-source-out figures stored for this recipe and data, or nothing
    (with a note on stderr) when they are missing or belong to another recipe."""
    if not HELDOUT_FIGURES_PATH.exists():
        print(f"note: no {HELDOUT_FIGURES_PATH.name}; run benchmarks/model_real.py --write",
              file=sys.stderr)
        return {}
    doc = json.loads(HELDOUT_FIGURES_PATH.read_text())
    if doc.get("fingerprint") != heldout_fingerprint(lines):
        print(f"note: {HELDOUT_FIGURES_PATH.name} is for another recipe or data; not copied "
              "into the manifest (run benchmarks/model_real.py --write)", file=sys.stderr)
        return {}
    return {k: float(v) for k, v in doc["figures"].items()}

# Fixed smoke-test lines: one per category plus edge cases (empty, non-ASCII, long).
GOLDEN_TEXTS = [
    "Mar  3 12:01:02 gw-site4-17 sshd[812]: Accepted publickey for pi from 10.0.0.7 port 51234",
    "[ 8812.102201] EDAC MC0: 1 CE memory read error on DIMM0",
    "thermal thermal_zone0: critical temperature reached (104.0 C), shutting down",
    "Under-voltage detected! (0x00050005)",
    "eth0: link down",
    "I/O error, dev mmcblk0p2, sector 123456",
    "Failed password for root from 203.0.113.9 port 4242 ssh2",
    "collector[4411]: segfault at 7f00 ip 55d0 sp 7ffc error 4",
    "sensor press_in read failed: CRC mismatch",
    "",
    "Übertemperatur — ошибка датчика ✓",
    "x" * 600,
]


def evaluate(model: ShippedModel, featurizer: Featurizer, examples: list[Example],
             labels: list[str], normal_label: str) -> tuple[float, float]:
    """(model macro-F1, keyword-baseline macro-F1)."""
    figures = evaluate_figures(model, featurizer, examples, labels, normal_label)
    return figures["macro_f1"], figures["keyword_baseline_macro_f1"]


def evaluate_figures(model: ShippedModel, featurizer: Featurizer, examples: list[Example],
                     labels: list[str], normal_label: str) -> dict[str, float]:
    """Macro-F1, false-alarm rate (normal lines with anomaly > 0.5) and alert recall
    (alert lines with anomaly > 0.5), for the model and the keyword baseline."""
    texts = [e.text for e in examples]
    truth = np.array([labels.index(e.label) for e in examples])
    normal = truth == labels.index(normal_label)
    probs, anomaly = reference_forward(model, featurizer.transform(texts))
    base = np.array(KeywordBaseline(labels, normal_label).predict(texts))
    base_alarm = base != labels.index(normal_label)
    figures = {
        "macro_f1": score(list(truth), [int(i) for i in probs.argmax(axis=1)], labels).macro_f1,
        "keyword_baseline_macro_f1": score(list(truth), [int(i) for i in base], labels).macro_f1,
        "false_alarm_rate": float(np.mean(anomaly[normal] > 0.5)),
        "keyword_baseline_false_alarm_rate": float(np.mean(base_alarm[normal])),
        "alert_recall": float(np.mean(anomaly[~normal] > 0.5)),
        "keyword_baseline_alert_recall": float(np.mean(base_alarm[~normal])),
    }
    return figures


def never_trained_figures(model: ShippedModel, featurizer: Featurizer) -> dict[str, float]:
    """The built model on the evaluation sets no model is trained on: the public log
    samples (:func:`nanomodel.realtext.load_samples`) and a booted systemd's journal
    (:func:`~nanomodel.realtext.load_journal`). Overall figures for the manifest
    (``public_sample.overall.alert_f1``, ``device_journal.overall.false_alarm_rate``,
    ``...keyword_rule_false_alarm_rate``, ...); ``benchmarks/model_real.py --samples`` and
    ``--journal`` print them per source."""
    from nanomodel.realtext import load_journal, load_samples

    figures: dict[str, float] = {}
    for prefix, captured in (("public_sample", load_samples()),
                             ("device_journal", load_journal())):
        lines = [c.row for c in captured]
        if not lines:
            continue
        _, anomaly = reference_forward(model, featurizer.transform([t for t, _, _ in lines]))
        figures.update({k: v for k, v in manifest_figures(report(lines, anomaly),
                                                          prefix=prefix).items()
                        if k.startswith(f"{prefix}.overall.")})
    return figures


def as_examples(rows: list[tuple[str, str]], style: str) -> list[Example]:
    return [Example(text, label, style) for text, label in rows]


# The same build, every step of it, on a twentieth of the data and two epochs: ~20 s
# instead of 70-150 s. The full build records the digests of its bundle and of this
# smoke build, and the recipe's fingerprint (BUILD_RECORD_PATH), so that the suite checks
# on every machine, in seconds, that the code, data and libraries still build the
# committing machine's bytes (tests/test_model_training; the full rebuild is opt-in there).
# Every step of the recipe: the second epoch is a fresh rendering (of every template of
# the sources the twentieth holds: bigger than the first epoch's share, a few seconds).
SMOKE_MIX = MixConfig(corpus_lines=300, reading_lines=700, real_share=0.6, normal_weight=4.0,
                      fresh_epochs=True, normal_bias=1.35, state_lines=100)
SMOKE_TRAIN = TrainConfig(epochs=2, min_steps=0)
SMOKE_REAL_EVERY = 20
BUILD_RECORD_PATH = Path(__file__).parent / "data" / "build_record.json"


def build(out: Path, cfg: TrainConfig, smoke: bool = False) -> dict[str, float]:
    splits = default_splits(CORPUS_SEED, train_size=0)
    spec = default_spec()
    featurizer = Featurizer(spec)
    real = real_training_lines()
    mix, _, prior = recipe()
    if smoke:
        real, mix = real[::SMOKE_REAL_EVERY], SMOKE_MIX
        cfg = TrainConfig(**{**SMOKE_TRAIN.__dict__, "progress": cfg.progress})
    model = train_shipped(real, featurizer, mix, cfg, w1_prior=prior(real) if prior else None)
    figures: dict[str, float] = {}
    evaluation_sets = {"test_seen_styles": splits["test_seen_styles"],
                       "test_heldout_styles": splits["test_heldout_styles"],
                       "realistic_tuning": as_examples(TUNING_LINES, "realistic"),
                       "realistic_check": as_examples(CHECK_LINES, "realistic"),
                       # written outside the repository: the honest figure (docs/model.md)
                       "realistic_fresh": as_examples(FRESH_CHECK_LINES, "realistic"),
                       "realistic_state": as_examples(STATE_LINES, "realistic")}
    for split, examples in evaluation_sets.items():
        for key, value in evaluate_figures(model, featurizer, examples, LABELS,
                                           "normal").items():
            figures[f"{split}.{key}"] = value
    if not smoke:  # the stored figures are the full recipe's
        figures.update(stored_heldout_figures(real))
    figures.update(never_trained_figures(model, featurizer))
    data = build_bundle(model, spec=spec, labels=LABELS, normal_label="normal", name=NAME,
                        slot=SLOT, version=VERSION, version_label=VERSION_LABEL,
                        golden_texts=GOLDEN_TEXTS, evaluation=figures,
                        level_offsets=LEVEL_OFFSETS,
                        known_programs=trained_programs())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_bundle_path())
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--smoke", action="store_true",
                        help="the same steps on a twentieth of the data, two epochs (seconds)")
    args = parser.parse_args(argv)
    figures = build(args.out, recipe(quiet=args.quiet)[1], smoke=args.smoke)
    for key, value in figures.items():
        print(f"{key}: {value:.4f}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    if not args.smoke and args.out.resolve() == default_bundle_path().resolve():
        write_build_record(args.out)
        print(f"wrote {BUILD_RECORD_PATH}")
    return 0


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def smoke_build_digest() -> str:
    """Digest of the smoke build's bundle, built in a process of its own (BLAS pinned at
    its start, as for the full build)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "smoke.nfb"
        subprocess.run([sys.executable, "-m", "nanomodel.build_default", "--smoke", "--quiet",
                        "--out", str(out)], check=True, capture_output=True,
                       cwd=Path(__file__).resolve().parents[1])
        return sha256_file(out)


def write_build_record(bundle: Path) -> None:
    """What the suite checks the committed bundle against (BUILD_RECORD_PATH)."""
    record = {"bundle_sha256": sha256_file(bundle), "smoke_sha256": smoke_build_digest(),
              "recipe_fingerprint": heldout_fingerprint(real_training_lines())}
    BUILD_RECORD_PATH.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    reexec_pinned()  # the same bytes on every x86-64 CPU (nanomodel.blas_pin)
    sys.exit(main())
