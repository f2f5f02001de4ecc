"""The unlabelled pool: real messages of daemons with no labelled templates, read with one
broad call pattern, rendered like templates, and taught by the teachers alone."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np

from nanomodel import realtext
from nanomodel.corpus import generate
from nanomodel.features import Featurizer, default_spec
from nanomodel.harvest import pool
from nanomodel.realtrain import MixConfig, teacher_featurizer, train_distilled
from nanomodel.templates import LABELS
from nanomodel.train import TrainConfig


def _package(root: Path) -> None:
    (root / "tinyd_1.2-3.dsc").write_text("Version: 1.2-3\n")
    src = root / "tinyd-1.2" / "src"
    src.mkdir(parents=True)
    (src / "main.c").write_text(
        "static void run(void)\n{\n"
        '    syslog(LOG_ERR, "cannot bind listener to %s: %m", addr);\n'
        '    log_warn("upstream %s answered slowly", name);\n'
        '    log_debug("entering state %d now", s);\n'  # debug output: dropped
        '    g_warning("net.tinyd.Error.Busy");\n'  # an identifier alone: not a message
        '    report_stats("served %u clients today", n);\n'
        '    memcpy(buf, "not a log call at all", 21);\n'  # not a log call: not read
        '    syslog(LOG_INFO, "Relay access denied");\n'  # a labelled template's text
        "}\n"
    )
    (root / "tinyd-1.2" / "tests").mkdir()
    (root / "tinyd-1.2" / "tests" / "t.c").write_text(
        'void t(void) { log_err("test only text here"); }\n')


def test_a_package_gives_its_log_messages_unlabelled_without_labelled_text(tmp_path: Path) -> None:
    _package(tmp_path)
    rows = pool.harvest_pool(tmp_path, "tinyd", "tinyd", labelled={"Relay access denied"})
    assert {r["template"]: r["level"] for r in rows} == {
        "cannot bind listener to %s: %m": "error",
        "upstream %s answered slowly": "warning",
        "served %u clients today": "info",
    }
    assert all(set(r) == {"source", "package", "origin", "template", "level"} for r in rows)
    assert rows[0]["package"] == "tinyd 1.2-3" and rows[0]["origin"] == "src/main.c:3"


def test_the_cap_keeps_the_same_messages_on_every_run(tmp_path: Path) -> None:
    _package(tmp_path)
    first = pool.harvest_pool(tmp_path, "tinyd", "tinyd", set(), per_source=2)
    again = pool.harvest_pool(tmp_path, "tinyd", "tinyd", set(), per_source=2)
    assert len(first) == 2 and first == again


def test_the_shipped_pool_is_unlabelled_real_text_apart_from_the_labelled_sources() -> None:
    rows = [json.loads(line) for path in sorted((realtext.DATA / "pool").glob("*.jsonl"))
            for line in path.read_text().splitlines()]
    assert len(rows) > 5000
    assert all("label" not in r for r in rows)
    assert not {r["source"] for r in rows} & set(realtext.sources())
    assert not {r["template"] for r in rows} & {t.template for t in realtext.load_templates()}
    lines = realtext.pool_lines(random.Random(1))
    assert len(lines) == len(rows) and lines == realtext.pool_lines(random.Random(1))
    # values filled in (two messages quote a format themselves: 'does not contain "%s"')
    assert sum("%s" in line or "%d" in line for line in lines) <= 2


def test_teachers_may_read_more_than_the_student_and_teach_the_pool() -> None:
    small = TrainConfig(hidden1=16, hidden2=16, epochs=2, min_steps=0, head_epochs=3,
                        progress=False)
    featurizer = Featurizer(default_spec())
    wide = teacher_featurizer(featurizer, ["a line"], MixConfig(teacher_buckets=8192))
    assert wide.width == 8192
    real = [(e.text, e.label, "test") for e in generate(300, 9)]
    mix = MixConfig(corpus_lines=200, real_share=0.5, teachers=2)
    plain = train_distilled(real, featurizer, mix, small)
    pooled = train_distilled(real, featurizer, replace(mix, pool_share=0.2), small)
    again = train_distilled(real, featurizer, replace(mix, pool_share=0.2), small, jobs=2)
    assert np.array_equal(pooled.head_w, again.head_w)  # same bytes in any process
    assert not np.array_equal(plain.head_w, pooled.head_w)
    assert pooled.body.w1_q.shape == plain.body.w1_q.shape  # the student keeps its size
    assert pooled.head_w.shape[0] == len(LABELS)


def test_the_benchmark_measures_a_named_recipe_variant_and_refuses_unknown_fields() -> None:
    from benchmarks.model_real import main, mix_variant

    assert mix_variant(["seed=10", "pool_share=0.2"]) == {"seed": 10, "pool_share": 0.2}
    for bad in (["pool=0.2"], ["seed=ten"]):
        try:
            mix_variant(bad)
        except ValueError as exc:
            assert bad[0] in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
    try:
        main(["--folds", "8", "--write", "--mix", "seed=3"])
    except SystemExit as exc:
        assert exc.code == 2  # a variant's figures never overwrite the shipped recipe's
    else:
        raise AssertionError("--write with --mix was accepted")


def test_the_benchmark_measures_a_trainer_variant_and_never_writes_it() -> None:
    from benchmarks.model_real import main, mix_variant
    from nanomodel.train import TrainConfig

    assert mix_variant(["average_epochs=15", "lr=0.001"], TrainConfig, "--train") == \
        {"average_epochs": 15, "lr": 0.001}
    try:
        mix_variant(["normal_bias=1"], TrainConfig, "--train")
    except ValueError as exc:
        assert "--train normal_bias=1" in str(exc) and "TrainConfig" in str(exc)
    else:
        raise AssertionError("a MixConfig field was taken for a TrainConfig one")
    try:
        main(["--folds", "8", "--write", "--train", "average_epochs=15"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("--write with --train was accepted")
