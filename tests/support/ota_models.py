"""Real nano-model bundles for OTA tests: v1 is the shipped default bundle, later
versions come from nanomodel's head-only fine-tune (small and fast), and the
broken ones are real bundles that are correctly signed but misbehave."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from contract.bundle import load_bundle, pack_bundle, read_bundle
from nanomodel import default_bundle_path
from nanomodel.corpus import generate
from nanomodel.dataio import LabeledData
from nanomodel.features import Featurizer
from nanomodel.finetune import TrainRequest, train_bundle
from nanomodel.network import ShippedModel, body_forward
from nanomodel.pack import build_bundle, shipped_model
from nanomodel.train import TrainConfig


def v1_bundle() -> bytes:
    return default_bundle_path().read_bytes()


def finetuned(version: int, out_dir: Path, seed: int = 7, lines: int = 300) -> bytes:
    """A head-only fine-tune of the default model: the body stays byte-identical, so the
    delta from v1 is small (as for an operator's real fine-tune)."""
    examples = generate(lines, seed)
    data = LabeledData([e.text for e in examples], [e.label for e in examples], f"seed{seed}")
    result = train_bundle(TrainRequest(
        data=data, out=out_dir / f"v{version}.nfb", base=default_bundle_path(), head_only=True,
        version=version, mix_corpus=0, config=TrainConfig(head_epochs=4, seed=seed,
                                                          progress=False)))
    return result.bundle


def _rebuild(model: ShippedModel, version: int, golden_texts: list[str] | None = None) -> bytes:
    base = load_bundle(default_bundle_path())
    m = base.manifest
    return build_bundle(model, spec=m.tokenizer, labels=m.labels, normal_label=m.normal_label,
                        name=m.name, slot=m.slot, version=version, version_label=f"v{version}",
                        golden_texts=golden_texts or [g.text for g in m.golden], evaluation={},
                        formats=sorted(m.runtimes))


def wrong_golden(version: int, out_dir: Path) -> bytes:
    """Signed and well-formed, but its golden vectors do not match its own outputs: the
    smoke test must fail (a build/export mix-up the signature cannot catch)."""
    bundle = read_bundle(finetuned(version, out_dir))
    golden = [g.model_copy(update={"expected": list(reversed(g.expected))})
              for g in bundle.manifest.golden]
    manifest = bundle.manifest.model_copy(update={"golden": golden})
    return pack_bundle(manifest, bundle.files)


def collapsed(version: int, label: str = "power") -> bytes:
    """Passes its smoke test (its golden vectors are its own outputs) but gives ``label``
    to every line: trial health must catch it."""
    model = shipped_model(load_bundle(default_bundle_path()))
    labels = load_bundle(default_bundle_path()).manifest.labels
    head_b = np.full(len(labels), -4.0, dtype=np.float32)
    head_b[labels.index(label)] = 8.0
    return _rebuild(ShippedModel(model.body, np.zeros_like(model.head_w), head_b,
                                 model.anomaly_mask), version)


def traffic(count: int, seed: int = 11) -> list[str]:
    """Varied realistic lines (every label), as a device would read them."""
    return [e.text for e in generate(count, seed)]


def nan_on_traffic(version: int, seed: int = 11) -> bytes | None:
    """Finite on its golden vectors, NaN on much of the traffic: a huge head weight on a
    hidden unit that is exactly 0 (ReLU) for every golden line (chosen from other
    lines), and large on many traffic lines. None if no unit fits."""
    base = load_bundle(default_bundle_path())
    model = shipped_model(base)
    featurizer = Featurizer(base.manifest.tokenizer)
    candidates = traffic(300, seed + 1000)
    h_cand = body_forward(model.body, featurizer.transform(candidates))
    h_traffic = body_forward(model.body, featurizer.transform(traffic(200, seed)))
    usable = np.flatnonzero((h_cand == 0.0).sum(axis=0) >= 6)
    if usable.size == 0:
        return None
    unit = int(usable[np.argmax((h_traffic[:, usable] > 1.0).mean(axis=0))])
    if (h_traffic[:, unit] > 1.0).mean() < 0.2:
        return None
    golden = [candidates[i] for i in np.flatnonzero(h_cand[:, unit] == 0.0)[:6]]
    head_w = model.head_w.copy()
    head_w[:, unit] = np.float32(3e38)
    head_w[0, unit] = np.float32(-3e38)
    return _rebuild(ShippedModel(model.body, head_w, model.head_b, model.anomaly_mask), version,
                    golden)


def shuffled(lines: list[str], seed: int = 3) -> list[str]:
    out = list(lines)
    random.Random(seed).shuffle(out)
    return out
