"""The corpus's state lines (nanomodel.states): the state word decides the label."""

from __future__ import annotations

import random
from collections import defaultdict

from nanomodel.realtrain import MixConfig, training_rows
from nanomodel.states import KINDS, framed_states, state_line, state_lines
from nanomodel.templates import LABELS


def test_every_kind_says_both_and_its_alarms_carry_its_category() -> None:
    rng = random.Random(0)
    for name, kind in KINDS.items():
        assert kind.label in LABELS and kind.label != "normal", name
        assert kind.healthy and kind.alarm and kind.subjects, name
        for healthy in (True, False):
            line = state_line(kind, healthy, rng)
            assert line and "{" not in line and "}" not in line, (name, line)
    rows = state_lines(3000, 1)
    by_label: dict[str, int] = defaultdict(int)
    for e in rows:
        by_label[e.label] += 1
    assert set(by_label) == {"normal"} | {k.label for k in KINDS.values()}
    # half of the kinds' lines and every peer line (a tenth) are healthy
    assert 0.5 < by_label["normal"] / len(rows) < 0.6


def test_a_state_means_one_thing_whatever_the_subject() -> None:
    """A state word that is healthy for one kind and an alarm for another would teach the
    model to read the subject instead of the state; the one such word is ``full`` (a
    battery full is charged, a disk full is an alarm), kept on purpose as a pair."""
    healthy = {t for k in KINDS.values() for t in k.healthy}
    alarm = {t for k in KINDS.values() for t in k.alarm}
    assert healthy & alarm == {"full"}


def test_the_same_subjects_are_said_healthy_and_in_alarm() -> None:
    """The state-word rule: a subject seen only in alarm would carry the label itself."""
    seen: dict[str, set[bool]] = defaultdict(set)
    # Only lines that start "<subject> " are read: 8,000 of them show every subject both
    # ways (4,000 did while the bare "{s} {t}" join was listed twice, i.e. drawn twice as
    # often).
    for e in state_lines(8000, 2):
        text = e.text.lower()
        for kind in KINDS.values():
            for subject in kind.subjects:
                if "{" not in subject and text.startswith(subject.lower() + " "):
                    seen[subject.lower()].add(e.label == "normal")
    assert len(seen) > 40
    one_sided = [s for s, sides in seen.items() if sides != {True, False}]
    assert not one_sided, one_sided


def test_same_seed_same_lines_and_the_other_draws_of_a_mix_do_not_move() -> None:
    assert state_lines(50, 5) == state_lines(50, 5)
    assert state_lines(50, 5) != state_lines(50, 6)
    framed = framed_states(400, 9)
    bare = [e for e in framed if e.text in {s.text for s in state_lines(400, 9)}]
    assert 0.35 < len(bare) / len(framed) < 0.65  # half bare, half in a log style
    real = [("sshd[1]: Accepted publickey for pi", "normal", "openssh"),
            ("eth0: link down", "network", "linux")] * 20
    base = MixConfig(corpus_lines=100, reading_lines=50)
    t0, y0, _ = training_rows(real, base)
    t1, y1, w1 = training_rows(real, MixConfig(**{**base.__dict__, "state_lines": 80}))
    assert t1[:len(t0)] == t0 and list(y1[:len(y0)]) == list(y0)
    assert len(t1) == len(t0) + 80 and len(w1) == len(t1)
