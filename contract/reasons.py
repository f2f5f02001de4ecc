"""Why an OTA update stopped: the machine codes both sides agree on.

A device reports them in ``OtaEvent.reason`` (``dev/{id}/ota``); the fleet server
stores them and its rollout policy retries the transient ones. On the wire they are
the plain strings below (the enum's values), so the format is what it always was.

A newer agent may report a code this server does not know yet. Such a message must
still be accepted (refusing it would lose the state change it carries), so the wire
field is :data:`ReasonCode`: a known code becomes an :class:`OtaReason`, an unknown
one stays a plain string (and is not transient: it waits for a new desired state).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BeforeValidator


class OtaReason(StrEnum):
    """Every reason an agent of this version can report."""

    # Refusals of the update client (agent.ota.errors.UpdateRefused).
    EXPIRED_METADATA = "expired-metadata"        # a role's metadata is past its expiry
    BAD_SIGNATURE = "bad-signature"              # not signed by a threshold of the keys
    ROLLBACK = "rollback"                        # a version went down vs what is trusted
    MIX_AND_MATCH = "mix-and-match"              # a file does not match a newer role
    INVALID_METADATA = "invalid-metadata"        # unparsable or inconsistent metadata
    NOT_FOUND = "not-found"                      # the repository has no such target / file
    TOO_LONG = "too-long"                        # more bytes than signed or allowed
    HASH_MISMATCH = "hash-mismatch"              # bytes differ from the signed hashes
    INCOMPLETE_DOWNLOAD = "incomplete-download"  # transfer cut short; partial kept
    UNAVAILABLE = "unavailable"                  # network/transport failure
    NOT_INITIALIZED = "not-initialized"          # no trusted root to start from
    DOWNGRADE = "downgrade"                      # candidate is not above the live version
    BELOW_MINIMUM = "below-minimum"              # candidate is below the signed minimum
    WRONG_MODEL = "wrong-model"                  # target is for another model/slot
    WRONG_ROLE = "wrong-role"                    # signed by a role that may not sign it
    # The engine's own.
    DELTA_INVALID = "delta-invalid"              # the delta does not rebuild the bundle
    NO_SPACE = "no-space"                        # not enough disk for the download
    BUNDLE_INVALID = "bundle-invalid"            # the candidate does not load
    CANDIDATE_MISSING = "candidate-missing"      # the candidate file disappeared
    SMOKE_TEST_FAILED = "smoke-test-failed"      # golden vectors do not match
    LABELS_CHANGED = "labels-changed"            # candidate drops a label or moves normal
    PREVIOUSLY_REJECTED = "previously-rejected"  # this version failed here lately
    HEALTH_ERRORS = "health-errors"              # trial: inference errors
    HEALTH_NON_FINITE = "health-non-finite"      # trial: NaN/inf scores
    HEALTH_PROBABILITIES = "health-probabilities"  # trial: scores do not sum to one
    HEALTH_LATENCY = "health-latency"            # trial: slower than the policy allows
    HEALTH_COLLAPSE = "health-collapse"          # trial: labels collapsed to a few
    HEALTH_LOW_TRAFFIC = "health-low-traffic"    # trial: too few lines to judge
    HEALTH_FLAG_RATE = "health-flag-rate"        # trial: flags far more lines than before
    HEALTH_LABELS_SWAPPED = "health-labels-swapped"  # trial: labels exchanged in a ring
    HEALTH_MEMORY = "health-memory"              # smoke test or trial: too much memory
    UNHEALTHY = "unhealthy"                      # trial verdict without a finer reason
    OPERATOR_ROLLBACK = "operator-rollback"      # the desired state asked for rollback
    INTERRUPTED_TRIAL = "interrupted-trial"      # the agent restarted during the trial
    CRASH_LOOP = "crash-loop"                    # too many restarts during one update
    LIVE_BUNDLE_DAMAGED = "live-bundle-damaged"  # the committed file is gone or altered
    INTERNAL_ERROR = "internal-error"            # a bug; the detail has the exception


# Failures worth retrying later without a new desired state: the cause is outside the
# device's control and may go away (network, a server whose timestamp lapsed, a target
# not published yet, a full disk). Everything else waits for a new desired revision.
TRANSIENT_REASONS: frozenset[OtaReason] = frozenset({
    OtaReason.UNAVAILABLE, OtaReason.INCOMPLETE_DOWNLOAD, OtaReason.EXPIRED_METADATA,
    OtaReason.NOT_FOUND, OtaReason.NO_SPACE})


def known_reason(value: object) -> object:
    """A known code as its :class:`OtaReason`; anything else unchanged (for pydantic)."""
    if isinstance(value, str) and not isinstance(value, OtaReason):
        try:
            return OtaReason(value)
        except ValueError:
            return value
    return value


# The type of a reason read from the wire or from disk: known codes as the enum,
# codes of newer agents as plain strings.
ReasonCode = Annotated[OtaReason | str, BeforeValidator(known_reason)]


def is_transient(reason: str | None) -> bool:
    """True when a failure with ``reason`` may be retried without a new desired state."""
    return reason in TRANSIENT_REASONS
