"""Alert mutes: an operator's "this line is a false alarm here, stop telling me" (shared).

A mute names a **message shape** — the line with what varies between repeats of one
message taken out (numbers, addresses, ids, dates; :func:`message_shape`) — and an
expiry. The fleet server keeps each device's mutes and publishes them, retained, on
``dev/{id}/mutes`` as one :class:`MuteList`; the agent stops *sending* alerts whose line
has a muted shape (it still classifies, publishes results and counts them) until the
mute expires.

Why shapes and not a retrained model: a device repeats its few healthy-but-alarming
lines all day, and a technician who has judged one of them wants quiet *now*, not after a
fine-tune and a rollout (which the same verdict also feeds, for the lines a shape cannot
cover). Why exact shapes and not patterns: a mute covers the same message again with other
values — never other words — so muting ``Connection closed by <addr> [preauth]`` cannot
silence ``Failed password for root``.

One exception, for long lines: the fleet server keeps the first 500 characters of an
alert's line only, so for a line it kept cut it cannot know the whole line's shape. Such
a mute is a **prefix** mute (:attr:`AlertMute.prefix`): it names the start of the shape,
as far as the server can be sure of it, and mutes the lines whose shape starts with it
(so two messages that differ only after that start are one to it). It must name at
least :data:`MIN_PREFIX_SHAPE_CHARS` characters, so that it is specific: a forged ``#``
prefix would otherwise mute every line that starts with a number.

Who can send these bytes: only the fleet server's identity may write ``dev/{id}/mutes``
(the broker ACL gives a device read on its tree and write on :data:`topics.DEVICE_WRITES`
only). The worst a forged list can do is hide alerts of the shapes it names, so the agent
bounds it: at most :data:`MAX_MUTES` mutes, each expiring within :data:`MAX_MUTE_DAYS` of
its arrival whatever it claims, and a muted shape that storms (a brute force repeating one
line) is sent again (``[alerts] mute_storm_per_minute``).
"""

from __future__ import annotations

import re
from typing import Self

from pydantic import Field, model_validator

from contract import topics
from contract.limits import MAX_STORED_INT
from contract.strict import FrozenStrict, Strict

MAX_MUTES = 256
"""Mutes one device holds (the list is one retained MQTT message, well under 256 KiB)."""
MAX_SHAPE_CHARS = 512
"""A shape longer than this is cut: the first 512 characters decide."""
MIN_PREFIX_SHAPE_CHARS = 200
# The start of a line its shape is made from (the fleet server keeps 500 characters).
MAX_SHAPE_INPUT_CHARS = 8192
# A source's name as the fleet server keeps it (an alert's, a mute's).
MAX_SOURCE_CHARS = 128
"""A prefix mute names at least this much of a shape (so it cannot mute every line)."""
MAX_MUTE_DAYS = 90
"""No mute lasts longer: a forgotten mute must not hide a device's alerts for ever."""
MUTE_ID_PATTERN = r"^[a-f0-9]{12,32}$"

# Order matters: whole tokens that carry ids first, then what is left of the digits.
_ISO_TIME = re.compile(
    r"\b\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:z|[+-]\d{2}:?\d{2})?")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
_HEX_ID = re.compile(r"\b(?:0x[0-9a-f]+|(?=[0-9a-f]*\d)[0-9a-f]{8,})\b")
_MAC = re.compile(r"\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])")
_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
# Digits that follow a letter name a thing (pump P3, eth0, sda1, alarm A1201, CPU3): a
# mute of pump P3's test alarm must not silence pump P4's. Other runs of digits are values.
_DIGITS = re.compile(r"(?<![a-z0-9_])\d+")
_DATE_WORDS = re.compile(
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|mon|tue|wed|thu|fri|sat|sun)\b")
_SPACE = re.compile(r"\s+")


_ORDINARY_USER = re.compile(r"\(logged by uid (\d+), not a system user\)")


def ordinary_user_note(uid: int) -> str:
    """What the agent adds to an alert's reason when a journal line was logged by a user
    that is not a system user: the program name in its text is only the logger's claim."""
    return f" (logged by uid {uid}, not a system user)"


def logged_by_ordinary_user(reason: str) -> int | None:
    """The uid of :func:`ordinary_user_note` in an alert's reason, or None. The fleet server
    makes no mute of such a line: its shape is also the shape of the real program's lines,
    so a forged ``Failed password`` muted as a false alarm would hide a real brute force
    (review, December 2026)."""
    found = _ORDINARY_USER.search(reason)
    return int(found[1]) if found else None


def message_shape(text: str) -> str:
    """What stays the same when one message repeats: ``text`` lower-cased, with ISO date-times,
    UUIDs, MAC, IPv6 and IPv4 addresses (and clock times, which read like IPv6), hexadecimal
    ids, every run of digits that does not follow a letter, and the names of months and
    weekdays replaced by ``#``, white space collapsed, cut at :data:`MAX_SHAPE_CHARS`.
    Digits after a letter stay: they name a thing (``P3``, ``eth0``, ``sda1``, ``A1201``).

    ``Dec 10 07:08:28 gw sshd[24208]: Connection closed by 198.51.100.4 port 5150 [preauth]``
    → ``# # # gw sshd[#]: connection closed by # port # [preauth]``, the same shape as the
    line from ``2001:db8::12`` on another day. Words are kept,
    so user names, paths and host names are part of the shape."""
    # Only a line's start can be muted (the server keeps 500 characters): the rest costs
    # time on every alert candidate, ~0.5 s a 1 MiB line (review, December 2026). NUL as
    # the server stores it (U+FFFD), so a mute made from such a line matches it here.
    shape = text[:MAX_SHAPE_INPUT_CHARS].replace("\x00", "\ufffd").lower()
    for pattern in (_ISO_TIME, _UUID, _MAC, _IPV6, _IPV4, _HEX_ID, _DIGITS, _DATE_WORDS):
        shape = pattern.sub("#", shape)
    return _SPACE.sub(" ", shape).strip()[:MAX_SHAPE_CHARS]


# A token that ends a line's start: the ISO date of a date-time whose time follows after a
# space (the one shape rule that reaches across white space).
_DATE_AT_END = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_LAST_TOKEN = re.compile(r"\S*\Z")


def prefix_shape(start: str) -> str:
    """The start of the shape of every line that begins with ``start`` (a line cut after any
    character): ``start`` cut at its last white space — its last token may be the part of a
    number, an address or a word whose whole would be shaped otherwise — and, when it then
    ends with an ISO date, before that too (a time after the space would make the two one
    value); then :func:`message_shape`. Every other rule of a shape stays within a token,
    so a line that goes on after ``start`` has a shape that starts with this one (or, past
    :data:`MAX_SHAPE_CHARS`, the same cut). Empty when nothing is left."""
    head = _LAST_TOKEN.sub("", start).rstrip()
    while _DATE_AT_END.search(head):
        head = _LAST_TOKEN.sub("", head).rstrip()
    return message_shape(head)



def kept_line_mute(kept: str, kept_chars: int) -> tuple[str, bool] | None:
    """(shape, prefix) of the mute that can name a line of which a store kept ``kept``, at
    most its first ``kept_chars`` characters: the line's whole shape, or — ``kept`` that
    long was probably cut — the sure start of it (:func:`prefix_shape`), to be matched as a
    prefix. None when no mute can name it: a blank line, or a start shorter than
    :data:`MIN_PREFIX_SHAPE_CHARS` (it could silence other messages that begin alike).
    The fleet server's rule (``fleet_server.mute_rules.mute_shape``), and the benchmark's."""
    if len(kept) >= kept_chars:
        start = prefix_shape(kept[:kept_chars])
        return (start, True) if len(start) >= MIN_PREFIX_SHAPE_CHARS else None
    shape = message_shape(kept)
    return (shape, False) if shape else None

class AlertMute(FrozenStrict):
    """One muted message shape on one device."""

    id: str = Field(pattern=MUTE_ID_PATTERN, description="The mute's id (hex), for removal.")
    shape: str = Field(min_length=1, max_length=MAX_SHAPE_CHARS,
                       description="The message shape muted (contract.mutes.message_shape).")
    prefix: bool = Field(
        default=False, strict=True,
        description="The shape is only the start of the line's shape (the server kept the line "
        "cut): lines whose shape starts with it are muted. At least "
        f"{MIN_PREFIX_SHAPE_CHARS} characters then.")
    source: str | None = Field(
        default=None, max_length=MAX_SOURCE_CHARS,
        description="Only lines of this agent source (e.g. 'journal'); None: any source.")
    expires: float = Field(gt=0, allow_inf_nan=False,
                           description="Unix time the mute ends. The agent also ends it "
                           f"{MAX_MUTE_DAYS} days after it arrived, whatever this says.")
    reason: str = Field(default="", max_length=200,
                        description="Why (the operator's words), shown to technicians.")

    @model_validator(mode="after")
    def _prefix_is_specific(self) -> Self:
        if self.prefix and len(self.shape) < MIN_PREFIX_SHAPE_CHARS:
            raise ValueError(f"a prefix mute's shape has {len(self.shape)} characters; at "
                             f"least {MIN_PREFIX_SHAPE_CHARS} (a short one would mute lines "
                             "of other messages that begin alike)")
        return self

    def matches(self, source: str, shape: str) -> bool:
        """Whether this mute covers a line of ``source`` whose shape is ``shape`` (the whole
        line's :func:`message_shape`): the same shape, or for a prefix mute a shape that
        starts with this one; from the mute's source, or any when it names none."""
        if self.source is not None and self.source != source:
            return False
        return shape.startswith(self.shape) if self.prefix else shape == self.shape


class MuteList(Strict):
    """Retained on ``dev/{id}/mutes``; written by the fleet server only. The whole list: a
    mute missing from a newer revision is lifted."""

    revision: int = Field(ge=0, le=MAX_STORED_INT, strict=True,
                          description="Increases with every change; older ones are ignored.")
    mutes: list[AlertMute] = Field(max_length=MAX_MUTES,
                                   description=f"At most {MAX_MUTES} active mutes.")
    reset: bool = Field(
        default=False, description="Apply this list whatever revision the device holds "
        "(an operator's `nanofleet mutes resend --reset`: the way back from a list numbered "
        "beyond the server's revisions, which a stolen server identity could have sent). "
        "Sent only when true: agents before it refuse the field.")


def mutes_topic(device_id: str) -> str:
    """Retained mute list of a device (see :class:`MuteList`)."""
    return f"{topics.device_root(device_id)}/mutes"
