"""Model versions a scenario (or an OTA test) publishes: real bundles, correctly signed,
some of them deliberately bad. v1 is the shipped default bundle; later good versions are
head-only fine-tunes of it. The bad ones are made to slip past the checks before them and
be caught by the one under test (smoke test, trial health, hash check)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from contract.bundle import file_entry, load_bundle, pack_bundle, read_bundle
from hil.steps import Variant
from nanomodel import default_bundle_path
from nanomodel.corpus import generate
from nanomodel.dataio import LabeledData
from nanomodel.export_onnx import INPUT_NAME
from nanomodel.export_onnx import tensor_ranges as onnx_ranges
from nanomodel.features import Featurizer
from nanomodel.finetune import TrainRequest, train_bundle
from nanomodel.network import ShippedModel, body_forward
from nanomodel.pack import build_bundle, shipped_model
from nanomodel.train import TrainConfig


def v1_bundle() -> bytes:
    """The shipped default bundle, as an operator publishes it first."""
    return default_bundle_path().read_bytes()


def traffic(count: int, seed: int = 11) -> list[str]:
    """Varied realistic lines (every label), as a device would read them."""
    return [e.text for e in generate(count, seed)]


def finetuned(version: int, seed: int = 7, lines: int = 300) -> bytes:
    """A head-only fine-tune of the default model, as an operator makes one: the body
    stays byte-identical, so the delta from v1 is small."""
    examples = generate(lines, seed)
    data = LabeledData([e.text for e in examples], [e.label for e in examples], f"seed{seed}")
    with tempfile.TemporaryDirectory(prefix="hil-train-") as tmp:
        result = train_bundle(TrainRequest(
            data=data, out=Path(tmp) / f"v{version}.nfb", base=default_bundle_path(),
            head_only=True, version=version, mix_corpus=0,
            config=TrainConfig(head_epochs=4, seed=seed, progress=False)))
    return result.bundle


def _rebuild(model: ShippedModel, version: int, golden_texts: list[str] | None = None) -> bytes:
    m = load_bundle(default_bundle_path()).manifest
    return build_bundle(model, spec=m.tokenizer, labels=m.labels, normal_label=m.normal_label,
                        name=m.name, slot=m.slot, version=version, version_label=f"v{version}",
                        golden_texts=golden_texts or [g.text for g in m.golden], evaluation={},
                        formats=sorted(m.runtimes), level_offsets=m.level_offsets)


def wrong_golden(version: int, seed: int = 7) -> bytes:
    """Well-formed and signed, but its golden vectors do not match its own outputs (a
    build/export mix-up a signature cannot catch): the smoke test must refuse it."""
    bundle = read_bundle(finetuned(version, seed))
    golden = [g.model_copy(update={"expected": list(reversed(g.expected))})
              for g in bundle.manifest.golden]
    return pack_bundle(bundle.manifest.model_copy(update={"golden": golden}), bundle.files)


def collapsed(version: int, label: str = "power") -> bytes:
    """Passes its smoke test (its golden vectors are its own outputs) but gives ``label``
    to every line: the trial's collapse check must roll it back."""
    base = load_bundle(default_bundle_path())
    model = shipped_model(base)
    labels = base.manifest.labels
    head_b = np.full(len(labels), -4.0, dtype=np.float32)
    head_b[labels.index(label)] = 8.0
    return _rebuild(ShippedModel(model.body, np.zeros_like(model.head_w), head_b,
                                 model.anomaly_mask), version)


def alert_storm(version: int) -> bytes:
    """Passes its smoke test and spreads its lines over the labels as before, except that
    hardly any line is normal any more: nearly every line flagged, none of the labels 95 %
    of them (no collapse). The trial's flag-rate check must roll it back."""
    base = load_bundle(default_bundle_path())
    model = shipped_model(base)
    head_b = model.head_b.copy()
    # -20: the shipped model is sure of its normal lines (trained to fit since December
    # 2026; -8 left a third of the rig's traffic unflagged, no storm)
    head_b[base.manifest.labels.index(base.manifest.normal_label)] -= 20.0
    return _rebuild(ShippedModel(model.body, model.head_w, head_b, model.anomaly_mask), version)


def swapped(version: int, a: str = "hardware", b: str = "security") -> bytes:
    """v1 with the head's rows of two labels exchanged (a training or export mix-up of the
    output order): every line gets the other label's score. Its golden vectors are its own
    outputs and its flags are v1's, so the smoke test, the collapse and the flag-rate checks
    pass; the trial's swapped-labels check must roll it back."""
    base = load_bundle(default_bundle_path())
    model = shipped_model(base)
    i, j = base.manifest.labels.index(a), base.manifest.labels.index(b)
    order = np.arange(len(base.manifest.labels))
    order[[i, j]] = order[[j, i]]
    return _rebuild(ShippedModel(model.body, model.head_w[order], model.head_b[order],
                                 model.anomaly_mask), version)


def normal_moved(version: int, label: str = "power") -> bytes:
    """v1's weights and golden vectors (so its smoke test passes), but its manifest names
    another label normal (a packaging mix-up): the device's alert policy would flag nearly
    every line. Refused before it goes live (labels-changed)."""
    bundle = read_bundle(_rebuild(shipped_model(load_bundle(default_bundle_path())), version))
    return pack_bundle(bundle.manifest.model_copy(update={"normal_label": label}), bundle.files)


def nan_on_traffic(version: int, seed: int = 11) -> bytes:
    """Finite on its golden vectors, NaN on much of the corpus traffic: a huge head weight
    on a hidden unit that is exactly 0 (ReLU) for every golden line and large on many
    traffic lines. The smoke test passes; the trial's output sanity check must not."""
    base = load_bundle(default_bundle_path())
    model = shipped_model(base)
    featurizer = Featurizer(base.manifest.tokenizer)
    candidates = traffic(300, seed + 1000)
    h_cand = body_forward(model.body, featurizer.transform(candidates))
    h_traffic = body_forward(model.body, featurizer.transform(traffic(200, seed)))
    usable = np.flatnonzero((h_cand == 0.0).sum(axis=0) >= 6)
    if usable.size == 0:
        raise RuntimeError("no hidden unit is silent on enough lines to hide a NaN from the "
                           "smoke test; try another seed")
    unit = int(usable[np.argmax((h_traffic[:, usable] > 1.0).mean(axis=0))])
    if (h_traffic[:, unit] > 1.0).mean() < 0.2:
        raise RuntimeError(f"hidden unit {unit} is large on too few traffic lines for the "
                           "trial to see NaN often; try another seed")
    golden = [candidates[i] for i in np.flatnonzero(h_cand[:, unit] == 0.0)[:6]]
    head_w = model.head_w.copy()
    head_w[:, unit] = np.float32(3e38)
    head_w[0, unit] = np.float32(-3e38)  # +inf and -inf in one softmax: NaN
    return _rebuild(ShippedModel(model.body, head_w, model.head_b, model.anomaly_mask), version,
                    golden)


def memory_hog(version: int, mib_per_line: float, golden_lines: int | None = None,
               trigger: str | None = None) -> bytes:
    """v1's outputs exactly, from a graph that also fills ``mib_per_line`` MiB of zeros per
    line of every batch (an ``Expand`` whose sum, 0, is added to the probabilities): a
    model far bigger in memory than on disk, as an export that materializes a wide
    intermediate is. With ``trigger``, only batches holding a line with that word do
    (a model that blows up on some live input and on none of its smoke test's lines).
    ``golden_lines``: keep this many of v1's golden lines. ONNX only (the device runs it on
    ONNX Runtime)."""
    base = load_bundle(default_bundle_path())
    golden = [g.text for g in base.manifest.golden][:golden_lines or None]
    plain = read_bundle(_rebuild(shipped_model(base), version, golden))
    graph = onnx.load_from_string(plain.files["model.onnx"])
    probs = graph.graph.output[0].name
    for node in graph.graph.node:  # the softmax's output becomes the raw probabilities
        node.output[:] = [o if o != probs else "probs_raw" for o in node.output]
        node.input[:] = [i if i != probs else "probs_raw" for i in node.input]
    width = int(mib_per_line * 1024 * 1024 / 4)
    g = graph.graph
    g.initializer.extend([
        numpy_helper.from_array(np.array([1], dtype=np.int64), "hog.axes"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "hog.one"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "hog.zero")])
    if trigger is None:
        g.initializer.append(numpy_helper.from_array(np.array([width], np.int64), "hog.width"))
    else:  # width = 1 + width * (a line of the batch is the trigger word)
        bucket, level = _trigger_bucket(Featurizer(base.manifest.tokenizer), trigger, golden)
        g.initializer.extend([
            numpy_helper.from_array(np.array([bucket], np.int64), "hog.bucket"),
            numpy_helper.from_array(np.array(level, np.float32), "hog.level"),
            numpy_helper.from_array(np.array([width], np.int64), "hog.wide_width")])
        g.node.extend([
            helper.make_node("Gather", [INPUT_NAME, "hog.bucket"], ["hog.col"], axis=1),
            helper.make_node("ReduceMax", ["hog.col"], ["hog.max"], keepdims=1),
            helper.make_node("Greater", ["hog.max", "hog.level"], ["hog.flag"]),
            helper.make_node("Cast", ["hog.flag"], ["hog.flag_i"], to=TensorProto.INT64),
            helper.make_node("Reshape", ["hog.flag_i", "hog.one"], ["hog.flag_1"]),
            helper.make_node("Mul", ["hog.flag_1", "hog.wide_width"], ["hog.extra"]),
            helper.make_node("Add", ["hog.extra", "hog.one"], ["hog.width"])])
    g.node.extend([
        helper.make_node("Concat", ["hog.one", "hog.width"], ["hog.shape"], axis=0),
        helper.make_node("ReduceSum", [INPUT_NAME, "hog.axes"], ["hog.sum"], keepdims=1),
        helper.make_node("Mul", ["hog.sum", "hog.zero"], ["hog.zeros"]),  # [B, 1] zeros
        helper.make_node("Expand", ["hog.zeros", "hog.shape"], ["hog.wide"]),  # [B, width]
        helper.make_node("ReduceSum", ["hog.wide", "hog.axes"], ["hog.nothing"], keepdims=1),
        helper.make_node("Add", ["probs_raw", "hog.nothing"], [probs])])
    data = graph.SerializeToString()
    manifest = plain.manifest.model_copy(update={
        "files": [file_entry("model.onnx", data, onnx_ranges(data))],
        "runtimes": {"onnx": "model.onnx"}})
    return pack_bundle(manifest, {"model.onnx": data})


def _trigger_bucket(featurizer: Featurizer, trigger: str,
                    quiet: list[str]) -> tuple[int, float]:
    """A feature bucket and a level that a line of the word ``trigger`` alone exceeds and
    no line of ``quiet`` nor of the corpus traffic does (every bucket is set by some line:
    a short line weighs each of its few n-grams more)."""
    alone = featurizer.transform([trigger])[0]
    others = featurizer.transform(quiet + traffic(400)).max(axis=0)
    margin = np.where(alone > 0, alone - others, -1.0)
    bucket = int(margin.argmax())
    if margin[bucket] <= 0.05:
        raise ValueError(f"{trigger!r} alone does not stand out in any bucket: another word")
    return bucket, float((alone[bucket] + others[bucket]) / 2)


def build_variant(variant: Variant, version: int, seed: int) -> bytes:
    """The bundle a publish step uploads (``tampered`` is a good bundle: the rig alters
    the stored artifacts after signing)."""
    if variant in ("finetune", "tampered"):
        return finetuned(version, seed)
    if variant == "wrong_golden":
        return wrong_golden(version, seed)
    if variant == "nan":
        return nan_on_traffic(version)
    if variant == "swapped":
        return swapped(version)
    return collapsed(version)


def tamper_stored_artifacts(repo_path: Path, model: str, version: int) -> list[Path]:
    """Flip one byte in the middle of every stored artifact of ``version`` (full bundle
    and deltas), as a compromised mirror or a bad disk would: the signed metadata still
    names the original hashes."""
    directory = repo_path / "targets" / "models" / model / str(version)
    changed = []
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        changed.append(path)
    if not changed:
        raise RuntimeError(f"no stored artifacts of {model} v{version} under {directory}")
    return changed
