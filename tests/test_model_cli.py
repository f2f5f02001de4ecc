"""``nanofleet model train|eval|inspect`` on good and bad data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.model import LoadedModel
from contract.bundle import load_bundle
from nanomodel import default_bundle_path
from nanomodel.cli import main
from nanomodel.corpus import HELDOUT_STYLES, generate, inverter_lines, write_jsonl


def _inverter_csv(path: Path, seed: int) -> Path:
    rows = ["text,label"] + [f'"{e.text.replace(chr(34), chr(34) * 2)}",{e.label}'
                             for e in inverter_lines(250, seed)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    write_jsonl(d / "train.jsonl", generate(3000, 31))
    write_jsonl(d / "heldout.jsonl", generate(400, 32, HELDOUT_STYLES))
    write_jsonl(d / "inverter.jsonl", inverter_lines(250, 33))
    _inverter_csv(d / "inverter.csv", 34)
    return d


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_full_training_then_eval_and_inspect(data_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine.nfb"
    code, stdout, stderr = _run(capsys, "model", "train", "--data",
                                str(data_dir / "train.jsonl"), "--out", str(out),
                                "--name", "site-logs", "--version", "3", "--eval-data",
                                str(data_dir / "heldout.jsonl"))
    assert code == 0, stderr
    # not a terminal: one line per epoch, no carriage-return frames; min-steps top-up
    assert "epoch 25/25: " in stderr and "loss" in stderr and "\r" not in stderr
    assert f"wrote {out}" in stdout and "version 3" in stdout
    manifest = load_bundle(out).manifest
    assert manifest.name == "site-logs" and manifest.version == 3
    assert manifest.labels[0] == "normal" and manifest.evaluation["eval.macro_f1"] > 0.8
    LoadedModel.load(out, "litert").smoke_test()

    code, stdout, _ = _run(capsys, "model", "eval", "--data", str(data_dir / "heldout.jsonl"),
                           "--bundle", str(out), "--json")
    assert code == 0
    report = json.loads(stdout)
    assert report["lines"] == 400 and report["runtime"] == "onnxruntime"
    assert report["model_scores"]["macro_f1"] > report["keyword_baseline"]["macro_f1"]
    assert {c["label"] for c in report["model_scores"]["per_class"]} >= {"normal", "power"}
    assert report["throughput"]["lines_per_s"] > 0 and report["single_line"]["p99_ms"] > 0

    code, stdout, _ = _run(capsys, "model", "eval", "--data", str(data_dir / "heldout.jsonl"),
                           "--bundle", str(out), "--runtime", "litert", "--no-timing")
    assert code == 0
    assert "keyword baseline: macro-F1" in stdout and "precision" in stdout
    assert "runtime litert" in stdout

    code, stdout, _ = _run(capsys, "model", "inspect", str(out))
    assert code == 0
    for expected in ("site-logs", "version 3", "hashed-ngrams-v1", "model.tflite",
                     "body.embed.weight", "eval.macro_f1", "golden",
                     # trained from scratch: no calibration of levels of its own
                     "levels     (none: the agent's defaults)",
                     # ... and it has read only its own lines' programs
                     "programs   ",
                     "needs      known_programs, tokenizer.head:time-host-v1 ("):
        assert expected in stdout
    from nanomodel.known_programs import programs_named

    own = sorted(programs_named(json.loads(line)["text"] for line in
                                (data_dir / "train.jsonl").read_text().splitlines()))
    assert load_bundle(out).manifest.known_programs == own
    code, stdout, _ = _run(capsys, "model", "inspect", str(out), "--json")
    assert json.loads(stdout)["manifest"]["name"] == "site-logs"


def test_head_only_from_csv_with_own_labels(data_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    f1 = []
    for seed, data in ((34, data_dir / "inverter.csv"),
                       (35, _inverter_csv(tmp_path / "inv35.csv", 35)),
                       (36, _inverter_csv(tmp_path / "inv36.csv", 36))):
        out = tmp_path / f"inv{seed}.nfb"
        code, stdout, stderr = _run(capsys, "model", "train", "--data", str(data),
                                    "--out", str(out), "--base", str(default_bundle_path()),
                                    "--head-only", "--labels", "normal,power", "thermal",
                                    "hardware", "--quiet", "--json")
        assert code == 0, stderr
        summary = json.loads(stdout)
        assert summary["labels"] == ["normal", "power", "thermal", "hardware"]
        assert summary["head_only"] and summary["version"] == 2
        assert stderr == ""  # --quiet: no progress bars
        f1.append(summary["evaluation"]["train.macro_f1"])
    # A fine-tune keeps its base's level offsets (and so needs agents that read them).
    assert load_bundle(out).manifest.level_offsets == load_bundle(
        default_bundle_path()).manifest.level_offsets is not None
    code, stdout, _ = _run(capsys, "model", "inspect", str(out))
    assert "levels     emerg +3.79, alert +3.79, crit +3.79, err +2.37" in stdout
    assert "needs      known_programs, level_offsets, tokenizer.head:time-host-v1 (agents" \
        in stdout
    # The frozen body decides how well a head alone separates a format it never saw, and one
    # draw of 250 lines says little: on three draws 0.875 / 0.961 / 1.0 with rule 6's body,
    # 0.927 / 0.937 / 0.973 with the body before it, 0.965-1.0 with the bodies of five other
    # builds on the first (docs/model.md "Heads dropped"); a full fine-tune scores 1.0.
    assert sum(f1) / len(f1) > 0.92 and min(f1) > 0.85, f1


def _bad(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


GOOD_LINES = '{"text": "eth0: link down", "label": "network"}\n' \
             '{"text": "Started agent.service.", "label": "normal"}\n'


@pytest.mark.parametrize("name, content, message", [
    ("empty.jsonl", "", "is empty: no labeled lines"),
    ("blank.csv", "\n\n  \n", "is empty"),
    ("header-only.csv", "text,label\n", "has no labeled lines"),
    ("columns.csv", "message,category\nlink down,network\n",
     "unknown columns ['category', 'message']"),
    ("extra.csv", "text,label,source\nx,normal,a\n", "unknown columns ['source']"),
    ("single.jsonl", '{"text": "a", "label": "normal"}\n{"text": "b", "label": "normal"}\n',
     "every line has the label 'normal'"),
    ("broken.jsonl", GOOD_LINES + '{"text": "half\n' + GOOD_LINES + "[1, 2]\n",
     "2 unreadable line(s)"),
    ("fields.jsonl", GOOD_LINES + '{"txt": "x", "label": "normal"}\n',
     "fields.jsonl:3: unknown fields ['txt'], missing fields ['text']"),
    ("types.jsonl", GOOD_LINES + '{"text": 5, "label": "normal"}\n{"text": "x", "label": ""}\n',
     "types.jsonl:3: 'text' must be a string"),
    ("latin1.csv", "text,label\nok,normal\n\xfcber,power\n".encode("latin-1"),
     "latin1.csv:3: not UTF-8 text"),
    ("ragged.csv", "text,label\na,normal\nb,power,extra\n", "ragged.csv:3: 3 fields, expected 2"),
])
def test_bad_training_data_is_named_with_line_numbers(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | bytes,
        message: str) -> None:
    path = _bad(tmp_path, name, content)
    code, _, stderr = _run(capsys, "model", "train", "--data", str(path), "--out",
                                str(tmp_path / "x.nfb"), "--quiet")
    assert code == 2
    assert stderr.startswith("error: ") and message in stderr, stderr
    assert not (tmp_path / "x.nfb").exists()


def test_broken_jsonl_lists_each_bad_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = _bad(tmp_path, "b.jsonl", GOOD_LINES + "nope\n" + GOOD_LINES + "{\n")
    _, _, stderr = _run(capsys, "model", "train", "--data", str(path), "--out",
                        str(tmp_path / "x.nfb"))
    assert f"{path}:3: not valid JSON" in stderr and f"{path}:6: not valid JSON" in stderr


@pytest.mark.parametrize("extra, message", [
    (["--head-only"], "--head-only needs --base"),
    (["--labels", "normal"], "labels ['network'] that are not in --labels"),
    (["--base", "missing.nfb"], "missing.nfb"),
    (["--normal-label", "fine"], "--normal-label 'fine' is not one of the labels"),
    (["--base", "DEFAULT", "--version", "1"], "must be above the base version 1"),
])
def test_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                       message: str) -> None:
    data = _bad(tmp_path, "ok.jsonl", GOOD_LINES * 3)
    extra = [str(default_bundle_path()) if a == "DEFAULT" else a for a in extra]
    code, _, stderr = _run(capsys, "model", "train", "--data", str(data), "--out",
                           str(tmp_path / "x.nfb"), "--quiet", "--epochs", "1", *extra)
    assert code == 2 and message in stderr, stderr


def test_eval_refuses_labels_the_bundle_does_not_have(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = _bad(tmp_path, "e.jsonl", '{"text": "x", "label": "cosmic-rays"}\n')
    code, _, stderr = _run(capsys, "model", "eval", "--data", str(data), "--bundle",
                           str(default_bundle_path()))
    assert code == 2 and "labels ['cosmic-rays'] are not in the bundle's labels" in stderr


def test_inspect_rejects_a_broken_bundle(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.nfb"
    broken.write_bytes(default_bundle_path().read_bytes()[:5000])
    code, _, stderr = _run(capsys, "model", "inspect", str(broken))
    assert code == 2 and ("bad tar container" in stderr or "archive holds" in stderr)


def test_console_script_is_installed() -> None:
    script = shutil.which("nanofleet", path=str(Path(sys.executable).parent))
    assert script is not None
    out = subprocess.run([script, "model", "--help"], capture_output=True, text=True,
                         timeout=60, check=True)
    assert "train" in out.stdout and "inspect" in out.stdout


def test_a_site_fine_tunes_on_its_false_alarms_alone(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Verdicts on alerts are often only false alarms: one class. With a base (and its mix,
    which brings every other class) that is enough to quiet them; without a base it is not."""
    import numpy as np

    from nanomodel.realtext import load_captured, load_samples

    base = LoadedModel.load(default_bundle_path())
    healthy = sorted({c.text for c in load_samples() if c.label == "normal"})
    _, anomaly = base.classify(healthy)
    # the healthy lines the base is most suspicious of, most of them flagged: the shipped
    # model flags 16 different ones of the sample's healthy lines (27 before it dropped
    # lines' heads, 36 before the warning and notice reviews were applied)
    order = np.argsort(-np.asarray(anomaly), kind="stable")[:32]
    suspicious, before = [healthy[i] for i in order], np.asarray(anomaly)[order]
    judged, unseen = suspicious[0::2], suspicious[1::2]
    flagged_unseen = int(np.sum(before[1::2] > 0.5))
    assert np.mean(before[0::2] > 0.5) >= 0.4 and flagged_unseen >= 6
    data = tmp_path / "false-alarms.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": "normal"}) + "\n" for t in judged),
                    encoding="utf-8")
    out = tmp_path / "site.nfb"
    code, said, err = _run(capsys, "model", "train", "--data", str(data), "--out", str(out),
                           "--base", str(default_bundle_path()), "--head-only", "--quiet")
    assert code == 0, err
    # The programs these lines name that the agent would weigh as never read: now read,
    # and the bundle says so (the agent leaves their lines to the model's words).
    from agent.keyword_evidence import KeywordEvidenceConfig, program_of

    base_known = load_bundle(default_bundle_path()).manifest.known_programs
    assert base_known is not None
    taught = sorted({p for p in map(program_of, judged)
                     if p is not None and p not in base_known})
    assert taught and f"now in the bundle's known_programs (the agent leaves their lines to " \
        f"the model's words instead of weighing the keywords in): {', '.join(taught)}" in said
    site = LoadedModel.load(out)
    assert site.manifest.known_programs == sorted({*base_known, *taught})
    keywords = KeywordEvidenceConfig().for_bundle(site.manifest.known_programs)
    assert not any(keywords.unknown(t) for t in judged if program_of(t) in taught)
    _, judged_after = site.classify(judged)
    _, unseen_after = site.classify(unseen)
    assert np.mean(np.asarray(judged_after) > 0.5) < 0.2
    # lines like them that no verdict named are quieter too
    assert np.sum(np.asarray(unseen_after) > 0.5) < 0.8 * flagged_unseen
    # and the real faults of daemons it knew are still alerts
    faults = [c.text for c in load_captured() if c.label != "normal"]
    _, fault_after = site.classify(faults)
    assert np.mean(np.asarray(fault_after) > 0.5) > 0.9
    code, _, err = _run(capsys, "model", "train", "--data", str(data), "--out",
                        str(tmp_path / "alone.nfb"), "--quiet", "--epochs", "1")
    assert code == 2 and "training needs at least two classes" in err


def test_balance_lets_a_few_false_alarms_count_beside_many_right_alerts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Verdicts as a site gives them: a few false alarms and many right alerts. Unbalanced,
    the head barely learns the false alarms; with --balance it quiets lines like them and
    keeps most right alerts."""
    import numpy as np

    from nanomodel.realtext import load_samples

    base = LoadedModel.load(default_bundle_path())
    truth: dict[str, str] = {}
    for c in load_samples():
        truth.setdefault(c.text, c.label)
    texts = sorted(truth)
    _, anomaly = base.classify(texts)
    flagged = [t for t, a in zip(texts, np.asarray(anomaly), strict=True) if a > 0.5]
    false_alarms = [t for t in flagged if truth[t] == "normal"]
    right = [t for t in flagged if truth[t] != "normal"]
    rows = [(t, "normal") for t in false_alarms[0::2]] + [(t, truth[t]) for t in right[0::2]]
    assert len(rows) > 5 * len(false_alarms[0::2])  # mostly right, as verdicts come
    data = tmp_path / "verdicts.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows),
                    encoding="utf-8")

    def flagged_share(*extra: str) -> tuple[float, float]:
        out = tmp_path / f"site{len(extra)}.nfb"
        code, _, err = _run(capsys, "model", "train", "--data", str(data), "--out", str(out),
                            "--base", str(default_bundle_path()), "--head-only", "--quiet",
                            *extra)
        assert code == 0, err
        site = LoadedModel.load(out)
        unseen_fa = np.asarray(site.classify(false_alarms[1::2])[1]) > 0.5
        unseen_right = np.asarray(site.classify(right[1::2])[1]) > 0.5
        return float(unseen_fa.mean()), float(unseen_right.mean())

    plain_fa, plain_right = flagged_share()
    balanced_fa, balanced_right = flagged_share("--balance")
    # Measured (December 2026 model with state lines): 0.56 -> 0.06 of the unseen false
    # alarms flagged, 0.97 -> 0.78 of the right alerts kept (the model before it: 0.69 ->
    # 0.38, above 0.8 kept; the five-epoch model's 0.85 -> 0.31).
    assert balanced_fa < 0.6 * plain_fa and balanced_fa < 0.4
    assert balanced_right > 0.75
