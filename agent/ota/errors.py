"""Why an update was refused, as a short machine-readable reason plus a human detail.

The reason codes end up in OTA state reports (``dev/{id}/ota``), so they are the
stable strings of :class:`contract.reasons.OtaReason`, which the fleet server reads
too; the detail names the file, role or versions involved.
"""

from __future__ import annotations

from contract.reasons import OtaReason


class UpdateRefused(Exception):
    """An update step was refused; ``reason`` says why in a word both sides know."""

    def __init__(self, reason: OtaReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
