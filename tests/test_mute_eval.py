"""The mute replay behind benchmarks/alert_mutes.py: judged false alarms' shapes are muted
on the rest of their own source's stream, and a real alert of another shape is kept."""

from __future__ import annotations

import pytest

from nanomodel.mute_eval import replay_mutes
from tests.support.json_log import READ, WRITE, WRITE_AGAIN

SSH_CLOSED = "sshd[{}]: Connection closed by 192.0.2.{} port {} [preauth]"
SSH_FAILED = "sshd[{}]: Failed password for root from 192.0.2.{} port {} ssh2"


def _stream() -> tuple[list[str], list[bool], list[str], list[bool]]:
    rows: list[tuple[str, bool, str, bool]] = []
    for n in range(10):  # the same healthy line repeats, flagged every time
        rows.append((SSH_CLOSED.format(100 + n, n, 40000 + n), False, "openssh", True))
        rows.append((SSH_FAILED.format(200 + n, n, 50000 + n), True, "openssh", n % 2 == 0))
    # another source printing the very same healthy line: the mute is not its
    rows.append((SSH_CLOSED.format(1, 1, 1), False, "dropbear", True))
    rows.append((SSH_CLOSED.format(2, 2, 2), False, "dropbear", True))
    return ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
            [r[3] for r in rows])


def test_a_judged_false_alarm_is_quiet_afterwards_and_real_alerts_stay() -> None:
    figures = replay_mutes(*_stream(), judged_share=0.5)
    ssh = figures["openssh"]
    assert (ssh.mutes, ssh.judged_false_alarms) == (1, 5)
    assert (ssh.healthy, ssh.alerts) == (5, 5)
    assert (ssh.false_alarms_before, ssh.false_alarms_after) == (5, 0)
    assert (ssh.found_before, ssh.found_after) == (2, 2)  # flagged at n = 6 and 8
    assert ssh.recall_after == ssh.recall_before == pytest.approx(0.4)
    other = figures["dropbear"]  # judged its first line itself: its second one is muted
    assert (other.mutes, other.false_alarms_before, other.false_alarms_after) == (1, 1, 0)
    overall = figures["overall"]
    assert overall.false_alarms_after == 0 and overall.found_after == 2
    assert overall.false_alarm_rate_before == pytest.approx(6 / 6)


def test_a_mute_of_one_source_does_not_reach_another() -> None:
    texts, alert, source, flag = _stream()
    # dropbear judges nothing flagged in its first half: its lines stay loud
    flag[-2] = False
    figures = replay_mutes(texts, alert, source, flag, judged_share=0.5)
    assert figures["dropbear"].mutes == 0
    assert figures["dropbear"].false_alarms_after == 1


@pytest.mark.parametrize("share", [0.0, 1.0, -0.5])
def test_the_judged_share_is_a_fraction(share: float) -> None:
    with pytest.raises(ValueError, match="judged_share"):
        replay_mutes(*_stream(), judged_share=share)


def test_misaligned_inputs_are_refused() -> None:
    texts, alert, source, flag = _stream()
    with pytest.raises(ValueError, match="aligned"):
        replay_mutes(texts, alert[:-1], source, flag, judged_share=0.5)


def test_a_long_line_is_muted_by_its_start_as_the_fleet_server_mutes_it() -> None:
    """A line of 500 characters or more: the server keeps its start, and the replay mutes
    the lines whose shape starts with that start's shape, as the device does."""
    texts = [WRITE, WRITE_AGAIN, READ]
    figures = replay_mutes(texts, [False, False, True], ["app"] * 3, [True] * 3,
                           judged_share=0.34)
    app = figures["app"]
    assert (app.mutes, app.false_alarms_before, app.false_alarms_after) == (1, 1, 0)
    assert (app.found_before, app.found_after) == (1, 1)  # another message stays loud
