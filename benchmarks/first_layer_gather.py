"""Would a sparse first layer be faster? The dense product against gather-and-sum.

    python benchmarks/first_layer_gather.py [--rounds 3] [--buckets 8192]

The nano model's first layer multiplies the featurizer's dense ``[B, 4096]`` rows by a
``[4096, 64]`` matrix, although a line touches only ~200 buckets. The alternative is an
input of bucket ids and weights ``[B, K]`` (K = the most buckets any line of the batch
touches; shorter lines padded with weight 0), a ``Gather`` of their weight rows and a
weighted sum. This builds both first layers as ONNX graphs with the same random weights,
feeds them the featurizer's output for the same generated lines at batch 64, checks they
agree, and prints µs per line of each in one ONNX Runtime session configured as the
agent configures it (one thread). The sum is done two ways: ``Mul`` + ``ReduceSum`` and
a batched ``MatMul`` of ``[B, 1, K]`` by ``[B, K, 64]``.

Measured here (docs/model.md, "More hash buckets"): the gather is slower, because the
gathered ``[B, K, 64]`` block (~7 MB per batch) is written and read again, while the
dense product runs in cache-friendly blocks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BATCH = 64
HIDDEN = 64


def _session(nodes: list[Any], inputs: list[Any], initializers: list[Any]) -> Any:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from agent.runtime.onnx import session_options

    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, HIDDEN])
    graph = helper.make_graph(nodes, "first_layer", inputs, [out], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return ort.InferenceSession(model.SerializeToString(), sess_options=session_options(1),
                                providers=["CPUExecutionProvider"])


def _sparse(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    width = int((rows != 0).sum(axis=1).max())
    ids = np.zeros((rows.shape[0], width), np.int32)
    weights = np.zeros((rows.shape[0], width), np.float32)
    for i, row in enumerate(rows):
        touched = np.flatnonzero(row)
        ids[i, : touched.size] = touched
        weights[i, : touched.size] = row[touched]
    return ids, weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--buckets", type=int, default=0,
                        help="hash buckets (default: the shipped spec's)")
    args = parser.parse_args(argv)
    from onnx import TensorProto, helper, numpy_helper

    from agent.featurizer import Featurizer, default_spec
    from nanomodel.corpus import STYLES, generate

    spec = default_spec()
    if args.buckets:
        spec = spec.model_copy(update={"buckets": args.buckets})
    featurizer = Featurizer(spec)
    texts = [e.text for e in generate(BATCH * 50, 4711, list(STYLES))]
    dense = [featurizer.transform(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
    sparse = [_sparse(rows) for rows in dense]
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(
        rng.standard_normal((featurizer.width, HIDDEN)).astype(np.float32), "W")
    axis1 = numpy_helper.from_array(np.array([1], np.int64), "axis1")
    axis2 = numpy_helper.from_array(np.array([2], np.int64), "axis2")
    ids_in = helper.make_tensor_value_info("ids", TensorProto.INT32, [None, None])
    weights_in = helper.make_tensor_value_info("w", TensorProto.FLOAT, [None, None])
    sessions = {
        "dense MatMul": _session(
            [helper.make_node("MatMul", ["x", "W"], ["y"])],
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, featurizer.width])],
            [weight]),
        "Gather + batched MatMul": _session(
            [helper.make_node("Gather", ["W", "ids"], ["g"], axis=0),
             helper.make_node("Unsqueeze", ["w", "axis1"], ["w3"]),
             helper.make_node("MatMul", ["w3", "g"], ["y3"]),
             helper.make_node("Squeeze", ["y3", "axis1"], ["y"])],
            [ids_in, weights_in], [weight, axis1]),
        "Gather + Mul + ReduceSum": _session(
            [helper.make_node("Gather", ["W", "ids"], ["g"], axis=0),
             helper.make_node("Unsqueeze", ["w", "axis2"], ["w3"]),
             helper.make_node("Mul", ["w3", "g"], ["y3"]),
             helper.make_node("ReduceSum", ["y3", "axis1"], ["y"], keepdims=0)],
            [ids_in, weights_in], [weight, axis1, axis2]),
    }

    def feeds(name: str) -> list[dict[str, np.ndarray]]:
        if name == "dense MatMul":
            return [{"x": rows} for rows in dense]
        return [{"ids": ids, "w": w} for ids, w in sparse]

    reference = sessions["dense MatMul"].run(None, feeds("dense MatMul")[0])[0]
    for name, session in sessions.items():
        diff = float(np.abs(session.run(None, feeds(name)[0])[0] - reference).max())
        if diff > 1e-4:
            raise SystemExit(f"{name} disagrees with the dense product by {diff}")
    widths = [ids.shape[1] for ids, _ in sparse]
    print(f"batch {BATCH}, {featurizer.width} buckets, padded ids per line: mean "
          f"{np.mean(widths):.0f}, max {max(widths)}")
    for r in range(args.rounds):
        times = {}
        for name, session in sessions.items():
            batches = feeds(name)
            start = time.perf_counter()
            for feed in batches:
                session.run(None, feed)
            times[name] = (time.perf_counter() - start) / len(texts) * 1e6
        base = times["dense MatMul"]
        print(f"round {r + 1}: " + "; ".join(
            f"{name} {us:.2f} us/line ({us / base:.2f}x)" for name, us in times.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
