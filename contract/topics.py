"""MQTT topic names. Every topic a device uses lives under ``nanofleet/v1/dev/{id}/``
so that one broker ACL pattern (``nanofleet/v1/dev/%u/#``) confines a device."""

from __future__ import annotations

import re

PREFIX = "nanofleet/v1"
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SLOT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
_SLOT_RE = re.compile(SLOT_PATTERN)


def check_device_id(device_id: str) -> str:
    """Return ``device_id`` if it can be used in a topic, else raise ValueError.

    MQTT wildcards (``+``, ``#``) and ``/`` would let one id reach another
    device's topics, so they are refused here, once, for both sides."""
    if not _DEVICE_ID_RE.match(device_id):
        raise ValueError(
            f"invalid device id {device_id!r}: use 1-64 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return device_id


def check_slot(slot: str) -> str:
    if not _SLOT_RE.match(slot):
        raise ValueError(f"invalid slot {slot!r}: use 1-32 characters from a-z 0-9 _ -")
    return slot


def device_root(device_id: str) -> str:
    return f"{PREFIX}/dev/{check_device_id(device_id)}"


def status(device_id: str) -> str:
    """Retained birth/health document; the Last Will marks the device offline."""
    return f"{device_root(device_id)}/status"


def results(device_id: str, slot: str) -> str:
    return f"{device_root(device_id)}/results/{check_slot(slot)}"


def alerts(device_id: str) -> str:
    return f"{device_root(device_id)}/alerts"


def metrics(device_id: str) -> str:
    return f"{device_root(device_id)}/metrics"


def query(device_id: str) -> str:
    """MQTT v5 request/response: requests carry Response Topic + Correlation Data."""
    return f"{device_root(device_id)}/query"


def query_reply(device_id: str, client: str) -> str:
    """A reply topic inside the device's own tree (so the ACL allows it)."""
    return f"{device_root(device_id)}/reply/{client}"


def desired(device_id: str) -> str:
    """Retained desired state, written by the fleet server."""
    return f"{device_root(device_id)}/desired"


def ota(device_id: str) -> str:
    """OTA state-change events from the agent."""
    return f"{device_root(device_id)}/ota"


def device_id_from_topic(topic: str) -> str | None:
    """``nanofleet/v1/dev/pump-07/status`` -> ``pump-07``; None for other topics."""
    parts = topic.split("/")
    if len(parts) < 4 or f"{parts[0]}/{parts[1]}" != PREFIX or parts[2] != "dev":
        return None
    return parts[3] if _DEVICE_ID_RE.match(parts[3]) else None


# --- artifacts over MQTT (contract/artifacts.py) ------------------------------------------
ARTIFACT_REQUEST_FILTER = f"{PREFIX}/dev/+/artifacts/req"
_TRANSFER_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def artifact_requests(device_id: str) -> str:
    """Where a device asks for ranges of repository files (JSON ArtifactRequest)."""
    return f"{device_root(device_id)}/artifacts/req"


def artifact_chunks(device_id: str, transfer: str) -> str:
    """Where the fleet server sends the chunks of one transfer (raw bytes + header)."""
    if not _TRANSFER_RE.match(transfer):
        raise ValueError(f"invalid transfer id {transfer!r}: 1-64 of A-Z a-z 0-9 _ -")
    return f"{device_root(device_id)}/artifacts/chunk/{transfer}"


def artifact_chunk_filter(device_id: str) -> str:
    """The device's subscription for the chunks of all its transfers."""
    return f"{device_root(device_id)}/artifacts/chunk/+"


# --- what a device may publish (the broker ACL grants exactly these) -----------------------
DEVICE_WRITES = ("status", "results/+", "alerts", "metrics", "ota", "reply/+",
                 "artifacts/req")
"""Topics below ``dev/{id}/`` a device publishes on; everything else in its tree (its
``desired`` state, ``query``, artifact chunks) only the fleet server writes."""
