"""Delta sizes: our format against bsdiff4, zstd --patch-from and xdelta3.

    python benchmarks/delta_size.py [--source real|synthetic|large] [--level 19]

Three updates of a model bundle: (a) a head-only fine-tune, (b) a full
fine-tune, (c) a re-quantization. ``real`` (default) trains them with
:mod:`nanomodel` from the shipped default bundle on new lines; ``synthetic``
uses :mod:`benchmarks.synthetic_bundles` (same shapes, no training); ``large``
the synthetic model at 16 MiB. For each tool: delta size, create time, apply
time and the applying process's peak RSS (each apply runs in its own process;
Python tools include the interpreter with numpy and zstandard: see the baseline). Prints a human
summary, then one JSON line (the last line).

Targets (issue 4): head-only delta <= 5 % of the full bundle; ours never more
than 10 % larger than the best generic tool.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

KINDS = ("head_only", "full", "requant")
ZSTD_ARGS = ["--long=27", "-T1", "-q", "-f"]


def real_bundles(kinds: tuple[str, ...] = KINDS) -> dict[str, bytes]:
    """v1 = the shipped default bundle; v2 = trained from it on new lines (nanomodel)."""
    import numpy as np

    from contract.bundle import read_bundle
    from nanomodel import default_bundle_path
    from nanomodel.build_default import evaluate
    from nanomodel.corpus import default_splits
    from nanomodel.network import QuantizedBody, ShippedModel
    from nanomodel.pack import build_bundle, shipped_model
    from nanomodel.train import TrainConfig, fit

    base_bytes = default_bundle_path().read_bytes()
    manifest = read_bundle(base_bytes).manifest
    base = shipped_model(read_bundle(base_bytes))
    labels = manifest.labels
    splits = default_splits(seed=101, train_size=6000, test_size=1500)
    train = splits["train"] + splits["test_heldout_styles"]  # new lines, some in new formats
    texts = [e.text for e in train]
    y = np.array([labels.index(e.label) for e in train], dtype=np.int64)
    from nanomodel.features import Featurizer

    featurizer = Featurizer(manifest.tokenizer)
    out = {"base": base_bytes}
    for kind in kinds:
        if kind == "head_only":
            model = fit(featurizer, texts, y, labels, manifest.normal_label,
                        TrainConfig(progress=False, seed=1), base=base, head_only=True)
        elif kind == "full":
            model = fit(featurizer, texts, y, labels, manifest.normal_label,
                        TrainConfig(progress=False, seed=1, epochs=2), base=base)
        else:  # re-calibrated quantization: clip at the 99.9th percentile instead of the max
            b = base.body
            w1, w2 = b.dequantized()
            q1, s1 = _percentile_quantize(w1)
            q2, s2 = _percentile_quantize(w2)
            model = ShippedModel(QuantizedBody(q1, s1, b.b1, q2, s2, b.b2), base.head_w,
                                 base.head_b, base.anomaly_mask)
        ours, baseline = evaluate(model, featurizer, splits["test_seen_styles"], labels,
                                  manifest.normal_label)
        out[kind] = build_bundle(
            model, spec=manifest.tokenizer, labels=labels, normal_label=manifest.normal_label,
            name=manifest.name, slot=manifest.slot, version=manifest.version + 1,
            version_label=f"{kind}-2", golden_texts=[g.text for g in manifest.golden],
            evaluation={"test_seen_styles.macro_f1": ours,
                        "test_seen_styles.keyword_baseline_macro_f1": baseline})
    return out


def _percentile_quantize(w):  # type: ignore[no-untyped-def]
    import numpy as np

    scale = np.float32(float(np.percentile(np.abs(w), 99.9)) / 127.0)
    return np.clip(np.rint(w / scale), -127, 127).astype(np.int8), scale


def synthetic_bundles(large: bool) -> dict[str, bytes]:
    from benchmarks import synthetic_bundles as synth

    model = synth.make_model(seed=0, **({"buckets": 65536, "embed": 128} if large else {}))
    return {"base": synth.pack(model), "head_only": synth.pack(synth.head_only(model)),
            "full": synth.pack(synth.full_fine_tune(model)),
            "requant": synth.pack(synth.requantize(model))}


# --- tools: create in this process (or a CLI), apply in a child process ----------------

def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def create_ours(a: Path, b: Path, d: Path, level: int) -> None:
    from fleet_server.deltas import build_delta

    d.write_bytes(build_delta(a.read_bytes(), b.read_bytes(), level))


def create_bsdiff(a: Path, b: Path, d: Path, level: int) -> None:
    import bsdiff4

    d.write_bytes(bsdiff4.diff(a.read_bytes(), b.read_bytes()))


def create_zstd(a: Path, b: Path, d: Path, level: int) -> None:
    _run(["zstd", f"-{level}", *ZSTD_ARGS, "--patch-from", str(a), str(b), "-o", str(d)])


def create_xdelta(a: Path, b: Path, d: Path, level: int) -> None:
    _run(["xdelta3", "-9", "-e", "-f", "-s", str(a), str(b), str(d)])


CREATE: dict[str, Callable[[Path, Path, Path, int], None]] = {
    "nanofleet": create_ours, "bsdiff4": create_bsdiff, "zstd --patch-from": create_zstd,
    "xdelta3": create_xdelta}
CLI = {"zstd --patch-from": "zstd", "xdelta3": "xdelta3"}


def apply_child(tool: str, a: Path, d: Path, out: Path, expected: str) -> None:
    """Runs in the child process: apply one delta (timed from inside, imports excluded)."""
    import bsdiff4

    from contract.delta import apply_delta

    start = time.perf_counter()
    if tool == "nanofleet":
        apply_delta(a, d, out, expected, 1 << 30)
    elif tool == "bsdiff4":
        bsdiff4.file_patch(str(a), str(out), str(d))
    print(json.dumps({"seconds": time.perf_counter() - start}))


def apply_measured(tool: str, a: Path, d: Path, out: Path,
                   expected: str) -> tuple[float, float | None]:
    """(apply seconds, peak RSS MB of the applying process, None without GNU time).

    The peak comes from GNU time's wait4: measuring from this process would not
    do, as a child's ru_maxrss starts from its parent's RSS at fork/exec."""
    if tool in CLI:
        cmd = (["zstd", "-d", *ZSTD_ARGS, "--patch-from", str(a), str(d), "-o", str(out)]
               if tool == "zstd --patch-from" else
               ["xdelta3", "-d", "-f", "-s", str(a), str(d), str(out)])
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--apply-child", tool, str(a),
               str(d), str(out), expected]
    timer = shutil.which("time", path="/usr/bin:/bin")
    with tempfile.NamedTemporaryFile("r") as rss_file:
        if timer:
            cmd = [timer, "-f", "%M", "-o", rss_file.name, *cmd]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, env={**os.environ,
                                                            "PYTHONPATH": str(ROOT)})
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{tool}: apply failed: {proc.stderr.decode()[-500:]}")
        rss = int(rss_file.read().split()[-1]) / 1024 if timer else None  # KiB -> MiB
    if tool not in CLI:
        elapsed = json.loads(proc.stdout.decode().strip().splitlines()[-1])["seconds"]
    return elapsed, rss


def measure_case(old: bytes, new: bytes, tools: list[str], level: int,
                 work: Path) -> dict[str, dict[str, float]]:
    a, b = work / "a.nfb", work / "b.nfb"
    a.write_bytes(old)
    b.write_bytes(new)
    expected = hashlib.sha256(new).hexdigest()
    results: dict[str, dict[str, float]] = {}
    for tool in tools:
        d, out = work / "delta", work / "out.nfb"
        start = time.perf_counter()
        CREATE[tool](a, b, d, level)
        created = time.perf_counter() - start
        applied, rss = apply_measured(tool, a, d, out, expected)
        if hashlib.sha256(out.read_bytes()).hexdigest() != expected:
            raise RuntimeError(f"{tool}: rebuilt bundle differs")
        size = d.stat().st_size
        results[tool] = {"bytes": size, "fraction": size / len(new), "create_s": created,
                         "apply_s": applied}
        if rss is not None:
            results[tool]["apply_peak_rss_mb"] = rss
        out.unlink()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=["real", "synthetic", "large"], default="real")
    parser.add_argument("--level", type=int, default=19, help="zstd level for every tool")
    parser.add_argument("--apply-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.apply_child:
        tool, a, d, out, expected = args.apply_child
        apply_child(tool, Path(a), Path(d), Path(out), expected)
        return 0

    notes = []
    if not shutil.which("time", path="/usr/bin:/bin"):
        notes.append("GNU time (/usr/bin/time) not installed: peak RSS not measured")
    tools = ["nanofleet", "bsdiff4"]
    for tool, exe in CLI.items():
        if shutil.which(exe):
            tools.append(tool)
        else:
            notes.append(f"{tool}: `{exe}` not installed, column skipped")
    source = args.source
    if source == "real":
        try:
            bundles = real_bundles()
        except (ImportError, AttributeError, TypeError) as exc:  # nanomodel's API moved
            notes.append(f"nanomodel training unavailable ({exc}); synthetic bundles used")
            source, bundles = "synthetic", synthetic_bundles(False)
    else:
        bundles = synthetic_bundles(source == "large")

    report: dict[str, object] = {"benchmark": "delta_size", "source": source,
                                 "level": args.level, "full_bundle_bytes":
                                 len(bundles["base"]), "notes": notes, "cases": {}}
    cases: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="delta-bench-") as tmp:
        work = Path(tmp)
        a = work / "a.nfb"
        a.write_bytes(bundles["base"])
        _, baseline_rss = apply_measured("baseline", a, a, work / "x", "")
        report["python_baseline_rss_mb"] = baseline_rss
        for kind in KINDS:
            results = measure_case(bundles["base"], bundles[kind], tools, args.level, work)
            generic = [r["bytes"] for t, r in results.items() if t != "nanofleet"]
            ratio = results["nanofleet"]["bytes"] / min(generic)
            cases[kind] = {"full_bytes": len(bundles[kind]), "tools": results,
                           "ours_vs_best_generic": ratio}
    report["cases"] = cases
    head = cases["head_only"]
    assert isinstance(head, dict)
    report["targets"] = {
        "head_only_le_5pct": head["tools"]["nanofleet"]["fraction"] <= 0.05,
        "never_over_110pct_of_best_generic": all(
            c["ours_vs_best_generic"] <= 1.10 for c in cases.values()  # type: ignore[index]
        ),
    }
    print_summary(report)
    print(json.dumps(report, sort_keys=True))
    return 0


def print_summary(report: dict) -> None:  # type: ignore[type-arg]
    print(f"delta sizes ({report['source']} bundles, {report['full_bundle_bytes']} bytes, "
          f"zstd level {report['level']})")
    for note in report["notes"]:
        print(f"  note: {note}")
    if report["python_baseline_rss_mb"] is not None:
        print(f"  Python tools' RSS includes the interpreter: baseline "
              f"{report['python_baseline_rss_mb']:.1f} MB (python + numpy + zstandard)")
    for kind, case in report["cases"].items():
        print(f"\n({kind}) full bundle {case['full_bytes']} bytes; ours / best generic = "
              f"{case['ours_vs_best_generic']:.3f}")
        print(f"  {'tool':<18}{'bytes':>10}{'% full':>9}{'create s':>10}{'apply s':>9}"
              f"{'peak RSS MB':>13}")
        for tool, r in case["tools"].items():
            rss = r.get("apply_peak_rss_mb")
            print(f"  {tool:<18}{r['bytes']:>10}{100 * r['fraction']:>8.2f}%"
                  f"{r['create_s']:>10.2f}{r['apply_s']:>9.3f}"
                  f"{'-' if rss is None else format(rss, '.1f'):>13}")
    targets = report["targets"]
    print(f"\ntargets: head-only <= 5 %: {'met' if targets['head_only_le_5pct'] else 'MISSED'}; "
          f"never > 10 % over the best generic tool: "
          f"{'met' if targets['never_over_110pct_of_best_generic'] else 'MISSED'}")


if __name__ == "__main__":
    sys.exit(main())
