"""A device's report: an MQTT topic and its JSON payload checked and parsed into a
:class:`Report` (:func:`parse_report`), or refused with the reason (:class:`ReportRejected`).

The topic names the device; a payload claiming another device id is refused (a device
may publish only under its own tree, and the payload must agree). Refused too: empty
or oversized payloads, JSON no column stores (NaN, infinities, a float past the
database's), and payloads the contract does not accept.

Separate from :mod:`fleet_server.inventory` (which applies reports to the device rows)
because it needs no session: the MQTT bridge parses a batch and counts the refused
reports before any transaction, and the metrics store and the rollout tracking take the
parsed :class:`Report` as well.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from contract import topics
from contract.messages import (
    Alert,
    Metrics,
    OtaEvent,
    Status,
    format_validation_error,
)

ReportKind = Literal["status", "metrics", "ota", "alerts"]
_KINDS: dict[str, type[Status] | type[Metrics] | type[OtaEvent] | type[Alert]] = {
    "status": Status, "metrics": Metrics, "ota": OtaEvent, "alerts": Alert}
MAX_REPORT_BYTES = 256 * 1024


@dataclass(frozen=True)
class Report:
    device_id: str
    kind: ReportKind
    message: Status | Metrics | OtaEvent | Alert
    received_at: float


class ReportRejected(ValueError):
    """A device report that cannot be used; the message says why (logged and counted)."""


def _no_constant(name: str) -> float:
    # NaN, Infinity: Python's json reads them, JSON has no such numbers, and no column
    # stores them (a NaN score failed its NOT NULL INSERT, and the batch with it). The
    # contract itself allows them: an agent running a broken model must still report.
    raise ValueError(f"{name} is not a number JSON has")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise ValueError(f"{text[:40]} is beyond the floats a database stores")
    return value


def _without_nul(value: Any) -> Any:
    """NUL characters replaced (U+FFFD) in every string: a log line may hold one, JSON
    carries it as \\u0000, and PostgreSQL's text columns refuse it (the INSERT, and the
    batch it was in, failed; review, December 2026)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def parse_report(topic: str, payload: bytes, received_at: float) -> Report:
    """``nanofleet/v1/dev/<id>/{status,metrics,ota,alerts}`` + JSON payload -> :class:`Report`
    (alerts are kept by :mod:`fleet_server.metrics_store`)."""
    device_id = topics.device_id_from_topic(topic)
    kind = topic.rsplit("/", 1)[-1]
    if device_id is None or kind not in _KINDS or topic != f"{topics.device_root(device_id)}/" \
            f"{kind}":
        raise ReportRejected(f"{topic}: not a device status/metrics/ota topic (or alerts)")
    if not payload:
        raise ReportRejected(f"{topic}: empty payload (a cleared retained message)")
    if len(payload) > MAX_REPORT_BYTES:
        raise ReportRejected(f"{topic}: payload of {len(payload)} bytes is over "
                             f"{MAX_REPORT_BYTES}")
    try:
        data = json.loads(payload, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:  # not JSON, too deep, 5000-digit ints
        raise ReportRejected(f"{topic}: payload is not JSON: {exc}") from None
    # JSON can only carry a NUL as the escape \u0000 (json.loads refuses raw control
    # characters in strings): every other report skips the walk.
    if b"\\u0000" in payload:
        try:
            data = _without_nul(data)
        except RecursionError:  # nested as deep as json.loads goes: no report is
            raise ReportRejected(f"{topic}: payload is nested too deep") from None
    try:
        message = _KINDS[kind].model_validate(data)
    except ValidationError as exc:
        raise ReportRejected(f"{topic}: invalid {kind}: {format_validation_error(exc)}") from None
    if message.device_id != device_id:
        raise ReportRejected(f"{topic}: payload claims device {message.device_id!r}")
    return Report(device_id, kind, message, received_at)  # type: ignore[arg-type]
