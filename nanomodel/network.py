"""The nano network: parameters, int8 quantization and a numpy reference forward pass.

Shape: ``features [B, F] -> embed (int8 [H1, F]) -> ReLU -> hidden (int8 [H2, H1])
-> ReLU -> head (float32 [K, H2]) -> softmax -> probabilities [B, K]``, and
``anomaly [B] = probabilities @ anomaly_mask`` (the probability mass on labels
other than the normal one).

The *body* (embed + hidden) is everything ``--head-only`` fine-tuning keeps
byte-identical; the *head* is small (K x H2 floats), so an update that only
changes the head is a delta of a few kilobytes. Body weights are int8 with one
float32 scale per tensor (symmetric, zero point 0): both ONNX
``DequantizeLinear`` and TFLite ``DEQUANTIZE`` compute ``q * scale`` exactly,
so the two runtimes start from bit-identical float weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Stable tensor names: the delta builder matches tensors across versions by name.
EMBED_W, EMBED_S, EMBED_B = "body.embed.weight", "body.embed.scale", "body.embed.bias"
HIDDEN_W, HIDDEN_S, HIDDEN_B = "body.hidden.weight", "body.hidden.scale", "body.hidden.bias"
HEAD_W, HEAD_B, ANOMALY_MASK = "head.weight", "head.bias", "head.anomaly_mask"
BODY_TENSORS = [EMBED_W, EMBED_S, EMBED_B, HIDDEN_W, HIDDEN_S, HIDDEN_B]
HEAD_TENSORS = [HEAD_W, HEAD_B, ANOMALY_MASK]


@dataclass
class FloatParams:
    """Trainable float32 weights (layers store ``[out, in]``)."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    wo: np.ndarray
    bo: np.ndarray

    def copy(self) -> FloatParams:
        return FloatParams(*(a.copy() for a in (self.w1, self.b1, self.w2, self.b2,
                                                 self.wo, self.bo)))


@dataclass
class QuantizedBody:
    """The frozen, shipped body: int8 weights with per-tensor scales."""

    w1_q: np.ndarray
    w1_scale: np.float32
    b1: np.ndarray
    w2_q: np.ndarray
    w2_scale: np.float32
    b2: np.ndarray

    def dequantized(self) -> tuple[np.ndarray, np.ndarray]:
        return (self.w1_q.astype(np.float32) * self.w1_scale,
                self.w2_q.astype(np.float32) * self.w2_scale)


@dataclass
class ShippedModel:
    """Exactly what goes into the model files."""

    body: QuantizedBody
    head_w: np.ndarray
    head_b: np.ndarray
    anomaly_mask: np.ndarray  # float32 [1, K]

    def tensors(self) -> dict[str, np.ndarray]:
        """Name -> array, body first (file layout order)."""
        b = self.body
        return {
            EMBED_W: b.w1_q, EMBED_S: np.array(b.w1_scale, dtype=np.float32), EMBED_B: b.b1,
            HIDDEN_W: b.w2_q, HIDDEN_S: np.array(b.w2_scale, dtype=np.float32), HIDDEN_B: b.b2,
            HEAD_W: self.head_w, HEAD_B: self.head_b, ANOMALY_MASK: self.anomaly_mask,
        }

    @property
    def input_width(self) -> int:
        return int(self.body.w1_q.shape[1])

    @property
    def num_labels(self) -> int:
        return int(self.head_w.shape[0])


def init_params(rng: np.random.Generator, width: int, h1: int, h2: int, k: int) -> FloatParams:
    """He-style init. Unused hash buckets keep their random columns, which act as
    random features for n-grams first seen during a head-only fine-tune."""
    return FloatParams(
        w1=(rng.standard_normal((h1, width)) * 0.5).astype(np.float32),
        b1=np.zeros(h1, np.float32),
        w2=(rng.standard_normal((h2, h1)) * np.sqrt(2.0 / h1)).astype(np.float32),
        b2=np.zeros(h2, np.float32),
        wo=(rng.standard_normal((k, h2)) * np.sqrt(1.0 / h2)).astype(np.float32),
        bo=np.zeros(k, np.float32),
    )


def quantize_tensor(w: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """Symmetric per-tensor int8: ``w ~ q * scale``, ``q`` in [-127, 127]."""
    peak = float(np.max(np.abs(w)))
    scale = np.float32(peak / 127.0 if peak > 0 else 1.0)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def quantize_body(p: FloatParams) -> QuantizedBody:
    w1_q, s1 = quantize_tensor(p.w1)
    w2_q, s2 = quantize_tensor(p.w2)
    return QuantizedBody(w1_q, s1, p.b1.astype(np.float32), w2_q, s2, p.b2.astype(np.float32))


def anomaly_mask(labels: list[str], normal_label: str) -> np.ndarray:
    return np.array([[0.0 if lab == normal_label else 1.0 for lab in labels]], dtype=np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)


def body_forward(body: QuantizedBody, x: np.ndarray) -> np.ndarray:
    """Hidden activations ``[B, H2]`` of the shipped (dequantized) body."""
    w1, w2 = body.dequantized()
    h1 = np.maximum(x @ w1.T + body.b1, 0.0)
    return np.asarray(np.maximum(h1 @ w2.T + body.b2, 0.0), dtype=np.float32)


def reference_forward(model: ShippedModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What both runtimes compute, in numpy: ``(probabilities [B, K], anomaly [B])``."""
    h2 = body_forward(model.body, x)
    probs = softmax(h2 @ model.head_w.T + model.head_b)
    return probs, (probs @ model.anomaly_mask.T)[:, 0]
