"""The teacher: WordLlama's LLM-distilled static token embeddings (``l2_supercat``, 256-d).

Loaded from the files inside the installed ``wordllama`` wheel, never downloaded:
``wordllama/weights/l2_supercat_256.safetensors`` (float16 ``[32000, 256]``, the
LLaMA-2 vocabulary) and ``wordllama/tokenizers/l2_supercat_tokenizer_config.json``
(read with ``tokenizers``). ``wordllama`` itself is not imported (its ``load()``
looks for the tokenizer in the wrong folder, then tries the network).

Licences (checked, see docs/model.md): wordllama is MIT (c) 2024 Lee Miller; the
l2_supercat codebook was trained from the token embeddings of LLaMA 2 70B (Llama 2
Community Licence) and Phi-3 medium (MIT), concatenated. Nothing of the teacher is
shipped unless the evaluation says it wins (see docs/model.md for what was kept).

What the model can use (each measured on the held-out real sources):

* :meth:`Teacher.word_vectors`: a word's meaning as the mean of its tokens' vectors;
* :func:`bucket_prior`: the meaning of each hash bucket of ``hashed-ngrams-v1``
  (frequency-weighted mean of the words whose n-grams fall in it), projected to the
  network's first layer, to initialise and regularise it;
* :class:`WordVectorFeatures`: the teacher as the input embedding, pruned to the
  words of our text plus common words, truncated to ``dims`` and int8-quantized.
"""

from __future__ import annotations

import importlib.util
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from agent.featurizer import Featurizer

_WORD = re.compile(r"[a-z][a-z_]+")  # words the teacher can mean something by (no digits)
_WEIGHTS = "weights/l2_supercat_256.safetensors"
_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


def wordllama_dir() -> Path:
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the teacher needs the 'wordllama' package (train extra)")
    return Path(next(iter(spec.submodule_search_locations)))


def words_of(text: str) -> list[str]:
    """Lower-case alphabetic words of a line (the teacher's view of it)."""
    return _WORD.findall(text.lower())


class Teacher:
    """Token embeddings + tokenizer, loaded from the installed wheel's files."""

    def __init__(self, root: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        root = root or wordllama_dir()
        self.embedding = load_file(str(root / _WEIGHTS))["embedding.weight"].astype(np.float32)
        self.tokenizer = Tokenizer.from_file(str(root / _TOKENIZER))
        self.dim = int(self.embedding.shape[1])
        self._cache: dict[str, np.ndarray] = {}

    def common_words(self, min_len: int = 3) -> list[str]:
        """Whole-word entries of the teacher's vocabulary (``▁word``), lower-cased:
        the 'common words' an unseen line is likely to use."""
        vocab = self.tokenizer.get_vocab()
        words = {tok[1:].lower() for tok in vocab
                 if tok.startswith("\u2581") and tok[1:].isascii() and tok[1:].isalpha()
                 and len(tok) > min_len}
        return sorted(words)

    def word_vectors(self, words: Sequence[str]) -> np.ndarray:
        """``[len(words), 256]``: mean token vector of each word, L2-normalised."""
        out = np.zeros((len(words), self.dim), np.float32)
        missing = [w for w in words if w not in self._cache]
        if missing:
            encodings = self.tokenizer.encode_batch([f" {w}" for w in missing],
                                                    add_special_tokens=False)
            for w, enc in zip(missing, encodings, strict=True):
                ids = [i for i, t in zip(enc.ids, enc.tokens, strict=True) if t != "\u2581"]
                v = self.embedding[ids].mean(axis=0) if ids else np.zeros(self.dim, np.float32)
                n = float(np.linalg.norm(v))
                self._cache[w] = v / n if n > 0 else v
        for i, w in enumerate(words):
            out[i] = self._cache[w]
        return out


def vocabulary(texts: Iterable[str], teacher: Teacher, common: int = 20000) -> Counter[str]:
    """Word counts of ``texts`` plus the teacher's common words (count 1 each, first
    ``common`` of them): the pruned vocabulary."""
    counts: Counter[str] = Counter()
    for t in texts:
        counts.update(words_of(t))
    for w in teacher.common_words()[:common]:
        counts[w] += 1
    return counts


def projection(vectors: np.ndarray, dims: int) -> np.ndarray:
    """``[dims, 256]`` principal directions of ``vectors`` (truncation that keeps the
    most variance; the teacher is Matryoshka-trained, so its first dims also work)."""
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return np.asarray(vt[:dims], dtype=np.float32)


def bucket_prior(featurizer: Featurizer, teacher: Teacher, vocab: Counter[str],
                 proj: np.ndarray) -> np.ndarray:
    """``[dims, buckets]``: each bucket's teacher meaning, as a first-layer weight.

    A word lights up its unigram bucket and its character n-gram buckets; a bucket's
    vector is the count-weighted mean of the projected vectors of the words that
    light it. Buckets no vocabulary word reaches stay zero."""
    words = sorted(vocab)
    vecs = teacher.word_vectors(words) @ proj.T  # [V, dims]
    weight = np.sqrt(np.array([vocab[w] for w in words], np.float32))
    acc = np.zeros((featurizer.width, proj.shape[0]), np.float64)
    mass = np.zeros(featurizer.width, np.float64)
    for start in range(0, len(words), 4096):
        chunk = words[start : start + 4096]
        x = featurizer.transform(chunk)  # [n, buckets], each word alone
        xw = x * weight[start : start + len(chunk), None]
        acc += xw.T @ vecs[start : start + len(chunk)]
        mass += xw.sum(axis=0)
    acc[mass > 0] /= mass[mass > 0, None]
    return np.asarray(acc.T, dtype=np.float32)


class WordVectorFeatures:
    """The teacher as input embedding: a line -> mean int8 teacher vector of its known
    words (``[B, dims]``), to sit beside (or replace) the hashed n-grams."""

    def __init__(self, teacher: Teacher, vocab: Counter[str], dims: int = 64,
                 proj: np.ndarray | None = None) -> None:
        words = sorted(vocab)
        vecs = teacher.word_vectors(words)
        self.proj = proj if proj is not None else projection(vecs, dims)
        reduced = vecs @ self.proj.T
        scale = float(np.abs(reduced).max()) / 127.0
        self.table_q = np.clip(np.rint(reduced / scale), -127, 127).astype(np.int8)
        self.scale = np.float32(scale)
        self.index = {w: i for i, w in enumerate(words)}
        self.width = int(self.proj.shape[0])

    @property
    def table_bytes(self) -> int:
        return int(self.table_q.nbytes)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.width), np.float32)
        for i, t in enumerate(texts):
            ids = [j for w in words_of(t) if (j := self.index.get(w)) is not None]
            if ids:
                v = self.table_q[ids].astype(np.float32).mean(axis=0) * self.scale
                n = float(np.linalg.norm(v))
                out[i] = v / n if n > 0 else v
        return out
