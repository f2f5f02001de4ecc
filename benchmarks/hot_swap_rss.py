"""RSS over many hot-swaps: does swapping models leak memory?

    python benchmarks/hot_swap_rss.py [--swaps 100] [--runtime onnxruntime|litert]

Each swap is what the OTA engine does on an update: load the other bundle
(v1 <-> a head-only fine-tune v2) with ``LoadedModel.load``, run its smoke test,
``ModelSlot.swap`` it in while a traffic thread keeps classifying batches through
the slot, then release the old model. Strategies, each in a fresh process:

- ``engine``: the agent's way — its session options (agent/runtime/onnx.py), ``close()``,
  ``gc.collect()``, then ``malloc_trim(0)`` (:func:`agent.ota.trial.release_model`);
- ``no-trim``: the same without ``malloc_trim``;
- ``ort-default``: plain ``onnxruntime.InferenceSession`` with default options
  (CPU memory arena on), dropped after each swap — the naive way.

Prints RSS after the first swap and after the last, the ratio (target: <= 1.1),
then one JSON line (the last line).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STRATEGIES = ("engine", "no-trim", "ort-default")
TARGET_RATIO = 1.1


class _OrtDefault:
    """A model on a default-options ONNX Runtime session (arena on): the naive baseline."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        from contract.bundle import load_bundle
        from nanomodel.features import Featurizer

        bundle = load_bundle(path)
        self.manifest = bundle.manifest
        self.runtime_name = "onnxruntime-default"
        self.bundle_sha256 = bundle.sha256
        self._featurizer = Featurizer(bundle.manifest.tokenizer)
        self._session: Any = ort.InferenceSession(bundle.model_bytes("onnx"),
                                                  providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def classify(self, texts: list[str]) -> Any:
        x = self._featurizer.transform(texts)
        with self._lock:
            return self._session.run(None, {self._session.get_inputs()[0].name: x})

    def smoke_test(self) -> None:
        self.classify([g.text for g in self.manifest.golden])

    def close(self) -> None:
        with self._lock:
            self._session = None


def run_strategy(strategy: str, bundles: list[Path], swaps: int, runtime: str) -> dict[str, Any]:
    """Swap ``swaps`` times in this process; return RSS figures (bytes)."""
    import psutil

    from agent.model import LoadedModel
    from agent.model_slot import ModelSlot
    from agent.ota.trial import release_model
    from nanomodel.corpus import generate

    def load(path: Path) -> Any:
        if strategy == "ort-default":
            return _OrtDefault(path)
        return LoadedModel.load(path, runtime, 1)

    def release(model: Any) -> None:
        if strategy == "engine":
            release_model(model)
        else:
            model.close()
            gc.collect()

    proc = psutil.Process()
    lines = [e.text for e in generate(256, 5)]
    first = load(bundles[0])
    first.smoke_test()
    slot = ModelSlot("bench", first)
    stop = threading.Event()
    batches = 0

    def traffic() -> None:  # the pipeline: takes the model once per batch
        nonlocal batches
        i = 0
        while not stop.is_set():
            slot.current().classify(lines[i % 240:i % 240 + 16])
            i += 16
            batches += 1

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    rss: list[int] = []
    t0 = time.perf_counter()
    for n in range(swaps):
        new = load(bundles[(n + 1) % len(bundles)])
        new.smoke_test()
        old = slot.swap(new)
        release(old)
        rss.append(proc.memory_info().rss)
    elapsed = time.perf_counter() - t0
    stop.set()
    worker.join()
    marks = {str(k): rss[k - 1] for k in (1, 10, 25, 50, swaps) if k <= swaps}
    return {"strategy": strategy, "runtime": runtime if strategy != "ort-default" else
            "onnxruntime", "swaps": swaps, "rss_first": rss[0], "rss_last": rss[-1],
            "ratio": round(rss[-1] / rss[0], 4), "rss_peak": max(rss), "rss_at": marks,
            "ms_per_swap": round(1000 * elapsed / swaps, 2), "traffic_batches": batches}


def build_bundles(out: Path) -> list[Path]:
    from nanomodel import default_bundle_path
    from nanomodel.corpus import generate
    from nanomodel.dataio import LabeledData
    from nanomodel.finetune import TrainRequest, train_bundle
    from nanomodel.train import TrainConfig

    examples = generate(300, 7)
    data = LabeledData([e.text for e in examples], [e.label for e in examples], "bench")
    v2 = out / "v2.nfb"
    train_bundle(TrainRequest(data=data, out=v2, base=default_bundle_path(), head_only=True,
                              version=2, mix_corpus=0,
                              config=TrainConfig(head_epochs=4, progress=False)))
    return [default_bundle_path(), v2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swaps", type=int, default=100)
    parser.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "litert"])
    parser.add_argument("--strategy", choices=STRATEGIES, help=argparse.SUPPRESS)
    parser.add_argument("--bundles", nargs="+", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.strategy:  # child process: one strategy, result as JSON
        print(json.dumps(run_strategy(args.strategy, args.bundles, args.swaps, args.runtime)))
        return 0
    with tempfile.TemporaryDirectory(prefix="nanofleet-rss-") as tmp:
        bundles = build_bundles(Path(tmp))
        results = []
        strategies = STRATEGIES if args.runtime == "onnxruntime" else ("engine", "no-trim")
        for strategy in strategies:
            out = subprocess.run(
                [sys.executable, __file__, "--strategy", strategy, "--swaps", str(args.swaps),
                 "--runtime", args.runtime, "--bundles", *map(str, bundles)],
                check=True, capture_output=True, text=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"RSS over {args.swaps} hot-swaps (v1 <-> v2, traffic running), target last/first "
          f"<= {TARGET_RATIO}")
    print(f"  {'strategy':<13}{'runtime':<13}{'first MB':>9}{'last MB':>9}{'peak MB':>9}"
          f"{'ratio':>7}{'ms/swap':>9}")
    for r in results:
        print(f"  {r['strategy']:<13}{r['runtime']:<13}{r['rss_first'] / 1e6:>9.1f}"
              f"{r['rss_last'] / 1e6:>9.1f}{r['rss_peak'] / 1e6:>9.1f}{r['ratio']:>7.3f}"
              f"{r['ms_per_swap']:>9.1f}")
    engine = next(r for r in results if r["strategy"] == "engine")
    met = engine["ratio"] <= TARGET_RATIO
    print(f"target (engine strategy): {'met' if met else 'MISSED'}")
    print(json.dumps({"benchmark": "hot_swap_rss", "swaps": args.swaps, "results": results,
                      "target_ratio": TARGET_RATIO, "target_met": met}))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
