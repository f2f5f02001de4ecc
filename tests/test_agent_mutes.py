"""Alert mutes on the agent, in process: the mute set (revisions, expiry, the 90-day clamp,
source scoping, the storm guard), the alert gate around it, and the inbox that takes the
fleet server's payloads. The broker and the real agent: test_agent_mutes_broker.py."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

import agent.mutes
from agent.alerts import AlertGate, AlertPolicy
from agent.config import AlertConfig
from agent.metrics import Counters
from agent.mute_inbox import MAX_KEPT_BYTES, MAX_MUTE_LIST_BYTES, MuteInbox
from agent.mutes import MAX_TRACKED_SHAPES, MuteSet
from agent.tables import render
from contract.mutes import MAX_MUTE_DAYS, AlertMute, MuteList, message_shape, prefix_shape
from tests.support.json_log import READ, WRITE, WRITE_AGAIN

pytestmark = pytest.mark.unit

T0 = 1_750_000_000.0  # a Unix time: mutes expire by the wall clock
DAY = 86_400.0
FAILED = "sshd[311]: Failed password for root from 203.0.113.9 port 4242 ssh2"
FAILED_AGAIN = "sshd[2718]: Failed password for root from 198.51.100.7 port 50022 ssh2"
INVALID = "sshd[9]: Invalid user admin from 192.0.2.1 port 22"


def mute(text: str, mute_id: str = "0123456789ab", source: str | None = None,
         expires: float = T0 + DAY, reason: str = "jump host") -> AlertMute:
    return AlertMute(id=mute_id, shape=message_shape(text), source=source, expires=expires,
                     reason=reason)


def prefix_mute(line: str, mute_id: str = "0123456789ad", source: str | None = None,
                expires: float = T0 + DAY) -> AlertMute:
    """A mute of the start of ``line`` as the fleet server keeps it (500 characters)."""
    return AlertMute(id=mute_id, shape=prefix_shape(line[:500]), prefix=True, source=source,
                     expires=expires, reason="collector retries on its own")


def mute_list(revision: int, *mutes: AlertMute) -> MuteList:
    return MuteList(revision=revision, mutes=list(mutes))


# --- the mute set -----------------------------------------------------------------------

def test_newer_revisions_replace_the_list_older_and_equal_ones_are_ignored() -> None:
    s = MuteSet()
    assert s.revision is None and s.check("auth", FAILED, T0) is None
    assert s.replace(mute_list(5, mute(FAILED)), T0)  # the first list applies, any revision
    assert s.check("auth", FAILED_AGAIN, T0) is not None
    assert not s.replace(mute_list(5), T0)  # a replay of the same revision
    assert not s.replace(mute_list(4), T0)  # an older one
    assert s.revision == 5 and s.check("auth", FAILED, T0) is not None
    assert s.replace(mute_list(6, mute(INVALID, "0123456789ac")), T0)
    assert s.check("auth", FAILED, T0) is None  # missing from the newer list: lifted
    assert s.check("auth", INVALID, T0) is not None
    s.clear()
    assert s.revision is None and len(s) == 0 and s.replace(mute_list(1), T0)


def test_mutes_end_at_their_expiry_by_the_clock_passed_in() -> None:
    s = MuteSet()
    s.replace(mute_list(1, mute(FAILED, expires=T0 + 60),
                        mute(INVALID, "0123456789ac", expires=T0 - 1)), T0)
    assert len(s) == 1  # expired on arrival: dropped
    assert s.check("auth", INVALID, T0) is None
    assert s.check("auth", FAILED, T0 + 59) is not None
    assert s.check("auth", FAILED, T0 + 60) is None
    assert s.active(T0 + 60) == []


def test_no_mute_lasts_longer_than_the_contract_allows_whatever_it_claims() -> None:
    s = MuteSet()
    arrival = T0 + 5 * DAY
    s.replace(mute_list(1, mute(FAILED, expires=T0 + 10 * 365 * DAY)), arrival)
    limit = arrival + MAX_MUTE_DAYS * DAY
    assert s.active(arrival)[0]["expires"] == limit
    assert s.check("auth", FAILED, limit - 1) is not None
    assert s.check("auth", FAILED, limit) is None


def test_a_wall_clock_set_after_boot_neither_ends_the_mutes_nor_stretches_the_bound() -> None:
    """A device without a real-time clock boots in 1970, takes the retained list, then NTP
    sets its clock: the mutes stay in force (their expiry is in the future either way) and
    the 90-day bound still counts from arrival, on the monotonic clock."""
    s = MuteSet()
    boot_wall, boot_mono = 86_400.0, 12.0  # 2 January 1970, 12 s after boot
    s.replace(mute_list(1, mute(FAILED, expires=T0 + 7 * DAY)), boot_wall, boot_mono)
    synced = T0 + 60.0  # NTP answered a minute later
    assert s.check("auth", FAILED, synced, monotonic=boot_mono + 60) is not None
    assert s.active(synced, boot_mono + 60)[0]["expires"] == T0 + 7 * DAY
    # a forged expiry ten years out still ends 90 days after arrival (monotonic)
    forged = MuteSet()
    forged.replace(mute_list(1, mute(FAILED, expires=T0 + 3650 * DAY)), boot_wall, boot_mono)
    end = boot_mono + MAX_MUTE_DAYS * DAY
    assert forged.check("auth", FAILED, synced + 89 * DAY, monotonic=end - 1) is not None
    assert forged.check("auth", FAILED, synced + 91 * DAY, monotonic=end) is None


def test_a_mute_covers_its_shape_on_its_source_only() -> None:
    s = MuteSet()
    s.replace(mute_list(1, mute(FAILED, source="auth"), mute(INVALID, "0123456789ac")), T0)
    assert s.check("auth", FAILED_AGAIN, T0) is not None  # other values, same message
    assert s.check("journal", FAILED, T0) is None  # the mute names another source
    assert s.check("journal", INVALID, T0) is not None  # no source named: any source
    assert s.check("auth", "sshd[1]: Failed password for admin from 192.0.2.1", T0) is None
    other = s.check("auth", "sshd[1]: Invalid user admin from 10.1.1.1 port 9", T0)
    assert other is not None and other.mute.id == "0123456789ac"


def test_a_storming_shape_is_alerted_again_and_quiet_again_after_a_minute() -> None:
    s = MuteSet(storm_per_minute=3)
    s.replace(mute_list(1, mute(FAILED)), T0)
    actions = [s.check("auth", FAILED, T0 + i)
               for i in range(5)]  # 5 lines in 5 s: the 4th is over 3 a minute
    assert [v.action for v in actions if v] == ["muted"] * 3 + ["storm"] * 2
    assert actions[3] is not None and "more than 3 lines in the last minute" in actions[3].note
    # A minute after the storm's lines the shape is the device's normal again.
    calm = s.check("auth", FAILED, T0 + 4 + 60)
    assert calm is not None and calm.action == "muted"
    # One line every 20 s is three a minute: never a storm.
    assert all((v := s.check("auth", FAILED, T0 + 200 + 20 * i)) and v.action == "muted"
               for i in range(20))


def test_a_storm_is_counted_on_the_monotonic_clock_when_the_wall_clock_steps() -> None:
    """A device without a real-time clock steps its wall clock when NTP answers: the storm
    guard counts on the monotonic clock, so a step back does not make a calm shape (one
    line every 30 s, two a minute) look like a storm for the hour it went back."""
    s = MuteSet(storm_per_minute=3)
    s.replace(mute_list(1, mute(FAILED)), T0 - 2 * 3600)
    walls = [T0] + [T0 - 3600 + 30 * i for i in range(1, 8)]  # stepped back an hour
    actions = [s.check("auth", FAILED, wall, monotonic=30.0 * i)
               for i, wall in enumerate(walls)]
    assert [v.action for v in actions if v] == ["muted"] * 8
    # and a real storm after the step is still one
    burst = [s.check("auth", FAILED, T0 - 3000 + i, monotonic=1000.0 + i) for i in range(5)]
    assert [v.action for v in burst if v] == ["muted"] * 3 + ["storm"] * 2


def test_what_the_storm_guard_remembers_is_bounded() -> None:
    s = MuteSet(storm_per_minute=30)
    s.replace(mute_list(1, mute(FAILED)), T0)
    for i in range(10_000):
        s.check("auth", FAILED, T0 + i / 1000)
    [seen] = s._seen.values()
    assert len(seen) == 31 and seen.maxlen == 31
    s.set_storm_per_minute(5)  # a reload with a lower threshold: the bound follows
    [seen] = s._seen.values()
    assert seen.maxlen == 6 and len(seen) == 6


def test_the_lines_the_storm_guard_remembers_are_bounded() -> None:
    """Under a prefix mute every line of a new tail is a line to remember: at most
    MAX_TRACKED_SHAPES of them, the one muted longest ago forgotten first."""
    s = MuteSet(storm_per_minute=3)
    s.replace(mute_list(1, prefix_mute(WRITE)), T0)
    for i in range(MAX_TRACKED_SHAPES + 10):
        s.check(f"app-{i}", WRITE, T0 + i / 1000)
    assert len(s._seen) == MAX_TRACKED_SHAPES
    assert ("app-0", message_shape(WRITE)[:200]) not in s._seen


def test_a_republished_list_keeps_the_storm_going() -> None:
    """A new revision that keeps a mute keeps its recent lines: re-sending the list must
    not make a storming shape quiet again."""
    s = MuteSet(storm_per_minute=2)
    s.replace(mute_list(1, mute(FAILED)), T0)
    for i in range(3):
        s.check("auth", FAILED, T0 + i)
    s.replace(mute_list(2, mute(FAILED), mute(INVALID, "0123456789ac")), T0 + 3)
    verdict = s.check("auth", FAILED, T0 + 4)
    assert verdict is not None and verdict.action == "storm"


def test_the_same_shape_under_new_mute_ids_keeps_the_storm_going() -> None:
    """The guard remembers a shape's lines, not a mute id's (review, December 2026: a
    stolen server identity re-sending the mute every 2 s under a fresh id kept a 10 lines/s
    brute force muted for good). A shape no mute names any more starts afresh."""
    s = MuteSet(storm_per_minute=2)
    for i in range(6):
        s.replace(mute_list(i + 1, mute(FAILED, f"{i:012x}")), T0 + i)
        verdict = s.check("auth", FAILED, T0 + i + 0.5)
        assert verdict is not None
    assert verdict.action == "storm"
    s.replace(mute_list(7, mute(INVALID, "0123456789ac")), T0 + 7)
    s.replace(mute_list(8, mute(FAILED, "0123456789ad")), T0 + 8)
    verdict = s.check("auth", FAILED, T0 + 9)
    assert verdict is not None and verdict.action == "muted"


def test_the_technicians_view_lists_the_mutes_in_force() -> None:
    s = MuteSet()
    s.replace(mute_list(3, mute(FAILED, expires=T0 + 2 * DAY),
                        mute(INVALID, "0123456789ac", source="auth", expires=T0 + DAY,
                             reason="scanner on the LAN")), T0)
    active = s.active(T0)
    assert [m["id"] for m in active] == ["0123456789ac", "0123456789ab"]  # soonest first
    assert active[0] == {"id": "0123456789ac", "shape": message_shape(INVALID), "prefix": False,
                         "source": "auth", "expires": T0 + DAY, "reason": "scanner on the LAN"}
    text = render("mutes", {"enabled": True, "revision": 3, "storm_per_minute": 30,
                            "mutes": active})
    assert "revision" in text and "SHAPE" in text and "scanner on the LAN" in text
    assert "sshd[#]: invalid user admin from # port #" in text
    assert text.splitlines()[4].split()[:2] == ["ID", "MATCH"]
    assert [row.split()[1] for row in text.splitlines()[5:]] == ["whole", "whole"]
    assert "(none)" in render("mutes", {"enabled": False, "revision": None,
                                        "storm_per_minute": 30, "mutes": []})


# --- prefix mutes (a line the server kept cut) ----------------------------------------------

def test_a_prefix_mute_covers_the_lines_whose_shape_starts_with_it() -> None:
    s = MuteSet()
    s.replace(mute_list(1, mute(FAILED), prefix_mute(WRITE, source="app")), T0)
    assert len(s) == 2
    verdict = s.check("app", WRITE_AGAIN, T0)  # other values, other lengths
    assert verdict is not None and verdict.mute.prefix and verdict.mute.id == "0123456789ad"
    assert s.check("app", WRITE, T0) is not None
    assert s.check("app", READ, T0) is None  # another message that begins alike
    assert s.check("journal", WRITE, T0) is None  # its source only
    assert s.check("app", WRITE[:300], T0) is None  # less than the start muted
    # The whole shapes' mutes are still found by their shape, beside it.
    whole = s.check("auth", FAILED_AGAIN, T0)
    assert whole is not None and whole.mute.id == "0123456789ab"


def test_prefix_mutes_expire_and_are_bounded_like_the_others() -> None:
    s = MuteSet()
    s.replace(mute_list(1, prefix_mute(WRITE, expires=T0 + 10 * 365 * DAY),
                        prefix_mute(READ, "0123456789ae", expires=T0 + 60)), T0)
    assert s.check("app", READ, T0 + 59) is not None
    assert s.check("app", READ, T0 + 60) is None
    limit = T0 + MAX_MUTE_DAYS * DAY
    assert s.check("app", WRITE, limit - 1) is not None
    assert s.check("app", WRITE, limit) is None
    assert [m["id"] for m in s.active(T0)] == ["0123456789ae", "0123456789ad"]
    assert s.active(T0)[1] == {"id": "0123456789ad", "shape": prefix_shape(WRITE[:500]),
                               "prefix": True, "source": None, "expires": limit,
                               "reason": "collector retries on its own"}
    text = render("mutes", {"enabled": True, "revision": 1, "storm_per_minute": 30,
                            "mutes": s.active(T0)})
    assert [row.split()[:2] for row in text.splitlines()[5:]] == [
        ["0123456789ae", "start"], ["0123456789ad", "start"]]
    assert s.replace(mute_list(2), T0) and len(s) == 0 and s.check("app", WRITE, T0) is None
    s.replace(mute_list(3, prefix_mute(WRITE)), T0)
    s.clear()
    assert len(s) == 0 and s.check("app", WRITE, T0) is None


def test_a_storm_of_lines_under_a_prefix_mute_is_alerted_again() -> None:
    s = MuteSet(storm_per_minute=3)
    s.replace(mute_list(1, prefix_mute(WRITE)), T0)
    actions = [s.check("app", WRITE if i % 2 else WRITE_AGAIN, T0 + i) for i in range(5)]
    assert [v.action for v in actions if v] == ["muted"] * 3 + ["storm"] * 2
    # a list that keeps the mute keeps its storm; so does one whose mute of the whole
    # shape covers the same line now (the guard counts lines, not mutes)
    s.replace(mute_list(2, prefix_mute(WRITE), mute(FAILED)), T0 + 5)
    again = s.check("app", WRITE, T0 + 6)
    assert again is not None and again.action == "storm"
    whole = AlertMute(id="0123456789ad", shape=message_shape(WRITE), expires=T0 + DAY)
    s.replace(mute_list(3, whole), T0 + 7)
    still = s.check("app", WRITE, T0 + 8)
    assert still is not None and still.action == "storm" and not still.mute.prefix
    # a line no mute covers any more starts afresh when muted again
    s.replace(mute_list(4, mute(FAILED)), T0 + 9)
    s.set_storm_per_minute(1)
    s.replace(mute_list(5, prefix_mute(WRITE)), T0 + 10)
    assert [v.action for v in (s.check("app", WRITE, T0 + 11 + i) for i in range(3)) if v] \
        == ["muted", "storm", "storm"]
    [seen] = s._seen.values()
    assert seen.maxlen == 2


def test_a_list_that_moves_a_mutes_scope_or_splits_a_line_keeps_the_storm_going() -> None:
    """Review, December 2026: counted per mute, a forged list that flipped a mute's source
    scope each revision started its count again, and two prefix mutes of one line swapped
    each revision split it: 60 lines a minute against a threshold of 5 stayed muted."""
    s = MuteSet(storm_per_minute=5)
    scoped = AlertMute(id="0123456789ab", shape=message_shape(FAILED), source="auth",
                       expires=T0 + DAY)
    anywhere = scoped.model_copy(update={"source": None})
    actions = []
    for i in range(60):
        s.replace(mute_list(i + 1, scoped if i % 2 else anywhere), T0 + i)
        verdict = s.check("auth", FAILED, T0 + i + 0.5)
        assert verdict is not None
        actions.append(verdict.action)
    assert actions[:5] == ["muted"] * 5 and set(actions[5:]) == {"storm"}

    s = MuteSet(storm_per_minute=5)
    long_start, shorter = prefix_mute(WRITE), prefix_mute(WRITE)
    shorter = shorter.model_copy(update={"id": "0123456789af",
                                         "shape": long_start.shape[:-1]})
    actions = []
    for i in range(10):
        pair = (long_start, shorter) if i % 2 else (shorter, long_start)
        s.replace(mute_list(i + 1, *pair), T0 + i)
        verdict = s.check("app", WRITE, T0 + i + 0.5)
        assert verdict is not None
        actions.append(verdict.action)
    assert actions[:5] == ["muted"] * 5 and set(actions[5:]) == {"storm"}


def test_a_prefix_mute_kept_on_disk_is_restored(tmp_path: Path) -> None:
    store = tmp_path / "mutes.json"
    doc = mute_list(5, prefix_mute(WRITE))
    assert MuteInbox(MuteSet(), Counters(), "gate-03", store=store).submit(
        doc.model_dump_json().encode(), now=T0)
    later = MuteSet()
    assert MuteInbox(later, Counters(), "gate-03", store=store).restore(now=T0 + 60,
                                                                        monotonic=3.0)
    assert later.check("app", WRITE_AGAIN, T0 + 60, monotonic=3.0) is not None
    assert later.active(T0 + 60, 3.0)[0]["prefix"] is True


def test_a_forged_short_prefix_is_refused_and_the_mutes_held_stay(
        caplog: pytest.LogCaptureFixture) -> None:
    """A list that would mute every line that starts with a number (a ``#`` prefix)."""
    box, mutes, counters = inbox()
    box.submit(mute_list(2, mute(FAILED)).model_dump_json().encode(), now=T0)
    forged = (b'{"revision": 3, "mutes": [{"id": "0123456789ab", "shape": "#", '
              b'"prefix": true, "expires": 1900000000}]}')
    with caplog.at_level(logging.WARNING, logger="nanofleet.agent.mutes"):
        assert not box.submit(forged, now=T0)
    assert counters.get("mutes_rejected") == 1 and "at least 200" in caplog.text
    assert mutes.revision == 2 and mutes.check("app", "#1 " + WRITE, T0) is None
    assert mutes.check("auth", FAILED, T0) is not None


# --- the alert gate ---------------------------------------------------------------------

LABELS = ["normal", "security", "storage"]


def gate_with(cfg: AlertConfig, *mutes: AlertMute) -> tuple[AlertGate, AlertPolicy, Counters]:
    counters = Counters()
    mute_set = MuteSet()
    mute_set.replace(mute_list(1, *mutes), T0)
    gate = AlertGate(cfg, counters, mute_set)
    return gate, AlertPolicy.build(cfg, LABELS, "normal"), counters


def test_a_muted_alert_is_held_back_and_counted_other_shapes_are_not() -> None:
    gate, policy, counters = gate_with(AlertConfig(), mute(FAILED))
    m = gate.limiter.last  # the rate limiter counts from the monotonic clock
    assert gate.admit(policy, "auth", "security", 0.99, 0.99, m + 0.0, text=FAILED_AGAIN,
                      wall=T0) is None
    # The muted line never reached the repeat filter: the next security alert of that
    # source is the first of its group, not a repeat of a line nobody was told about.
    sent = gate.admit(policy, "auth", "security", 0.99, 0.99, m + 1.0, text=INVALID, wall=T0)
    assert sent is not None and sent.repeats == 0
    assert sent.reason == "label security score 0.99 >= 0.80"
    assert gate.admit(policy, "auth", "normal", 0.99, 0.01, m + 2.0, text=FAILED,
                      wall=T0) is None  # no alert to mute
    counts, _ = counters.snapshot()
    assert counts == {"alerts_muted": 1}


def test_a_storm_of_a_muted_shape_is_sent_with_its_reason() -> None:
    gate, policy, counters = gate_with(
        AlertConfig(mute_storm_per_minute=30, repeat_window_s=0), mute(FAILED))
    m = gate.limiter.last
    sent = [gate.admit(policy, "auth", "security", 0.99, 0.99, m + i / 10, text=FAILED,
                       wall=T0 + i / 10) for i in range(32)]
    assert sent[:30] == [None] * 30
    assert all(d is not None for d in sent[30:])
    assert sent[30] is not None and sent[30].reason == (
        "label security score 0.99 >= 0.80; muted shape storming: more than 30 lines in "
        "the last minute")
    counts, _ = counters.snapshot()
    assert counts == {"alerts_muted": 30, "alerts_mute_storm": 2}


def test_mutes_off_in_the_config_send_every_alert() -> None:
    gate, policy, counters = gate_with(AlertConfig(mutes=False), mute(FAILED))
    sent = gate.admit(policy, "auth", "security", 0.99, 0.99, gate.limiter.last, text=FAILED,
                      wall=T0)
    assert sent is not None and "muted" not in sent.reason
    assert counters.snapshot()[0] == {}


def test_a_new_gate_keeps_the_mutes_and_takes_the_new_storm_threshold() -> None:
    """A config reload builds a new gate around the agent's one mute set."""
    gate, policy, counters = gate_with(AlertConfig(), mute(FAILED))
    reloaded = AlertGate(AlertConfig(mute_storm_per_minute=1), counters, gate.mutes)
    m = reloaded.limiter.last
    assert reloaded.admit(policy, "auth", "security", 0.99, 0.99, m, text=FAILED,
                          wall=T0) is None
    storm = reloaded.admit(policy, "auth", "security", 0.99, 0.99, m + 0.1, text=FAILED,
                           wall=T0 + 0.1)
    assert storm is not None and "more than 1 lines" in storm.reason


def test_the_shape_is_computed_for_alert_candidates_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The regex passes of message_shape run once per alert the policy fires, never for
    the lines that raise none (nor at all while nothing is muted)."""
    shaped: list[str] = []
    real = agent.mutes.message_shape

    def counting(text: str) -> str:  # the real function, counted
        shaped.append(text)
        return real(text)

    monkeypatch.setattr(agent.mutes, "message_shape", counting)
    gate, policy, _ = gate_with(AlertConfig(repeat_window_s=0), mute(FAILED))
    for i in range(50):
        gate.admit(policy, "app", "normal", 0.99, 0.01, float(i), text=f"served {i}", wall=T0)
    gate.admit(policy, "auth", "security", 0.99, 0.99, 60.0, text=FAILED, wall=T0)
    assert shaped == [FAILED]
    empty, policy, _ = gate_with(AlertConfig())
    empty.admit(policy, "auth", "security", 0.99, 0.99, 0.0, text=FAILED, wall=T0)
    assert shaped == [FAILED]


# --- the inbox --------------------------------------------------------------------------

def inbox() -> tuple[MuteInbox, MuteSet, Counters]:
    counters = Counters()
    mutes = MuteSet()
    return MuteInbox(mutes, counters, "pump-07"), mutes, counters


def test_the_inbox_applies_newer_lists_only() -> None:
    box, mutes, counters = inbox()
    assert box.submit(mute_list(2, mute(FAILED)).model_dump_json().encode(), now=T0)
    assert not box.submit(mute_list(1).model_dump_json().encode(), now=T0)
    assert mutes.revision == 2 and counters.get("mute_lists_applied") == 1


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "Invalid JSON"),
    (b'{"revision": 3, "mutes": [{"id": "0123456789ab", "shape": "x"}]}',
     "mutes.0.expires: Field required"),
    (b'{"revision": 3, "mutes": [], "everything": true}', "Extra inputs"),
    (b'{"revision": 3, "mutes": []}\xff', "not UTF-8 (byte 28)"),
    (b'{"revision": 3, "mutes": [], "pad": "' + b"x" * MAX_MUTE_LIST_BYTES + b'"}',
     f"more than {MAX_MUTE_LIST_BYTES}"),
])
def test_a_broken_list_is_refused_counted_logged_and_the_mutes_held_stay(
        payload: bytes, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    box, mutes, counters = inbox()
    box.submit(mute_list(2, mute(FAILED)).model_dump_json().encode(), now=T0)
    with caplog.at_level(logging.WARNING, logger="nanofleet.agent.mutes"):
        assert not box.submit(payload, now=T0)
    assert counters.get("mutes_rejected") == 1
    [record] = caplog.records
    assert record.getMessage().startswith("mute list refused, keeping the mutes held: ")
    assert reason in record.getMessage() and len(record.getMessage()) < 400
    assert mutes.revision == 2 and mutes.check("auth", FAILED, T0) is not None


def test_a_deleted_list_lifts_every_mute() -> None:
    """The retained list deleted (an empty payload): the server holds none, nothing is
    muted, and the next list applies whatever its revision."""
    box, mutes, _ = inbox()
    box.submit(mute_list(7, mute(FAILED)).model_dump_json().encode(), now=T0)
    assert box.submit(b"", now=T0)
    assert mutes.check("auth", FAILED, T0) is None and mutes.revision is None
    assert box.submit(mute_list(1, mute(FAILED)).model_dump_json().encode(), now=T0)


# --- the list kept on disk ----------------------------------------------------------------
def test_an_accepted_list_is_kept_and_restored_with_its_bound_from_first_arrival(
        tmp_path: Path) -> None:
    store = tmp_path / "mutes.json"
    inbox = MuteInbox(MuteSet(), Counters(), "gate-03", store=store)
    doc = mute_list(4, mute(FAILED, expires=T0 + 3650 * DAY))
    assert inbox.submit(doc.model_dump_json().encode(), now=T0)
    assert store.exists() and store.stat().st_mode & 0o777 == 0o640
    # ten days later the agent restarts: the same list, 80 days of the bound left
    later = MuteSet()
    restored = MuteInbox(later, Counters(), "gate-03", store=store)
    assert restored.restore(now=T0 + 10 * DAY, monotonic=5.0)
    assert later.revision == 4
    assert later.check("auth", FAILED, T0 + 10 * DAY, monotonic=5.0) is not None
    assert later.check("auth", FAILED, T0 + 90 * DAY, monotonic=5.0 + 80 * DAY) is None
    # the broker's retained copy of the same revision changes nothing
    assert not restored.submit(doc.model_dump_json().encode(), now=T0 + 10 * DAY)
    # a cleared list is forgotten on disk too
    assert restored.submit(b"", now=T0 + 11 * DAY) and not store.exists()


def test_a_full_list_of_non_ascii_lines_survives_a_restart(tmp_path: Path) -> None:
    """Review, December 2026: the list was kept re-encoded with JSON's ASCII escapes; 256
    mutes of Chinese log lines (161 KB on the wire) took 295 KB on disk, more than the
    start reads, and the device came up with no mutes. Kept as received now."""
    store = tmp_path / "mutes.json"
    line = "磁盘 /dev/sda 温度过高 风扇转速异常 请检查散热系统和电源模块的连接状态" * 4
    mutes = [AlertMute(id=f"{i:012x}", shape=message_shape(f"{line} 设备编号甲乙丙{i}号"[:500]),
                       expires=T0 + DAY, reason="现场维护中 已知问题" * 10)
             for i in range(256)]
    payload = MuteList(revision=9, mutes=mutes).model_dump_json().encode()
    assert len(payload) <= MAX_MUTE_LIST_BYTES
    assert len(payload.decode().encode("ascii", "backslashreplace")) > MAX_KEPT_BYTES
    assert MuteInbox(MuteSet(), Counters(), "gate-03", store=store).submit(payload, now=T0)
    assert store.stat().st_size < len(payload) + 100
    counters, later = Counters(), MuteSet()
    assert MuteInbox(later, counters, "gate-03", store=store).restore(now=T0 + 60,
                                                                     monotonic=1.0)
    assert later.revision == 9 and len(later.active(T0 + 60, 1.0)) == 256
    assert counters.get("mutes_rejected") == 0


def test_a_list_kept_by_an_earlier_agent_is_restored(tmp_path: Path) -> None:
    """Agents before December 2026 kept one JSON object; an upgrade keeps its mutes."""
    store = tmp_path / "mutes.json"
    store.write_text(json.dumps({"received_at": T0,
                                 "list": mute_list(3, mute(FAILED)).model_dump(mode="json")}))
    later = MuteSet()
    assert MuteInbox(later, Counters(), "gate-03", store=store).restore(now=T0 + 60,
                                                                       monotonic=1.0)
    assert later.revision == 3 and later.check("auth", FAILED, T0 + 60, 1.0) is not None


def test_a_list_kept_on_disk_that_cannot_be_read_is_counted_and_ignored(
        tmp_path: Path) -> None:
    store = tmp_path / "mutes.json"
    for broken in (b"{", b'{"received_at": 1}', b'{"received_at": "x", "list": {}}',
                   b'{"received_at": 1, "list": {"revision": 1, "mutes": "all"}}',
                   b"\xff\xfe",
                   # an int past floats (before: OverflowError, the daemon did not start)
                   b'{"received_at": 1' + b"0" * 400 + b', "list": {}}',
                   b'{"received_at": 1}\n{', b'{"received_at": 1}\n', b'x\n{}',
                   b'{"received_at": 1' + b"0" * 400 + b'}\n{"revision": 1, "mutes": []}',
                   b'{"received_at": 1}\n{"revision": 1, "mutes": []}'
                   + b" " * MAX_KEPT_BYTES):
        store.write_bytes(broken)
        counters, mutes = Counters(), MuteSet()
        assert not MuteInbox(mutes, counters, "gate-03", store=store).restore(now=T0)
        assert counters.get("mutes_rejected") == 1 and mutes.revision is None
    # something that is not a file is never read (a FIFO would block the start)
    store.unlink()
    os.mkfifo(store)
    counters, mutes = Counters(), MuteSet()
    assert not MuteInbox(mutes, counters, "gate-03", store=store).restore(now=T0)
    assert counters.get("mutes_rejected") == 1
