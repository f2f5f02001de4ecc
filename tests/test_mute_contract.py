"""The mute contract both sides share: what a message shape keeps and drops, the bounds a
mute list carries, and prefix mutes (the start of a long line's shape, which is all the
fleet server can know of a line it kept cut)."""

from __future__ import annotations

import json
import random
import time

import pytest
from pydantic import ValidationError

from contract.mutes import (
    MAX_MUTES,
    MAX_SHAPE_CHARS,
    MAX_SHAPE_INPUT_CHARS,
    MIN_PREFIX_SHAPE_CHARS,
    AlertMute,
    MuteList,
    kept_line_mute,
    logged_by_ordinary_user,
    message_shape,
    mutes_topic,
    ordinary_user_note,
    prefix_shape,
)
from tests.support.json_log import READ, WRITE, WRITE_AGAIN


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


def prefix_mute(start: str, source: str | None = None) -> AlertMute:
    return AlertMute(id="0123456789ab", shape=prefix_shape(start), prefix=True, source=source,
                     expires=1.0)


def test_a_prefix_mute_covers_lines_whose_shape_starts_with_it() -> None:
    """The start of a long line (as the fleet server keeps it) mutes the same message with
    other values, and not another message that shares the first words."""
    assert len(WRITE) > 900 and len(WRITE_AGAIN) > 900
    mute = prefix_mute(WRITE[:500], source="app")
    assert MIN_PREFIX_SHAPE_CHARS <= len(mute.shape) < len(message_shape(WRITE))
    assert mute.matches("app", message_shape(WRITE))
    assert mute.matches("app", message_shape(WRITE_AGAIN))
    assert not mute.matches("app", message_shape(READ))
    assert not mute.matches("journal", message_shape(WRITE))  # its source only
    assert not mute.matches("app", mute.shape[:-1])  # a shorter shape is not covered
    # A mute of a whole shape stays one: the start of a shape is not it.
    whole = AlertMute(id="0123456789ab", shape=message_shape(WRITE), expires=1.0)
    assert not whole.prefix and whole.matches("app", message_shape(WRITE_AGAIN))
    assert not whole.matches("app", message_shape(WRITE) + " more")
    assert not AlertMute(id="0123456789ab", shape=mute.shape, expires=1.0).matches(
        "app", message_shape(WRITE))


def test_a_prefix_mute_must_be_specific() -> None:
    """A forged list must not mute every line that starts with a number (``#``)."""
    for shape in ("#", "# " * 99, "x" * (MIN_PREFIX_SHAPE_CHARS - 1)):
        with pytest.raises(ValidationError, match=f"at least {MIN_PREFIX_SHAPE_CHARS}"):
            AlertMute(id="0123456789ab", shape=shape, prefix=True, expires=1.0)
        assert not AlertMute(id="0123456789ab", shape=shape, expires=1.0).prefix
    with pytest.raises(ValidationError, match="at least"):
        MuteList.model_validate_json(json.dumps({"revision": 1, "mutes": [
            {"id": "0123456789ab", "shape": "#", "prefix": True, "expires": 1.0}]}))
    with pytest.raises(ValidationError, match="valid boolean"):  # JSON's true only
        AlertMute.model_validate({"id": "0123456789ab", "shape": "x" * 300, "prefix": "yes",
                                  "expires": 1.0})
    assert AlertMute(id="0123456789ab", shape="x" * MIN_PREFIX_SHAPE_CHARS, prefix=True,
                     expires=1.0).prefix


def test_the_start_of_a_line_leaves_out_its_last_token() -> None:
    """The cut may split a number, an address or a word, whose whole is shaped otherwise."""
    assert prefix_shape("sshd[311]: Failed password for root from 203.0.113") == \
        "sshd[#]: failed password for root from"
    assert prefix_shape("sshd[311]: Failed password for ") == "sshd[#]: failed password for"
    assert prefix_shape("no white space at all") == "no white space at"
    assert prefix_shape("x" * 500) == "" and prefix_shape("   ") == ""
    # A date whose time may follow after the space: one value with it, so it goes too.
    assert prefix_shape("backup done at 2026-03-01 1") == "backup done at"
    assert prefix_shape("backup done at 2026-03-01 ") == "backup done at"
    assert message_shape("backup done at 2026-03-01 10:00:00 ok") == "backup done at # ok"


def test_the_start_of_a_line_starts_the_shape_of_every_line_it_begins() -> None:
    """Whatever the line and wherever it is cut: 20,000 lines of the values a shape takes
    out (dates and times with a space, addresses, ids, Greek final sigma, ...)."""
    rng = random.Random(7)
    tokens = [
        lambda: str(rng.randint(0, 10 ** rng.randint(1, 9))),
        lambda: f"2026-03-0{rng.randint(1, 9)}",
        lambda: f"2026-03-02 {rng.randint(0, 23):02}:{rng.randint(0, 59):02}:07",
        lambda: f"2026-03-02T10:00:00.{rng.randint(0, 999)}Z",
        lambda: ".".join(str(rng.randint(0, 255)) for _ in range(4)),
        lambda: f"2001:db8::{rng.randint(0, 65535):x}",
        lambda: f"{rng.getrandbits(32):08x}",
        lambda: f"0x{rng.getrandbits(20):x}",
        lambda: ":".join(f"{rng.getrandbits(8):02x}" for _ in range(6)),
        lambda: f"5f0e1c2a-1111-2222-3333-{rng.getrandbits(48):012x}",
        lambda: rng.choice(["Dec", "mon", "eth0", "P3", "ΟΔΟΣ", "İstanbul", "error", "\"ts\":",
                            "{", "a_1", "x-12", "10:00"]),
    ]
    separators = [" ", "  ", "\t", ",", ", ", "=", ":", "\" ", ";"]
    for _ in range(20_000):
        line = "".join(rng.choice(tokens)() + rng.choice(separators)
                       for _ in range(rng.randint(3, 40)))
        start = line[:rng.randint(1, len(line))]
        assert message_shape(line).startswith(prefix_shape(start)), (line, start)
    # and past the shape's bound, the same cut
    assert message_shape(WRITE * 2).startswith(prefix_shape((WRITE * 2)[:1000]))


def test_topic_is_inside_the_device_tree() -> None:
    assert mutes_topic("pump-07") == "nanofleet/v1/dev/pump-07/mutes"
    with pytest.raises(ValueError):
        mutes_topic("+")


def test_what_a_mute_of_a_kept_line_can_name() -> None:
    """The fleet server's rule, shared with the benchmark: a whole shape, the start of a
    line kept cut, or nothing (a blank line, a cut one whose start is too short)."""
    closed = "sshd[7]: Connection closed by 192.0.2.1 port 22 [preauth]"
    assert kept_line_mute(closed, 500) == (message_shape(closed), False)
    assert kept_line_mute(" \t", 500) is None
    assert kept_line_mute(WRITE[:500], 500) == (prefix_shape(WRITE[:500]), True)
    assert kept_line_mute("x" * 600, 500) is None  # a blob: no sure start of 200 characters


def test_a_shape_is_made_from_the_lines_start_only() -> None:
    """A 1 MiB line took ~0.5 s a shape on every alert candidate while a mute was held
    (review, December 2026); only its start can be muted (the server keeps 500 chars)."""
    line = "kernel: EXT4-fs error (device sda1): bad block 7 " + "x 12 " * 200_000
    started = time.perf_counter()
    shape = message_shape(line)
    assert time.perf_counter() - started < 0.2  # ~2 ms here; the whole line: 0.3-0.6 s
    assert shape == message_shape(line[:MAX_SHAPE_INPUT_CHARS])
    # the start the server keeps of it still starts its shape
    assert shape.startswith(prefix_shape(line[:500]))


def test_a_nul_in_a_line_reads_as_the_server_stores_it() -> None:
    """The server stores NUL as U+FFFD (PostgreSQL refuses NUL): the shape of the stored
    line and of the device's line must be one, or a mute of it never matches."""
    assert message_shape("pump\x00 P3 overpressure") == message_shape("pump\ufffd P3 overpressure")


def test_a_list_is_parsed_strictly() -> None:
    for payload in ('{"revision": "7", "mutes": []}', '{"revision": 7.0, "mutes": []}',
                    '{"revision": 7, "mutes": [{"id": "0123456789ab", "shape": "x", '
                    '"expires": Infinity}]}'):
        with pytest.raises(ValidationError):
            MuteList.model_validate_json(payload)


def test_the_ordinary_user_note_is_read_back() -> None:
    assert logged_by_ordinary_user("label security >= 0.80" + ordinary_user_note(1000)
                                   + "; why: password +2.1") == 1000
    assert logged_by_ordinary_user("label security >= 0.80 (logged at err)") is None
