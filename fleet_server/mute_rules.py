"""Alert mutes' pure rules, apart from the store (:mod:`fleet_server.mutes`): whether a
request can be carried (:func:`check_request`), what shape a mute of a stored alert's line
names (:func:`mute_shape`), whether a mute covers a stored line (:func:`covers`), and the
refusals (:class:`MuteRefused` and its kinds) the API and the console answer with.

Separate because they decide without a session: the shape grouping of alerts
(:mod:`fleet_server.alert_shapes`) and the console use them on alerts they already hold,
and a refusal here is raised before the store touches anything.
"""

from __future__ import annotations

from typing import NamedTuple

from contract.mutes import (
    MAX_MUTE_DAYS,
    MAX_SHAPE_CHARS,
    MIN_PREFIX_SHAPE_CHARS,
    AlertMute,
    kept_line_mute,
    prefix_shape,
)
from fleet_server.metrics_store import ALERT_TEXT_CHARS

MAX_REASON_CHARS = 200  # AlertMute.reason's bound


class MuteRefused(ValueError):
    """The mute cannot be made or lifted; the message says why and what to do."""


class WideMuteRefused(MuteRefused):
    """A mute that would quiet a message on more devices than a deploy token may: it needs
    the admin scope (an API answers 403)."""


class UnknownAlert(MuteRefused):
    """No such alert (any more): the server keeps alerts for a while only."""


class UnknownMute(MuteRefused):
    """No such mute (a wrong id, or it expired and was cleared away)."""


def check_request(days: int, reason: str) -> None:
    """Refuse a duration or a reason the contract cannot carry."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_MUTE_DAYS:
        raise MuteRefused(f"days must be a whole number from 1 to {MAX_MUTE_DAYS} (got "
                          f"{days!r}): a mute ends by itself; mute the alert again to extend it")
    if len(reason) > MAX_REASON_CHARS:
        raise MuteRefused(f"reason is {len(reason)} characters; at most {MAX_REASON_CHARS}")


class MuteShape(NamedTuple):
    """What a mute of an alert names: a shape, whole or (``prefix``) the start of one."""

    shape: str
    prefix: bool


def mute_shape(text: str) -> MuteShape:
    """The shape a mute of a stored alert's line names, or :class:`MuteRefused` when no
    mute of it could match what the device sees. The agent takes the shape of the whole
    line and the server keeps its first :data:`ALERT_TEXT_CHARS` characters only: a line
    that long was probably cut, so the mute names the start of its shape that the server
    can be sure of (:func:`contract.mutes.prefix_shape`: the kept text without its last,
    maybe cut, token), and mutes the lines whose shape starts with it. That start must be
    :data:`contract.mutes.MIN_PREFIX_SHAPE_CHARS` long at least."""
    named = kept_line_mute(text, ALERT_TEXT_CHARS)
    if named is not None:
        return MuteShape(*named)
    if len(text) >= ALERT_TEXT_CHARS:
        raise MuteRefused(
            f"the server keeps the first {ALERT_TEXT_CHARS} characters of an alert's "
            "line and this one has that many: it was probably cut, so a mute can name "
            "only the start of its shape, up to the last space the server kept. That "
            f"start has {len(prefix_shape(text))} characters here, fewer than the "
            f"{MIN_PREFIX_SHAPE_CHARS} a mute of a line's start needs (a shorter one "
            "could silence other messages that begin alike): this line cannot be muted "
            "(a verdict still teaches the model)")
    raise MuteRefused("the alert's line is empty or blank: there is no shape to mute")


def covers(mute: AlertMute, source: str, line: MuteShape) -> bool:
    """Whether ``mute`` covers a stored alert's line of ``source`` (``line``: what
    :func:`mute_shape` makes of it), as far as the server can tell. A whole line: the
    agent's rule (:meth:`contract.mutes.AlertMute.matches`). A line the server kept cut:
    the device's shape of the whole line starts with ``line.shape`` and the server knows no
    more, so a prefix mute covers it when that start begins with the mute's shape, and a
    mute of a whole shape only when the start is a whole shape already (the agent cuts
    shapes at :data:`contract.mutes.MAX_SHAPE_CHARS` too)."""
    if line.prefix and not mute.prefix and len(line.shape) < MAX_SHAPE_CHARS:
        return False
    return mute.matches(source, line.shape)
