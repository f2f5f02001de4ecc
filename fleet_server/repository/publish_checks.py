"""What the server checks in operator-signed targets metadata before publishing it,
beyond signatures and versions: the online ``deltas`` key may reach delta files only,
and model targets and slot records must parse (valid, non-reserved model names)."""

from __future__ import annotations

from tuf.api.metadata import TargetFile, Targets

from contract.tuf_targets import (
    DELTA_PATH_PATTERN,
    DELTAS_ROLE,
    parse_model_info,
    parse_slot_record,
)


class DelegationRefused(ValueError):
    """The targets metadata delegates the ``deltas`` role more than delta files."""


def check_delta_delegation(targets: Targets) -> None:
    """The online ``deltas`` key may sign delta files and nothing else: refuse targets
    metadata that delegates it any other path (a legacy or widened pattern)."""
    roles = targets.delegations.roles if targets.delegations else None
    role = roles.get(DELTAS_ROLE) if roles else None
    if role is not None and (role.paths != [DELTA_PATH_PATTERN] or role.path_hash_prefixes):
        raise DelegationRefused(
            f"targets delegate {DELTAS_ROLE!r} paths {role.paths or role.path_hash_prefixes}; "
            f"only [{DELTA_PATH_PATTERN!r}] is accepted (the online key must not reach full "
            "bundles or slot records): re-sign with this version's operator tool")


def check_release_target(path: str, target: TargetFile) -> None:
    """Model targets and slot records must parse (valid, non-reserved model names)."""
    if path.startswith("models/"):
        parse_model_info(path, target.custom)
    elif path.startswith("slots/"):
        parse_slot_record(path, target.custom)
