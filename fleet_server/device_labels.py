"""An operator's groups and tags on devices: what to change (:class:`LabelChange`), the
labels after it (:func:`relabel`), and the change applied to the inventory's rows
(:func:`set_labels`), which refuses device ids it does not know (:class:`UnknownDevices`).

Separate from :mod:`fleet_server.inventory` because the operator sets these (here, or
through the enrollment token a device enrolls with), never the devices: no report
changes a device's group or tags.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from contract import topics
from fleet_server.db import Device
from fleet_server.inventory import get_or_create_device


@dataclass(frozen=True)
class LabelChange:
    """How to change a device's group and tags (None / empty: leave as is)."""

    group: str | None = None
    clear_group: bool = False
    tags: tuple[str, ...] | None = None  # replace the tags
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()


def relabel(group: str | None, tags: list[str], change: LabelChange) -> tuple[str | None,
                                                                              list[str]]:
    """The device's (group, sorted tags) after ``change``."""
    new_group = None if change.clear_group else (change.group or group)
    new_tags = set(change.tags) if change.tags is not None else set(tags)
    new_tags = (new_tags | set(change.add_tags)) - set(change.remove_tags)
    return new_group, sorted(new_tags)


class UnknownDevices(LookupError):
    def __init__(self, device_ids: list[str]) -> None:
        super().__init__(f"{len(device_ids)} device ids never reported and are not enrolled: "
                         f"{', '.join(device_ids[:10])}{' ...' if len(device_ids) > 10 else ''}")
        self.device_ids = device_ids


def set_labels(session: Session, device_ids: Sequence[str], change: LabelChange,
               now: float, *, create: bool = False) -> list[Device]:
    """Apply ``change`` to each device. Ids the inventory does not know (never reported,
    never enrolled) raise :class:`UnknownDevices` and change nothing, unless ``create``
    (grouping devices before they are installed): an operator's typo must not become a
    phantom device that rollouts then wait for."""
    for device_id in device_ids:
        topics.check_device_id(device_id)
    wanted = list(dict.fromkeys(device_ids))
    if not create:
        known: set[str] = set()
        for start in range(0, len(wanted), 500):
            known.update(session.scalars(select(Device.device_id).where(
                Device.device_id.in_(wanted[start:start + 500]))))
        unknown = [d for d in wanted if d not in known]
        if unknown:
            raise UnknownDevices(unknown)
    out = []
    for device_id in wanted:
        device = get_or_create_device(session, device_id, now)
        device.group_name, device.tags = relabel(device.group_name, list(device.tags or []),
                                                 change)
        out.append(device)
    return out
