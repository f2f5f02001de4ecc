"""An alert's reason names the words that pushed its line towards an alert (issue 9 item
5), from the live model's own gradient (agent.explain), in a string every server accepts."""

from __future__ import annotations

from typing import Any, cast

from agent import default_bundle_path
from agent.metrics import Counters
from agent.model import LoadedModel
from agent.pipeline import WHY_WORDS, Pipeline


class _Counted:
    def __init__(self) -> None:
        self.counters = Counters()


def why(model: object, text: str, pipeline: object | None = None) -> str:
    # _why reads only the pipeline's counters: call it without building a whole one.
    return Pipeline._why(cast(Any, pipeline or _Counted()), cast(Any, model), text)


def test_the_words_come_from_the_live_model_strongest_first() -> None:
    model = LoadedModel.load(default_bundle_path())
    text = "kernel: EXT4-fs error (device mmcblk0p2): I/O error reading inode 1234"
    said = why(model, text)
    assert said.startswith("; why: ")
    words = [w.rsplit(" ", 1) for w in said.removeprefix("; why: ").split(", ")]
    assert 1 <= len(words) <= WHY_WORDS
    weights = [float(v) for _, v in words]
    assert all(v > 0 for v in weights) and weights == sorted(weights, reverse=True)
    assert all(w in text for w, _ in words)
    expected = [w for w in model.explain([text], top=3 * WHY_WORDS)[0]
                if float(w["weight"]) > 0 and sum(c.isalpha() for c in str(w["word"])) >= 2]
    assert [w for w, _ in words] == [str(w["word"]) for w in expected[:WHY_WORDS]]
    model.close()


class NoExplain:
    pass


class OnlyTowardsNormal:
    def explain(self, texts: list[str], top: int = 5) -> list[list[dict[str, float | str]]]:
        return [[{"word": "up", "weight": -3.0}, {"word": "07", "weight": 2.0},
                 {"word": "C", "weight": 1.0}] for _ in texts]


def test_no_words_when_the_model_cannot_explain_or_nothing_pushed_towards_an_alert() -> None:
    # Numbers and single letters are left out: they tell a technician nothing.
    assert why(NoExplain(), "anything") == ""
    assert why(OnlyTowardsNormal(), "eth0: link up") == ""


class Broken:
    def explain(self, texts: list[str], top: int = 5) -> list[list[dict[str, float | str]]]:
        raise ZeroDivisionError("a bug")


def test_a_failing_explanation_costs_the_alert_its_words_only() -> None:
    host = _Counted()
    assert why(Broken(), "disk failed", host) == ""
    assert host.counters.snapshot()[0]["explain_errors"] == 1


def test_the_cli_shows_an_alerts_words_and_level() -> None:
    from agent.tables import render

    alert = {"reason": "label storage score 0.82 >= 0.80 (logged at crit); why: checksum "
             "+4.1, mismatch +2.3", "item": {"ts": 1.7e9, "label": "storage", "score": 0.82,
                                             "source": "journald", "text": "checksum mismatch"}}
    plain = {"reason": "anomaly 0.97 >= 0.95", "item": alert["item"]}
    out = render("recent_alerts", [alert, plain]).splitlines()
    assert "WHY" in out[0]
    assert "crit; checksum +4.1, mismatch +2.3" in out[1] and " - " in out[2]


def test_the_cli_does_not_let_a_log_line_drive_the_terminal() -> None:
    """A line's text is whoever wrote the log (a journald message may hold escapes and
    newlines): before (review, December 2026), `query recent_alerts` printed it raw, and
    `ESC[1A ESC[2K` erased the real alert's row above while a newline forged another."""
    from agent.tables import render

    forged = "ok\x1b[1A\x1b[2K\rFAKE   normal  0.01  journald  -  all good\nsecond"
    alert = {"reason": "anomaly 0.97 >= 0.95", "item": {
        "ts": 1.7e9, "label": "security", "score": 0.99, "source": "journald\x1b]0;x\x07",
        "text": forged}}
    out = render("recent_alerts", [alert])
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert len(out.splitlines()) == 2  # the header and the one alert
