"""The mute contract both sides share: what a message shape keeps and drops, and the
bounds a mute list carries."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contract.mutes import (
    MAX_MUTES,
    MAX_SHAPE_CHARS,
    AlertMute,
    MuteList,
    message_shape,
    mutes_topic,
)


@pytest.mark.parametrize(("a", "b"), [
    # the same message on another day, from another address, another pid and port
    ("Dec 10 07:08:28 gw sshd[24208]: Connection closed by 198.51.100.4 port 5150 [preauth]",
     "Jan  2 17:58:03 gw sshd[311]: Connection closed by 2001:db8::12 port 40022 [preauth]"),
    ("wlan0: STA 00:11:22:aa:bb:cc IEEE 802.11: disassociated",
     "wlan0: STA 0a:1b:2c:3d:4e:5f IEEE 802.11: disassociated"),
    ("job 5f0e1c2a-1111-2222-3333-444455556666 done in 12ms (crc 0x1f3a)",
     "job 00000000-aaaa-bbbb-cccc-dddddddddddd done in 9ms (crc 0xff)"),
    ("usb 1-1.2: device descriptor read/64, error -71",
     "USB 3-2.4:  device descriptor read/64,   error -110"),
    ("2026-12-04T18:11:57.123+01:00 WARN [main] session expired after 12ms",
     "2027-01-30 02:03:04,9 WARN [main] session expired after 7ms"),
    ("28.11.2024 09:00:21;SPS1;A1201;Wicklungstemp. P3 zu hoch 127 Grad C",
     "05.12.2024 10:14:02;SPS1;A1201;Wicklungstemp. P3 zu hoch 131 Grad C"),
])
def test_repeats_of_one_message_have_one_shape(a: str, b: str) -> None:
    assert message_shape(a) == message_shape(b)


@pytest.mark.parametrize(("a", "b"), [
    # other words are another message: a mute never reaches them
    ("sshd[1]: Connection closed by 192.0.2.1 port 22 [preauth]",
     "sshd[1]: Failed password for root from 192.0.2.1 port 22 ssh2"),
    ("sshd[1]: Invalid user admin from 192.0.2.1", "sshd[1]: Invalid user oracle from 192.0.2.1"),
    ("cafe: face", "beef: face"),  # hex-looking words without a digit stay words
    # digits after a letter name a thing: pump P3's alarm is not pump P4's, eth0 not eth1
    ("28.11.2024 09:00:21;SPS1;A1201;Wicklungstemp. P3 zu hoch 127 Grad C",
     "28.11.2024 09:00:21;SPS1;A1201;Wicklungstemp. P4 zu hoch 127 Grad C"),
    ("eth0: link is down", "eth1: link is down"),
    ("SPS1;A1201;Störung", "SPS1;A1202;Störung"),
])
def test_other_words_make_another_shape(a: str, b: str) -> None:
    assert message_shape(a) != message_shape(b)


def test_shape_is_bounded() -> None:
    assert len(message_shape("word " * 1000)) == MAX_SHAPE_CHARS


def test_mute_list_refuses_what_it_does_not_know_and_more_than_it_holds() -> None:
    mute = {"id": "0123456789ab", "shape": "x", "expires": 1.0}
    assert MuteList.model_validate({"revision": 1, "mutes": [mute]}).mutes[0].source is None
    with pytest.raises(ValidationError, match="pattern"):
        AlertMute.model_validate({**mute, "id": "../etc"})
    with pytest.raises(ValidationError, match="extra"):
        MuteList.model_validate({"revision": 1, "mutes": [], "all": True})
    with pytest.raises(ValidationError, match="at most"):
        MuteList.model_validate({"revision": 1, "mutes": [mute] * (MAX_MUTES + 1)})


def test_a_mute_matches_its_shape_on_its_source_only() -> None:
    anywhere = AlertMute(id="0123456789ab", shape="s", expires=1.0)
    journal = AlertMute(id="0123456789ac", shape="s", source="journal", expires=1.0)
    assert anywhere.matches("syslog", "s") and not anywhere.matches("syslog", "t")
    assert journal.matches("journal", "s") and not journal.matches("syslog", "s")


def test_topic_is_inside_the_device_tree() -> None:
    assert mutes_topic("pump-07") == "nanofleet/v1/dev/pump-07/mutes"
    with pytest.raises(ValueError):
        mutes_topic("+")
