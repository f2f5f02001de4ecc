"""The technician's own grep as evidence, for logs of software the model has never read.

On software it was trained on the model's words are right and a keyword rule is not (a
scanner's ``error: kex_exchange_identification`` is routine). On software it has never
read — a device's own application, a daemon nobody here harvested — the model is less
sure, and a line that says ``error`` or ``failed`` is an alert more often than its score
says near the flag (docs/model.md, "The grep as a second opinion"). For a source an
operator marks so (``keyword_evidence = true`` on a file, MQTT or journal source), the anomaly of
each line is shifted in log-odds, as the journal's level is (:mod:`agent.level_evidence`)::

    anomaly' = sigmoid(logit(anomaly) + (matched if a keyword is in the line else unmatched))

and the alert labels keep their shares of the new anomaly. A line that brings its
program's level (journald) is left to the level: the two are the same kind of evidence,
and the level is the program's own word.

Off unless a source asks for it: on the public log samples (mostly software the model has
read) it flags more healthy lines than the written release gate lets a bundle add. The
keywords are plain words matched case-insensitively anywhere in the line, as
``grep -iE 'fatal|fail|error|panic|critical'`` does — never an operator's regular
expression, so no line can make the match slow. Pure functions of their inputs; the
pipeline applies them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

import numpy as np
from pydantic import Field, field_validator

from agent.level_evidence import shift_anomaly, with_anomaly
from contract.strict import Strict

DEFAULT_WORDS = ("fatal", "fail", "error", "panic", "critical")


class KeywordEvidenceConfig(Strict):
    """``[model.keyword_evidence]``: how lines of sources with ``keyword_evidence = true``
    weigh the keywords."""

    words: list[str] = Field(
        default_factory=lambda: list(DEFAULT_WORDS), min_length=1, max_length=64,
        description="Words whose presence anywhere in a line (case-insensitive, inside other "
        "words too: 'fail' matches 'failed') counts as the keyword rule matching. The "
        "default is the grep a technician writes; add your application's own trouble words "
        "('E!', 'ALARM', 'Traceback'). Plain text, 1-64 characters each, not a pattern.")
    matched: float = Field(
        default=2.4, ge=-20.0, le=20.0,
        description="Log-odds added to the anomaly of a line a keyword is in (+2.4 turns "
        "0.15 into 0.65, and 0.5 into 0.92).")
    unmatched: float = Field(
        default=-0.6, ge=-20.0, le=20.0,
        description="Log-odds added to the anomaly of a line no keyword is in (-0.6 turns "
        "0.5 into 0.35: such a line needs more of the model's confidence to be flagged).")

    @field_validator("words")
    @classmethod
    def _plain_words(cls, words: list[str]) -> list[str]:
        for word in words:
            if not 1 <= len(word) <= 64 or not word.strip():
                raise ValueError(f"keyword {word!r}: 1-64 characters, not only spaces")
        return words

    def matcher(self) -> re.Pattern[str]:
        """The words as one case-insensitive alternation of escaped literals (linear time:
        no word can make the regular expression engine backtrack)."""
        return _matcher(tuple(self.words))

    def note(self, text: str) -> str:
        """What an alert's reason says about the keywords of a weighed line: the word that
        was found, or that none was (a technician asking why it was sent)."""
        found = self.matcher().search(text)
        return f" (keyword {found.group(0)!r} weighed in)" if found else " (no keyword)"


@functools.lru_cache(maxsize=8)
def _matcher(words: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)


def keyword_matches(texts: Sequence[str], matcher: re.Pattern[str]) -> np.ndarray:
    """Whether a keyword is in each line (bool [B])."""
    return np.array([matcher.search(t) is not None for t in texts], dtype=bool)


def apply_keyword_evidence(probs: np.ndarray, anomaly: np.ndarray, texts: Sequence[str],
                           weigh: Sequence[bool], cfg: KeywordEvidenceConfig,
                           normal_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The batch's (probabilities, anomaly) with the keywords weighed in where ``weigh``
    (the line's source asks for it and the line brings no level). Other rows keep their
    scores bit for bit; the inputs are not modified."""
    if not len(texts) == len(weigh) == len(anomaly) == probs.shape[0]:
        raise ValueError(f"{len(texts)} texts and {len(weigh)} switches for "
                         f"{len(anomaly)} lines")
    rows = np.asarray(weigh, dtype=bool)
    if not rows.any():
        return probs, anomaly
    matched = keyword_matches(texts, cfg.matcher())
    offsets = np.where(matched, cfg.matched, cfg.unmatched)
    return with_anomaly(probs, anomaly, shift_anomaly(anomaly, offsets), rows, normal_index)


def weigh_keywords(probs: np.ndarray, anomaly: np.ndarray, texts: Sequence[str] | None,
                   keywords: Sequence[bool] | None, levels: Sequence[int | None],
                   cfg: KeywordEvidenceConfig,
                   normal_index: int) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`apply_keyword_evidence` on the lines whose source asks (``keywords``) and that
    bring no level (the level is the program's own word: it decides such a line), with
    how many were weighed. None: no line asks."""
    if texts is None or keywords is None:
        return probs, anomaly, 0
    weigh = [bool(k) and lv is None for k, lv in zip(keywords, levels, strict=True)]
    if not any(weigh):
        return probs, anomaly, 0
    probs, anomaly = apply_keyword_evidence(probs, anomaly, texts, weigh, cfg, normal_index)
    return probs, anomaly, sum(weigh)
