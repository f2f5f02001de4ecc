"""Download sizes per runtime: the combined bundle against its runtime variants.

    python benchmarks/variant_size.py [--source real|synthetic] [--level 19]

For the shipped default bundle (v1) and each update of :mod:`benchmarks.delta_size`
(head-only fine-tune, full fine-tune, re-quantization): the full download and the
delta from v1, for the combined bundle (what every device downloaded before runtime
variants, and what old agents still download) and for each runtime's variant
(:func:`contract.bundle.runtime_variant`; the server's own delta builder). Prints a
table, then one JSON line (the last line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.delta_size import KINDS, real_bundles, synthetic_bundles  # noqa: E402
from contract.bundle import runtime_variant  # noqa: E402
from fleet_server.deltas import build_delta  # noqa: E402

VARIANTS = ("combined", "onnx", "tflite")


def variant(data: bytes, which: str) -> bytes:
    return data if which == "combined" else runtime_variant(data, which)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", choices=("real", "synthetic"), default="real")
    ap.add_argument("--level", type=int, default=19)
    args = ap.parse_args()
    bundles = real_bundles() if args.source == "real" else synthetic_bundles(large=False)
    rows: dict[str, dict[str, int]] = {}
    base = bundles["base"]
    rows["full v1"] = {w: len(variant(base, w)) for w in VARIANTS}
    for kind in KINDS:
        new = bundles[kind]
        rows[f"full {kind}"] = {w: len(variant(new, w)) for w in VARIANTS}
        rows[f"delta {kind}"] = {
            w: len(build_delta(variant(base, w), variant(new, w), args.level)) for w in VARIANTS}
    print(f"{'download':<20}" + "".join(f"{w:>12}" for w in VARIANTS) + "   onnx/comb  tflite/comb")
    for name, sizes in rows.items():
        print(f"{name:<20}" + "".join(f"{sizes[w]:>12,d}" for w in VARIANTS)
              + f"   {sizes['onnx'] / sizes['combined']:>9.2f}"
              + f"  {sizes['tflite'] / sizes['combined']:>11.2f}")
    print(json.dumps({"source": args.source, "bytes": rows}, sort_keys=True))


if __name__ == "__main__":
    main()
