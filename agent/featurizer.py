"""Hashed n-gram features (``hashed-ngrams-v1``): text lines -> float32 ``[B, buckets]``.

This is the one implementation used by training, evaluation and the agent, so a
model always sees on a device exactly the features it was trained on.

Algorithm (all arithmetic on unsigned 32-bit integers, wrapping):

0. If ``head`` is ``"time-host-v1"``, drop the line's head: a leading timestamp and,
   in syslog's form, the host (:data:`TIME_HOST_V1`).
1. Take the first ``max_chars`` characters; lower-case if ``lowercase``; replace
   each ASCII digit by ``'0'`` if ``mask_digits`` (numbers vary, their shape is
   what carries meaning). Encode UTF-8 (lone surrogates become ``?``) and
   put one space before and after, so n-grams see line boundaries.
2. Character n-grams, for each ``n`` in ``char_ngrams``, over those bytes:
   ``h = sum_j (b[j] + 1) * P**j``.
3. Words are maximal runs of ``[a-zA-Z0-9_]`` or non-ASCII bytes; a word's hash
   is the same polynomial over its bytes. Word n-grams, for each ``n`` in
   ``word_ngrams``, combine consecutive word hashes: ``h = sum_k w[k] * Q**k``.
4. Each n-gram hash is mixed with its kind (char/word), ``n`` and ``seed``
   (``fmix32(h ^ (kind * K1 + n * K2 + seed))``) and taken modulo ``buckets``.
5. The row's bucket counts are square-rooted (damps repeated n-grams such as
   runs of masked digits) and L2-normalised (long and short lines weigh alike).

Everything is vectorised over the whole batch (one pass of numpy per n-gram
size), because per-line Python loops would cap the agent far below its budget.
:func:`reference_features` is a plain per-line implementation of the same
algorithm; tests check the two agree exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from contract.bundle import TokenizerSpec

_P = np.uint32(0x9E3779B1)
_Q = np.uint32(0x7FEB352D)
_K1 = 0x85EBCA6B
_K2 = 0xC2B2AE35
_KIND_CHAR = 1
_KIND_WORD = 2
_MASK32 = 0xFFFFFFFF
_DIGIT_BYTES = bytes.maketrans(b"0123456789", b"0000000000")

# Byte classes for word splitting: ASCII letters, digits, '_' and any non-ASCII byte.
_WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _WORD_BYTE[_c] = True
_WORD_BYTE[128:] = True


# A line's head: the time a logger stamped it with and, in syslog's form, the host
# (RFC 3164 ``Mar  4 11:00:02 hmi-2 sshd[412]: ...``; ISO 8601 as the journal's
# short-iso, RFC 5424 and most applications write it). Neither says anything about the
# message, and before a short message they are most of its n-grams: ``eth0: Lost
# carrier`` scores 1.00 alone and scored 0.28 behind ``Mar  4 11:00:02 hmi-2
# systemd-networkd[300]: `` when the model hashed heads (docs/model.md "Heads dropped").
# The program's tag stays (it says which daemon speaks); a host is taken only when a
# tag follows it, and never a level word (``... 23:51:09,774 WARNING auth: ...`` keeps
# its WARNING). Anchored, bounded quantifiers, one candidate host: linear in the line.
_MONTH = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_WEEKDAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_HOST_BEFORE_TAG = (r"(?:(?!(?:DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|CRIT|CRITICAL|FATAL"
                    r"|ALERT|EMERG|TRACE)\b)\S+ (?=[\w./@()-]+(?:\[\d+\])?: ))?")
TIME_HOST_V1 = re.compile(
    r"(?:<\d{1,3}>\d? ?)?(?:"  # a syslog priority (and RFC 5424's version) first
    rf"(?:{_WEEKDAY} )?{_MONTH} +\d{{1,2}} \d\d:\d\d:\d\d(?:\.\d+)?(?: \d{{4}})? "
    + _HOST_BEFORE_TAG + "|"
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)? "
    + _HOST_BEFORE_TAG + ")")
# The head is looked for in the line's first max_chars + this many characters only (a
# host reaching past them is kept, its time not): the cost per line is bounded on any input.
_HEAD_ROOM = 144
# Where readers of a line's start (its program, its stated level) look for the head: the
# default model's max_chars + _HEAD_ROOM.
HEAD_SCAN = 400


def head_end(text: str) -> int:
    """Where the time-and-host head the featurizer drops ends in ``text`` (0: none),
    looked for in its first :data:`HEAD_SCAN` characters."""
    head = TIME_HOST_V1.match(text, 0, HEAD_SCAN)
    return head.end() if head is not None else 0


def default_spec() -> TokenizerSpec:
    """The feature spec of the default nano model."""
    return TokenizerSpec(kind="hashed-ngrams-v1", buckets=4096, char_ngrams=[3, 5],
                         word_ngrams=[1, 2], lowercase=True, mask_digits=True,
                         max_chars=256, seed=0, head="time-host-v1")


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(_K1)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(_K2)
    return h ^ (h >> np.uint32(16))


class Featurizer:
    """Turns lines into the model's input tensor, per a :class:`TokenizerSpec`."""

    def __init__(self, spec: TokenizerSpec) -> None:
        if spec.kind != "hashed-ngrams-v1":
            raise ValueError(f"unsupported tokenizer kind {spec.kind!r}")
        if any(n < 1 for n in spec.char_ngrams + spec.word_ngrams):
            raise ValueError("n-gram sizes must be >= 1")
        self.spec = spec
        self.width = spec.buckets
        longest = 4 * spec.max_chars + 2  # UTF-8 bytes of max_chars characters + 2 spaces
        self._pow_p = np.array([pow(int(_P), i, 1 << 32) for i in range(longest + 1)],
                               dtype=np.uint32)
        self._salt = {
            (kind, n): np.uint32((kind * _K1 + n * _K2 + spec.seed) & _MASK32)
            for kind, sizes in ((_KIND_CHAR, spec.char_ngrams), (_KIND_WORD, spec.word_ngrams))
            for n in sizes
        }

    def cut(self, text: str) -> str:
        """Steps 0 and 1's cut: the characters of a line the features are taken from."""
        if self.spec.head == "time-host-v1":
            text = text[: self.spec.max_chars + _HEAD_ROOM]
            head = TIME_HOST_V1.match(text)
            if head is not None:
                text = text[head.end():]
        return text[: self.spec.max_chars]

    def normalize(self, text: str) -> bytes:
        """Steps 0 and 1: the bytes the n-grams are taken from."""
        t = self.cut(text)
        if self.spec.lowercase:
            t = t.lower()
        data = t.encode("utf-8", errors="replace")  # lone surrogates -> '?'
        if self.spec.mask_digits:
            # ASCII digits are single bytes in UTF-8: masking bytes == masking characters.
            data = data.translate(_DIGIT_BYTES)
        return b" " + data + b" "

    def framed(self, texts: Sequence[str]) -> tuple[bytes, list[int]]:
        """Step 1 for a batch: the lines' :meth:`normalize` outputs back to back, and
        their lengths. Lower-casing, encoding and masking run once over the batch joined
        by NUL (per line, they were a fifth of the featurizer's time): lower-casing is
        per character, and NUL is neither cased nor case-ignorable, so even the Greek
        final sigma sees a line's end as it would alone. A batch with a NUL of its own
        takes the per-line path."""
        cut = [self.cut(t) for t in texts]
        joined = "\0".join(cut)
        if joined.count("\0") != len(cut) - 1:
            encoded = [self.normalize(t) for t in texts]
            return b"".join(encoded), [len(e) for e in encoded]
        if self.spec.lowercase:
            joined = joined.lower()
        data = joined.encode("utf-8", errors="replace")  # lone surrogates -> '?'
        if self.spec.mask_digits:
            data = data.translate(_DIGIT_BYTES)
        lens = [len(part) + 2 for part in data.split(b"\0")]
        return b" " + data.replace(b"\0", b"  ") + b" ", lens

    def hashes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """All n-gram bucket ids of a batch: ``(row index, bucket)`` pairs."""
        data, line_lens = self.framed(texts)
        lens = np.array(line_lens, dtype=np.int64)
        buf = np.frombuffer(data, dtype=np.uint8)
        total = buf.size
        row_of = np.repeat(np.arange(len(line_lens), dtype=np.int64), lens)
        line_end = np.repeat(np.cumsum(lens), lens)  # exclusive end of each byte's line
        vals = buf.astype(np.uint32) + np.uint32(1)
        # Every kind of n-gram is hashed first and mixed/bucketed in one pass at the end
        # (each with its own salt): a small batch's cost is mostly per numpy call.
        rows: list[np.ndarray] = []
        hashes: list[np.ndarray] = []
        salts: list[np.uint32] = []
        # Char n-grams by increasing n extend the shorter ones' sums (a size listed twice
        # counts twice, as in the reference).
        h = np.zeros(0, dtype=np.uint32)
        done = 0
        for n in sorted(self.spec.char_ngrams):
            count = total - n + 1
            if count <= 0:
                continue
            if done == 0:
                h = vals[:count].copy()
                done = 1
            else:
                h = h[:count]  # the shorter size's hashes were copied out by h[ok]
            for j in range(done, n):
                h += vals[j : j + count] * self._pow_p[j]
            done = n
            ok = (np.arange(count, dtype=np.int64) + n) <= line_end[:count]
            rows.append(row_of[:count][ok])
            hashes.append(h[ok])
            salts.append(self._salt[(_KIND_CHAR, n)])
        word_hash, word_row = self._word_hashes(buf, vals, row_of)
        for n in self.spec.word_ngrams:
            count = word_hash.size - n + 1
            if count <= 0:
                continue
            wh = word_hash[:count] * _Q
            for k in range(1, n):
                qk = np.uint32(pow(int(_Q), k + 1, 1 << 32))
                wh += word_hash[k : k + count] * qk
            ok = word_row[:count] == word_row[n - 1 : n - 1 + count]
            rows.append(word_row[:count][ok])
            hashes.append(wh[ok])
            salts.append(self._salt[(_KIND_WORD, n)])
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        sizes = [a.size for a in hashes]
        salt = np.repeat(np.array(salts, dtype=np.uint32), sizes)
        mixed = _fmix32(np.concatenate(hashes) ^ salt)
        return np.concatenate(rows), self._modulo(mixed)

    def _word_hashes(self, buf: np.ndarray, vals: np.ndarray,
                     row_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        is_word = _WORD_BYTE[buf]
        word_pos = np.flatnonzero(is_word)
        if word_pos.size == 0:
            return np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64)
        # A word starts where the previous byte is not part of the same run. Lines are
        # framed by spaces, so runs never cross lines.
        starts_mask = np.ones(word_pos.size, dtype=bool)
        starts_mask[1:] = word_pos[1:] != word_pos[:-1] + 1
        first = np.flatnonzero(starts_mask)
        word_id = np.cumsum(starts_mask) - 1
        offset_in_word = word_pos - word_pos[first][word_id]
        contrib = vals[word_pos] * self._pow_p[offset_in_word]
        word_hash = np.add.reduceat(contrib, first).astype(np.uint32)
        return word_hash, row_of[word_pos[first]]

    def _modulo(self, mixed: np.ndarray) -> np.ndarray:
        """Step 4's ``h mod buckets`` as int64 ids. A power-of-two width is a mask: the
        same numbers, and an integer division per n-gram was a tenth of the featurizer."""
        if self.width & (self.width - 1) == 0:
            return (mixed & np.uint32(self.width - 1)).astype(np.int64)
        return (mixed % np.uint32(self.width)).astype(np.int64)

    def _bucket(self, h: np.ndarray, kind: int, n: int) -> np.ndarray:
        mixed = _fmix32(h ^ self._salt[(kind, n)])
        return self._modulo(mixed)

    def ngram_spans(self, text: str) -> tuple[list[tuple[int, int, int]],
                                              list[tuple[str, int, int]]]:
        """One line's n-gram occurrences ``(bucket, start, end)`` and words
        ``(word, start, end)``, as byte spans of :meth:`normalize`'s output (for
        explanations; a plain per-line loop, agreeing with :meth:`hashes`). A word is
        shown as the line wrote it when normalising kept every byte in place (else in
        its normalised form: lower case, digits as 0)."""
        data = self.normalize(text)
        raw = b" " + self.cut(text).encode("utf-8", errors="replace") + b" "
        shown = raw if len(raw) == len(data) else data
        spans: list[tuple[int, int, int]] = []
        for n in self.spec.char_ngrams:
            at = range(len(data) - n + 1)
            hs = [sum((c + 1) * int(self._pow_p[j]) for j, c in enumerate(data[i : i + n]))
                  & _MASK32 for i in at]
            spans += [(b, i, i + n) for b, i in zip(self._buckets_of(hs, _KIND_CHAR, n), at,
                                                    strict=True)]
        words: list[tuple[str, int, int]] = []
        hashes: list[int] = []
        start = -1
        for i, c in enumerate(data):
            if _WORD_BYTE[c] and start < 0:
                start = i
            elif not _WORD_BYTE[c] and start >= 0:
                chunk = data[start:i]
                hashes.append(sum((b + 1) * int(self._pow_p[j]) for j, b in enumerate(chunk))
                              & _MASK32)
                words.append((shown[start:i].decode("utf-8", errors="replace"), start, i))
                start = -1
        for n in self.spec.word_ngrams:
            at = range(len(words) - n + 1)
            hs = [sum(hashes[i + k] * pow(int(_Q), k + 1, 1 << 32) for k in range(n))
                  & _MASK32 for i in at]
            spans += [(b, words[i][1], words[i + n - 1][2])
                      for b, i in zip(self._buckets_of(hs, _KIND_WORD, n), at, strict=True)]
        return spans, words

    def _buckets_of(self, hs: list[int], kind: int, n: int) -> list[int]:
        """The bucket of each of one kind's hashes (one numpy call for all of them)."""
        if not hs:
            return []
        return [int(b) for b in self._bucket(np.array(hs, dtype=np.uint32), kind, n)]

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Lines -> float32 ``[len(texts), buckets]`` model input."""
        out = np.zeros((len(texts), self.width), dtype=np.float32)
        if not texts:
            return out
        rows, buckets = self.hashes(texts)
        flat = out.reshape(-1)
        at = rows * self.width + buckets
        # Counted in place: a bincount would allocate [B, buckets] int64 (2 MB at 64
        # lines) per batch, and that transient is what the agent's steady RSS keeps.
        np.add.at(flat, at, np.float32(1))
        # Step 5 on the touched entries only: a row's damped counts sqrt(c) have the
        # squared norm sum(c), its number of n-grams, so each entry is sqrt(c / total).
        # Passes over the whole dense [B, buckets] array (sqrt, norms, divide) were a
        # quarter of the featurizer's time; a row without n-grams stays all zeros.
        totals = np.bincount(rows, minlength=len(texts)).astype(np.float32)
        flat[at] = _damped(flat[at], totals[rows])
        return out


def _damped(count: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Step 5 for one entry: ``sqrt(count / total)`` in float32 (the same operations in
    the batch path and the reference, so the two agree bit for bit)."""
    return np.sqrt(count.astype(np.float32) / total.astype(np.float32))


def reference_features(spec: TokenizerSpec, text: str) -> np.ndarray:
    """Slow, obviously-correct per-line version of :meth:`Featurizer.transform`."""
    feat = Featurizer(spec)
    data = feat.normalize(text)
    counts: dict[int, int] = {}

    def add(h: int, kind: int, n: int) -> None:
        h = (h ^ (kind * _K1 + n * _K2 + spec.seed)) & _MASK32
        h ^= h >> 16
        h = (h * _K1) & _MASK32
        h ^= h >> 13
        h = (h * _K2) & _MASK32
        h ^= h >> 16
        b = h % spec.buckets
        counts[b] = counts.get(b, 0) + 1

    def poly(chunk: bytes) -> int:
        return sum((c + 1) * pow(int(_P), j, 1 << 32) for j, c in enumerate(chunk)) & _MASK32

    for n in spec.char_ngrams:
        for i in range(len(data) - n + 1):
            add(poly(data[i : i + n]), _KIND_CHAR, n)
    words: list[int] = []
    current = bytearray()
    for c in data:
        if _WORD_BYTE[c]:
            current.append(c)
        elif current:
            words.append(poly(bytes(current)))
            current = bytearray()
    for n in spec.word_ngrams:
        for i in range(len(words) - n + 1):
            h = sum(words[i + k] * pow(int(_Q), k + 1, 1 << 32) for k in range(n)) & _MASK32
            add(h, _KIND_WORD, n)
    out = np.zeros(spec.buckets, dtype=np.float32)
    total = sum(counts.values())
    for b, c in counts.items():
        out[b] = _damped(np.array([c]), np.array([total]))[0]
    return out
