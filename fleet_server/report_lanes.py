"""Which sessions the fleet server reads device reports on, and with which filters.

Two lanes (:data:`LANES`): statuses and OTA events on the server's own client id, metrics
and alerts on ``<client id>-bulk``. The broker keeps a bounded queue per session and drops
what overflows it (fleet_server.broker_config); one device certificate that floods its
metrics faster than the server reads them fills the bulk lane's queue only, and the
statuses and OTA events that drive the inventory and rollouts keep their own
(fleet_server.mqtt_bridge, which runs the sessions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from contract.topics import PREFIX

REPORT_KINDS = ("status", "ota", "metrics", "alerts")  # alerts: kept for the console


@dataclass(frozen=True)
class Lane:
    """One MQTT session of the bridge and the report kinds it subscribes to."""

    name: str
    kinds: tuple[str, ...]
    client_id_suffix: str  # appended to mqtt.client_id ("": the server's own id)


# The first lane is the server's own session: it publishes desired states and mute lists,
# and its (re)connect triggers their re-publication. Small, rare, consequential reports
# ride with it; the voluminous ones get a session of their own.
LANES = (Lane("status", ("status", "ota"), ""), Lane("bulk", ("metrics", "alerts"), "-bulk"))
SESSION_EXPIRY_S = 3600


def session_expiry_s(shared_group: str | None) -> int:
    """How long the broker keeps our session after a disconnect (why: the docstring of
    fleet_server.mqtt_bridge)."""
    return 0 if shared_group else SESSION_EXPIRY_S


def report_filters(shared_group: str | None,
                   kinds: Sequence[str] = REPORT_KINDS) -> list[str]:
    """Topic filters for device reports (shared subscription when a group is set)."""
    filters = [f"{PREFIX}/dev/+/{kind}" for kind in kinds]
    return [f"$share/{shared_group}/{f}" for f in filters] if shared_group else filters
