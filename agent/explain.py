"""Why did the model decide that? The words of a line that drove its anomaly score.

For the nano network (``features -> int8 FC -> ReLU -> int8 FC -> ReLU -> FC ->
softmax``, ``anomaly = mask . probabilities``) the gradient of the anomaly score with
respect to the input features is three small matrix-vector products, done here in
numpy from the weights inside the bundle (read through the manifest's tensor byte
ranges, so no ONNX or TFLite parser is needed). *Gradient x input* gives each hash
bucket's share of the score; each n-gram occurrence of the line passes its bucket's
share (split among the bucket's occurrences) to the words it overlaps. A word with a
positive weight pushed the line towards an alert, a negative one towards normal.

This is a first-order explanation: it says which words the score is most sensitive
to around this line, not what the score would be without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.featurizer import Featurizer
from contract.bundle import Bundle, TensorInfo

_NAMES = {"w1": "body.embed.weight", "s1": "body.embed.scale", "b1": "body.embed.bias",
          "w2": "body.hidden.weight", "s2": "body.hidden.scale", "b2": "body.hidden.bias",
          "wo": "head.weight", "bo": "head.bias", "mask": "head.anomaly_mask"}


_SCALES = ("s1", "s2")


def _tflite_scales(model: bytes) -> tuple[float, float]:
    """The int8 weights' scales of a nano model.tflite, from its quantization parameters
    (a throwaway interpreter: LiteRT or tflite_runtime, whichever is installed)."""
    from agent.runtime.base import RuntimeUnavailable
    from agent.runtime.litert import interpreter_class

    try:
        interpreter = interpreter_class()(model_content=model)
    except (RuntimeUnavailable, ValueError, RuntimeError) as exc:
        raise NotExplainable(f"this model cannot be explained here: {exc}") from None
    scales = {d["name"]: d["quantization"][0] for d in interpreter.get_tensor_details()}
    try:
        return float(scales[_NAMES["w1"]]), float(scales[_NAMES["w2"]])
    except KeyError:
        raise NotExplainable("this model.tflite has no quantized nano weights") from None


class NotExplainable(ValueError):
    """The bundle's model is not the nano network (its tensors are not all there)."""


@dataclass(frozen=True)
class NanoWeights:
    """The network's weights: the first layer kept int8 with its scale (a float32 copy
    would keep 1 MB resident on a device for the life of the model; it is scaled per use),
    the rest in float32 (dequantized as the runtimes do)."""

    w1_q: np.ndarray  # int8 [hidden1, buckets]
    s1: np.float32
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    wo: np.ndarray
    bo: np.ndarray
    mask: np.ndarray  # [K]

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> NanoWeights:
        # model.onnx's ranges carry every tensor, the int8 scales included; model.tflite's
        # carry all but the scales, which sit in the tensors' quantization parameters
        # (read through the interpreter: a LiteRT-only device bundle explains too).
        for fmt in ("onnx", "tflite"):
            path = bundle.manifest.runtimes.get(fmt)
            entry = next((f for f in bundle.manifest.files if f.path == path), None)
            infos = {t.name: t for t in entry.tensors} if entry is not None else {}
            names = {k: n for k, n in _NAMES.items() if fmt == "onnx" or k not in _SCALES}
            if path is None or not all(n in infos for n in names.values()):
                continue
            data = bundle.files[path]
            t = {key: _read(data, infos[name]) for key, name in names.items()}
            s1, s2 = (float(t["s1"].item()), float(t["s2"].item())) if fmt == "onnx" \
                else _tflite_scales(data)
            return cls(w1_q=t["w1"], s1=np.float32(s1), b1=t["b1"],
                       w2=t["w2"].astype(np.float32) * np.float32(s2),
                       b2=t["b2"], wo=t["wo"], bo=t["bo"], mask=t["mask"].reshape(-1))
        raise NotExplainable("this model cannot be explained: explanations need the nano "
                             "network's tensors in the bundle's model.onnx or model.tflite")

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities [B, K], anomaly [B])`` in numpy, as the runtimes compute."""
        probs, anomaly, *_ = _forward(self, x)
        return probs, anomaly

    def log_odds(self, x: np.ndarray) -> np.ndarray:
        """``log(anomaly / (1 - anomaly))`` [B], computed without saturating."""
        return _log_odds(self, x)[0]

    def log_odds_gradient(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(anomaly [B], d log-odds(anomaly) / d features [B, F])``.

        The log-odds rather than the anomaly itself: a confident line has an anomaly
        of 1.0 and a gradient of ~0, its log-odds still say which words made it so."""
        _, anomaly, _, z1, z2 = _forward(self, x)
        _, dz = _log_odds(self, x)
        dh2 = (dz @ self.wo) * (z2 > 0)
        dh1 = (dh2 @ self.w2) * (z1 > 0)
        return anomaly, np.asarray((dh1 @ self.w1_q) * self.s1, dtype=np.float32)


def _read(data: bytes, info: TensorInfo) -> np.ndarray:
    arr = np.frombuffer(data, dtype=np.dtype(info.dtype), count=int(np.prod(info.shape)),
                        offset=info.offset)
    return arr.reshape(info.shape).astype(arr.dtype, copy=True)


def _first_layer(w: NanoWeights, x: np.ndarray) -> np.ndarray:
    # Only the buckets the lines touch contribute: a line has ~230 of 4,096, so the int8
    # weights are widened for those columns only.
    cols = np.flatnonzero(x.any(axis=0))
    return (x[:, cols] @ w.w1_q[:, cols].T.astype(np.float32)) * w.s1 + w.b1


def _log_odds(w: NanoWeights, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Log-odds of the anomaly mass and its gradient w.r.t. the logits [B, K]."""
    z1 = _first_layer(w, x)
    z2 = np.maximum(z1, 0) @ w.w2.T + w.b2
    logits = np.maximum(z2, 0) @ w.wo.T + w.bo
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    alert_mass = e @ w.mask
    normal_mass = e @ (1.0 - w.mask)
    tiny = np.finfo(np.float64).tiny
    odds = np.log(np.maximum(alert_mass, tiny)) - np.log(np.maximum(normal_mass, tiny))
    dz = (e * w.mask / np.maximum(alert_mass, tiny)[:, None]
          - e * (1.0 - w.mask) / np.maximum(normal_mass, tiny)[:, None])
    return odds, dz


def _forward(w: NanoWeights, x: np.ndarray) -> tuple[np.ndarray, ...]:
    z1 = _first_layer(w, x)
    z2 = np.maximum(z1, 0) @ w.w2.T + w.b2
    logits = np.maximum(z2, 0) @ w.wo.T + w.bo
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return p, p @ w.mask, p, z1, z2


def word_weights(featurizer: Featurizer, weights: NanoWeights,
                 text: str) -> tuple[float, list[tuple[str, float]]]:
    """``(anomaly, [(word, weight), ...])`` in line order, one entry per word."""
    x = featurizer.transform([text])
    anomaly, grad = weights.log_odds_gradient(x)
    bucket_share = (grad * x)[0]
    spans, words = featurizer.ngram_spans(text)
    per_word = np.zeros(len(words), np.float64)
    if spans and words:
        span = np.array(spans, dtype=np.int64)  # [S, 3]: bucket, start, end
        buckets = span[:, 0]
        uses = np.bincount(buckets, minlength=featurizer.width)
        starts = np.array([w[1] for w in words])
        ends = np.array([w[2] for w in words])
        # [S, W]: the words each n-gram overlaps; an n-gram's share is split among them.
        hits = (starts[None, :] < span[:, 2:3]) & (ends[None, :] > span[:, 1:2])
        count = hits.sum(axis=1)
        share = np.where(count > 0, bucket_share[buckets] / uses[buckets]
                         / np.maximum(count, 1), 0.0)
        per_word = (share[:, None] * hits).sum(axis=0)
    return float(anomaly[0]), [(w[0], float(v)) for w, v in zip(words, per_word, strict=True)]


def top_words(featurizer: Featurizer, weights: NanoWeights, text: str,
              top: int = 5) -> list[dict[str, float | str]]:
    """The ``top`` words by absolute weight, strongest first, merged per distinct word:
    ``[{"word": "failed", "weight": 0.41}, ...]`` (positive: towards an alert)."""
    _, pairs = word_weights(featurizer, weights, text)
    merged: dict[str, float] = {}
    for word, value in pairs:
        merged[word] = merged.get(word, 0.0) + value
    ranked = sorted(merged.items(), key=lambda kv: -abs(kv[1]))[:top]
    return [{"word": w, "weight": round(v, 4)} for w, v in ranked if abs(v) > 1e-6]


def explain_live(model: object, texts: list[str],
                 top: int = 5) -> list[list[dict[str, float | str]]]:
    """Top words per line from whatever model is live (a :class:`LoadedModel` or an OTA
    trial wrapper); a model that cannot explain is a clear query error (``ValueError``)."""
    explain = getattr(model, "explain", None)
    if explain is None:
        raise ValueError("the live model cannot explain its decisions")
    try:
        result: list[list[dict[str, float | str]]] = explain(texts, top)
    except NotExplainable as exc:
        raise ValueError(str(exc)) from exc
    return result
