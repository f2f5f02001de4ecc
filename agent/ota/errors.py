"""Why an update was refused, as a short machine-readable reason plus a human detail.

The reason codes end up in OTA state reports (``dev/{id}/ota``), so they are
stable strings; the detail names the file, role or versions involved.
"""

from __future__ import annotations

from typing import Literal

RefusalReason = Literal[
    "expired-metadata",     # a role's metadata is past its expiry (freeze attack or stale server)
    "bad-signature",        # not signed by a threshold of the keys root/delegator lists
    "rollback",             # a version went down compared with what the device trusts
    "mix-and-match",        # a file does not match the version/hash a newer role names
    "invalid-metadata",     # unparsable or inconsistent metadata or custom fields
    "not-found",            # the repository has no such target / file
    "too-long",             # more bytes than signed (target) or allowed (metadata)
    "hash-mismatch",        # bytes differ from the signed hashes
    "incomplete-download",  # transfer cut short; partial data kept for resume
    "unavailable",          # network/transport failure
    "not-initialized",      # no trusted root to start from
    "downgrade",            # candidate version is not above the live one
    "below-minimum",        # candidate version is below the slot's signed minimum
    "wrong-model",          # target is for another model/slot than requested
    "wrong-role",           # listed only by a delegated role that may not sign it
]


class UpdateRefused(Exception):
    """An update step was refused; ``reason`` is a :data:`RefusalReason`."""

    def __init__(self, reason: RefusalReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: RefusalReason = reason
        self.detail = detail
