"""The technician's own grep as evidence, for logs of software the model has never read.

On software it was trained on the model's words are right and a keyword rule is not (a
scanner's ``error: kex_exchange_identification`` is routine). On software it has never
read — a device's own application, a daemon nobody here harvested — the model is less
sure, and a line that says ``error`` or ``failed`` is an alert more often than its score
says near the flag (docs/model.md, "The grep as a second opinion"). For such lines the
anomaly is shifted in log-odds, as the journal's level shifts it (:mod:`agent.level_evidence`)::

    anomaly' = sigmoid(logit(anomaly) + (matched if a keyword is in the line else unmatched))

and the alert labels keep their shares of the new anomaly. Which lines:

- **by default**, a line whose syslog tag names a program the model was not trained on
  (``pumpctl[311]: ...``; ``known_programs``, the shipped model's): software never read,
  by the line's own word. Held out, this wins 9 more sources against the grep at the same
  false alarms, and it passes the release gates on the logs of software the model knows;
- **on a source that asks** (``keyword_evidence = true``: file, MQTT, journal), every line:
  for a device's own application whose lines carry no tag (its own file, a service's
  stdout in the journal). Every line of every source is not a default: on the public log
  samples (mostly software the model has read) it flags more healthy lines than the
  written release gate lets a change add (docs/model.md).

A line that brings its program's level (journald) is left to the level: the two are the
same kind of evidence, and the level is the program's own word. The keywords are plain
words matched case-insensitively anywhere in the line, as ``grep -iE
'fatal|fail|error|panic|critical'`` does — never an operator's regular expression, so no
line can make the match slow. Pure functions of their inputs; the pipeline applies them.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator

from agent.featurizer import head_end
from agent.level_evidence import shift_anomaly, with_anomaly
from contract.bundle_features import MAX_KNOWN_PROGRAMS
from contract.strict import Strict

DEFAULT_WORDS = ("fatal", "fail", "error", "panic", "critical")
# The programs the shipped model was trained on (nanomodel.realtext.PROGRAMS, written by
# ``python -m nanomodel.known_programs``; a test keeps the two the same).
KNOWN_PROGRAMS_PATH = Path(__file__).resolve().parent / "data" / "known_programs.json"
# A syslog tag at the start of the message: ``sshd[412]: ``, ``postfix/smtpd[9]: ``
# (postfix), ``sshd(pam_unix)[3]: `` (sshd), ``kernel: ``. Never a level word: ``error: x``
# names no program. Matched within the first characters after the head: linear, bounded.
_TAG = re.compile(r"(?!(?:debug|info|notice|warn|warning|error|err|crit|critical|fatal|alert"
                  r"|emerg|trace|panic)\b)([A-Za-z][\w.@-]{0,63})(?:\([\w.:-]{0,64}\))?"
                  r"(?:/[\w./-]{0,64})?(?:\[\d{1,10}\])?: ", re.IGNORECASE)


def known_programs() -> list[str]:
    """The programs the shipped model was trained on (lower case)."""
    return list(_shipped_programs())


@functools.cache
def _shipped_programs() -> tuple[str, ...]:
    return tuple(str(p) for p in json.loads(KNOWN_PROGRAMS_PATH.read_text())["programs"])


def program_of(text: str) -> str | None:
    """The program a syslog-style line names in its tag, lower case, after the head the
    featurizer drops (time and host); None when the line carries no tag."""
    start = head_end(text)
    tag = _TAG.match(text, start, start + 260)
    return tag.group(1).lower() if tag is not None else None


class KeywordEvidenceConfig(Strict):
    """``[model.keyword_evidence]``: which lines weigh the keywords in (those naming a
    program the model has not read; every line of a source with ``keyword_evidence =
    true``) and how much."""

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
    unknown_programs: bool = Field(
        default=True,
        description="Also weigh the lines without a weighed level that name a program not "
        "in known_programs — a log file's line by its syslog tag (sshd[412]: ), a journal "
        "line by its SYSLOG_IDENTIFIER (a service's stdout at info): software the model "
        "has never read. Lines without a tag and MQTT sensor text are weighed only on a "
        "source with keyword_evidence = true; false: only there.")
    known_programs: list[str] | None = Field(
        default=None, max_length=MAX_KNOWN_PROGRAMS,
        description="Programs the model was trained on (tags compared in lower case, "
        "postfix/smtpd as postfix): their lines are left to the words unless their source "
        "asks. Not set (the default): the programs the running model's bundle names (a "
        "site fine-tune made with 'nanofleet model train' adds the programs its lines "
        "name), or, for a bundle that names none, the list shipped with the agent. Set: "
        "this list, whatever the bundle says.")

    @field_validator("words", "known_programs")
    @classmethod
    def _plain_words(cls, words: list[str] | None) -> list[str] | None:
        for word in words or ():
            if not 1 <= len(word) <= 64 or not word.strip():
                raise ValueError(f"{word!r}: 1-64 characters, not only spaces")
        return words

    def for_bundle(self, programs: Sequence[str] | None) -> KeywordEvidenceConfig:
        """This config as it scores a bundle naming ``programs`` (its manifest's
        ``known_programs``): the operator's list where the config sets one, else the
        bundle's, else (None) the agent's shipped list."""
        if self.known_programs is not None or programs is None:
            return self
        return self.model_copy(update={"known_programs": list(programs)})

    def programs(self) -> tuple[str, ...]:
        """The known programs in force: the configured (or bundle's) list, else the
        agent's shipped one."""
        return tuple(self.known_programs) if self.known_programs is not None \
            else _shipped_programs()

    def unknown(self, text: str, program: str | None = None) -> bool:
        """Whether the line names a program the model has not read (and that counts:
        ``unknown_programs``): ``program`` where its source says which (the journal), else
        its tag."""
        return self.weighs(text, False, True, program)

    def weighs(self, text: str, asks: bool, tagged: bool, program: str | None = None,
               known: frozenset[str] | None = None) -> bool:
        """Whether a line without a weighed level weighs the keywords in: its source asks,
        or it names a program the model has not read — ``program`` where its source says
        which (the journal), else its tag where ``tagged`` (a log file's line). ``known``:
        the known programs as :func:`_known` gives them, when the caller holds them."""
        if asks:
            return True
        if not self.unknown_programs or not (tagged or program):
            return False
        return _names_other(text, program, known or _known(self.programs()))

    def found(self, text: str) -> str | None:
        """The first of the words (as configured) that is in the line, or None. Plain
        substring tests on the lower-cased line: linear, and several times faster than one
        case-insensitive regular expression of the alternatives."""
        low = text.lower()
        return next((w for w, lw in _lowered(tuple(self.words)) if lw in low), None)

    def note(self, text: str, asks: bool, tagged: bool, program: str | None = None) -> str:
        """What an alert's reason says about the keywords of a line without a level: the
        word that was found, or that none was, where they were weighed in (its source
        asks, or it names a program the model has not read: ``program`` where its source
        says which, else its tag where ``tagged``); else nothing."""
        if not self.weighs(text, asks, tagged, program):
            return ""
        word = self.found(text)
        return f" (keyword {word!r} weighed in)" if word is not None else " (no keyword)"


def _names_other(text: str, program: str | None, known: frozenset[str]) -> bool:
    """Whether the line names a program that is not in ``known``: ``program`` when its
    source says which, else the one its tag names (none: False)."""
    name = program.lower() if program else program_of(text)
    return name is not None and name not in known


@functools.lru_cache(maxsize=8)
def _known(programs: tuple[str, ...]) -> frozenset[str]:
    return frozenset(p.lower() for p in programs)


@functools.lru_cache(maxsize=8)
def _lowered(words: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple((w, w.lower()) for w in words)


def keyword_matches(texts: Sequence[str], cfg: KeywordEvidenceConfig) -> np.ndarray:
    """Whether a keyword is in each line (bool [B])."""
    words = [lw for _, lw in _lowered(tuple(cfg.words))]
    return np.array([any(w in t.lower() for w in words) for t in texts], dtype=bool)


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
    # Only the weighed lines are searched for keywords (the others keep their scores).
    matched = np.zeros(len(texts), dtype=bool)
    matched[rows] = keyword_matches([t for t, w in zip(texts, rows, strict=True) if w], cfg)
    offsets = np.where(matched, cfg.matched, cfg.unmatched)
    return with_anomaly(probs, anomaly, shift_anomaly(anomaly, offsets), rows, normal_index)


def weigh_keywords(probs: np.ndarray, anomaly: np.ndarray, texts: Sequence[str] | None,
                   keywords: Sequence[bool] | None, levels: Sequence[int | None],
                   cfg: KeywordEvidenceConfig, normal_index: int,
                   tagged: Sequence[bool] | None = None,
                   programs: Sequence[str | None] | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`apply_keyword_evidence` on the lines that bring no level (the level is the
    program's own word: it decides such a line) and whose source asks (``keywords``) or
    that name a program the model has not read: the one their source says (``programs``:
    the journal's identifier), else the one their tag names where ``tagged`` says their
    text may carry a syslog tag (a log file's; not an MQTT topic's prefix or a journal
    ``MESSAGE``; None: every line may). Returns the scores and how many were weighed.
    ``texts`` None: nothing to weigh."""
    if texts is None:
        return probs, anomaly, 0
    n = len(texts)
    asks = keywords if keywords is not None else [False] * n
    may_name = tagged if tagged is not None else [True] * n
    said = programs if programs is not None else [None] * n
    known = _known(cfg.programs())  # once a batch, not once a line
    weigh = [lv is None and cfg.weighs(t, bool(k), m, p, known)
             for t, k, m, p, lv in zip(texts, asks, may_name, said, levels, strict=True)]
    if not any(weigh):
        return probs, anomaly, 0
    probs, anomaly = apply_keyword_evidence(probs, anomaly, texts, weigh, cfg, normal_index)
    return probs, anomaly, sum(weigh)
