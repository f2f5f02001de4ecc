"""The hashed n-gram features: one implementation, exact agreement, row independence."""

from __future__ import annotations

import numpy as np
import pytest

from agent.model import LoadedModel
from contract.bundle import TokenizerSpec
from nanomodel import default_bundle_path
from nanomodel.corpus import STYLES, generate
from nanomodel.features import Featurizer, default_spec, reference_features

pytestmark = pytest.mark.unit

TRICKY = [
    "",
    " ",
    "a",
    "ab",
    "eth0: link down",
    "Mar  3 12:01:02 gw-17 kernel: [1234.5678] e1000e 0000:00:19.0 eth0: NIC Link is Down",
    '{"level":"error","msg":"disk full on /dev/mmcblk0p2"}',
    "temp=85.3C sensor=cpu0 state=CRIT",
    "ÜBERTEMPERATUR Leistungsteil 91 Grad — ошибка ✓ 温度",
    "lone surrogate \udcff here",
    "replacement char \ufffd kept",
    "tabs\tand\x00nul and \x1b[31mcolour\x1b[0m",
    "___ ... !!! ???",
    "x" * 700,
    "١٢٣ arabic-indic digits and 123 ascii digits",
    "Mar  4 11:00:02 hmi-2 systemd-networkd[300]: eth0: Lost carrier",
    "<30>Mar  4 11:00:02 hmi-2 " + "h" * 500 + "[300]: a head past the head room",
]


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32)


@pytest.mark.parametrize("spec", [
    default_spec(),
    TokenizerSpec(kind="hashed-ngrams-v1", buckets=97, char_ngrams=[1, 2, 4], word_ngrams=[1, 3],
                  lowercase=False, mask_digits=False, max_chars=40, seed=12345),
    TokenizerSpec(kind="hashed-ngrams-v1", buckets=1 << 16, char_ngrams=[], word_ngrams=[2],
                  seed=7),
    # The batch path extends shorter char n-grams into longer ones: any order, repeats.
    TokenizerSpec(kind="hashed-ngrams-v1", buckets=512, char_ngrams=[6, 2, 2, 4],
                  word_ngrams=[2, 1, 2], seed=3),
    # a bundle built before heads were dropped (no ``head`` in its manifest)
    default_spec().model_copy(update={"head": "keep"}),
], ids=["default", "odd", "words-only", "unsorted-repeated", "heads-kept"])
def test_vectorised_features_equal_the_reference_bit_for_bit(spec: TokenizerSpec) -> None:
    texts = TRICKY + [e.text for e in generate(40, 3, list(STYLES))]
    batch = Featurizer(spec).transform(texts)
    for i, text in enumerate(texts):
        assert np.array_equal(_bits(batch[i]), _bits(reference_features(spec, text))), text


def test_the_batch_is_normalised_as_each_line_alone() -> None:
    """framed() lower-cases, encodes and masks the batch joined by NUL: per line it must
    give normalize()'s bytes, also where lower case depends on context (the Greek final
    sigma, here next to a line boundary) or is longer than the upper case (İ), and for
    truncated lines; a batch with a NUL of its own takes the per-line path."""
    feat = Featurizer(default_spec())
    texts = [t for t in TRICKY if "\0" not in t] + [
        "ΟΔΟΣ", "ΣΑ", "Σ", "ΑΣ Σ ΣΑ.", "ΑΣ" * 200, "İSTANBUL İ", "multi\nline\r\n",
        "ǅ ǈ ß ẞ ＡＢＣ", "ΟΔΟΣ\u0301", "\u0301ΣΑ"]  # noqa: RUF001
    for batch in (texts, texts + ["a\0b"]):
        data, lens = feat.framed(batch)
        assert data == b"".join(feat.normalize(t) for t in batch)
        assert lens == [len(feat.normalize(t)) for t in batch]
    spec = default_spec()
    rows = feat.transform(texts)
    for i, text in enumerate(texts):
        assert np.array_equal(_bits(rows[i]), _bits(reference_features(spec, text))), text


def test_a_row_does_not_depend_on_its_batch() -> None:
    feat = Featurizer(default_spec())
    texts = TRICKY + [e.text for e in generate(50, 4)]
    together = feat.transform(texts)
    for i, text in enumerate(texts):
        assert np.array_equal(_bits(together[i]), _bits(feat.transform([text])[0]))


def test_rows_are_unit_length_or_zero() -> None:
    x = Featurizer(default_spec()).transform(TRICKY)
    norms = np.linalg.norm(x, axis=1)
    assert norms[0] == 0.0 or abs(norms[0] - 1) < 1e-6
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))
    assert x.dtype == np.float32 and x.shape == (len(TRICKY), 4096)


def test_normalisation_masks_digits_and_case() -> None:
    feat = Featurizer(default_spec())
    a, b = feat.transform(["CPU temp 91.5 C", "cpu TEMP 17.2 c"])
    assert np.array_equal(a, b)
    assert not np.array_equal(*feat.transform(["link up", "link down"]))


def test_agent_uses_the_bundles_spec_with_the_same_code() -> None:
    model = LoadedModel.load(default_bundle_path())
    try:
        spec = model.manifest.tokenizer
        assert spec == default_spec()
        texts = [e.text for e in generate(30, 5)]
        assert np.array_equal(model.featurizer.transform(texts), Featurizer(spec).transform(texts))
    finally:
        model.close()


def test_unknown_tokenizer_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="n-gram sizes"):
        Featurizer(TokenizerSpec(kind="hashed-ngrams-v1", buckets=8, char_ngrams=[0],
                                 word_ngrams=[1]))


@pytest.mark.parametrize(("line", "message"), [
    # RFC 3164 (a syslog file): time and host go, the program's tag stays
    ("Mar  4 11:00:02 hmi-2 systemd-networkd[300]: eth0: Lost carrier",
     "systemd-networkd[300]: eth0: Lost carrier"),
    ("Jun  9 04:02:01 rtu-4 crond(pam_unix)[2210]: session closed for user root",
     "crond(pam_unix)[2210]: session closed for user root"),
    ("<30>Oct 30 06:02:17 sensorhub-b kernel: [ 5512.901223] dht11 dht11@4: timeout",
     "kernel: [ 5512.901223] dht11 dht11@4: timeout"),
    ("Sun Mar  4 11:00:02 2024 gw postfix/smtpd[12]: connect from x",
     "postfix/smtpd[12]: connect from x"),
    # ISO 8601 (the journal's short-iso, applications)
    ("2024-05-19T13:02:44+0000 gw-3 chronyd[402]: Selected source 10.0.0.1",
     "chronyd[402]: Selected source 10.0.0.1"),
    ("2024-05-19T13:02:44.123456Z gw-3 app: started", "app: started"),
    # a level word is the message's own, not a host
    ("2024-02-11 23:51:09,774 WARNING auth: 6 wrong PIN entries",
     "WARNING auth: 6 wrong PIN entries"),
    # no tag after the next word: only the time goes
    ("2024-02-03T07:44:00Z E! [outputs.mqtt] dial tcp: timeout",
     "E! [outputs.mqtt] dial tcp: timeout"),
    ("Mar  4 11:00:02 the fan stopped", "the fan stopped"),
    # no head, or something else at the start: the line as it is
    ("eth0: Lost carrier", "eth0: Lost carrier"),
    ("[Tue Mar 16 15:39:29 2010] [error] File does not exist: /x",
     "[Tue Mar 16 15:39:29 2010] [error] File does not exist: /x"),
    ("March  4 11:00:02 gw x: y", "March  4 11:00:02 gw x: y"),
    ("2024-05-19 the date alone", "2024-05-19 the date alone"),
    ("Mar  4 11:00:02", "Mar  4 11:00:02"),  # a head with nothing after it is the line
])
def test_a_lines_time_and_host_are_not_hashed(line: str, message: str) -> None:
    """``head: time-host-v1`` (the default model's spec) drops a leading timestamp and
    the syslog host after it: the same message scores the same behind any head."""
    feat = Featurizer(default_spec())
    assert feat.cut(line) == message
    assert np.array_equal(feat.transform([line]), feat.transform([message]))
    kept = Featurizer(default_spec().model_copy(update={"head": "keep"}))
    assert kept.cut(line) == line


def test_a_head_is_looked_for_in_a_bounded_prefix() -> None:
    """The head's search reads at most max_chars + 144 characters: a host too long for
    that is kept (its time goes), a line of any length costs the same."""
    feat = Featurizer(default_spec())
    fits = "Mar  4 11:00:02 " + "h" * 100 + " sshd[1]: x"
    assert feat.cut(fits) == "sshd[1]: x"
    too_long = "Mar  4 11:00:02 " + "h" * 400 + " sshd[1]: x"
    assert feat.cut(too_long) == too_long[len("Mar  4 11:00:02 "):][:256]
    assert feat.cut("Mar  4 11:00:02 " + "a" * 1_000_000) == "a" * 256


def test_a_manifest_names_the_head_only_when_it_is_dropped() -> None:
    """Bundles that keep heads are written as before the field existed (older agents,
    which refuse unknown fields, still read them; their bytes are unchanged); a bundle
    that drops heads says so, and an unknown head rule is refused."""
    kept = default_spec().model_copy(update={"head": "keep"})
    assert "head" not in kept.model_dump(mode="json")
    assert TokenizerSpec.model_validate(kept.model_dump(mode="json")) == kept
    dropped = default_spec().model_dump(mode="json")
    assert dropped["head"] == "time-host-v1"
    assert TokenizerSpec.model_validate(dropped) == default_spec()
    with pytest.raises(ValueError, match="head"):
        TokenizerSpec.model_validate({**dropped, "head": "time-host-v2"})
