"""Root rotation: root N+1 signed by a threshold of the OLD and of the NEW root keys.

Clients provisioned with any older root walk N -> N+1 -> ... and accept each step
only if both thresholds hold (TUF 5.3.4), so this refuses to write a root they
would reject. Rotating online keys (snapshot/timestamp) re-signs those roles
with the repository's new ``online`` signers right away; rotating the targets
key needs the new targets signers, which re-sign the current targets content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from securesystemslib.signer import Key, Signer
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root, Snapshot, Targets, Timestamp

from fleet_server.repository import storage
from fleet_server.repository.metadata_store import RepositoryError
from fleet_server.repository.repo import Repository


class RotationError(RepositoryError):
    """A root rotation would not be accepted by clients; the message says why."""


def _replace_keys(root: Root, role: str, keys: Sequence[Key]) -> None:
    if not keys:
        raise RotationError(f"role {role!r} would have no keys")
    for keyid in list(root.roles[role].keyids):
        root.revoke_key(keyid, role)
    for key in keys:
        root.add_key(key, role)


def _check_threshold(root: Root, which: str, new: Metadata[Root]) -> None:
    try:
        root.verify_delegate(Root.type, new.signed_bytes, new.signatures)
    except UnsignedMetadataError as exc:
        raise RotationError(f"root v{new.signed.version} is not signed by a threshold of the "
                            f"{which} root keys ({exc})") from None


def _online_matches(root: Root, repo: Repository) -> None:
    online = repo.require_online()
    for role, signer in ((Snapshot.type, online.snapshot), (Timestamp.type, online.timestamp)):
        if signer.public_key.keyid not in root.roles[role].keyids:
            raise RotationError(f"the repository's online {role} key is not a {role} key of "
                                "the new root: construct Repository(online=...) with the new "
                                "online keys first")


def rotate_root(repo: Repository, new_root_keys: Sequence[Key], threshold: int,
                old_signers: Sequence[Signer], new_signers: Sequence[Signer], *,
                role_keys: Mapping[str, Sequence[Key]] | None = None,
                targets_signers: Sequence[Signer] = ()) -> int:
    """Write root N+1 with ``new_root_keys`` (``threshold`` of them) and return N+1.

    ``old_signers`` must reach the current root's threshold, ``new_signers`` the new
    one (a key in both sets counts for both). ``role_keys`` optionally replaces the
    keys of other top-level roles (``targets``, ``snapshot``, ``timestamp``)."""
    role_keys = dict(role_keys or {})
    unknown = set(role_keys) - {Targets.type, Snapshot.type, Timestamp.type}
    if unknown:
        raise RotationError(f"cannot rotate keys of {sorted(unknown)} here")
    if not 1 <= threshold <= len(new_root_keys):
        raise RotationError(f"threshold {threshold} needs 1..{len(new_root_keys)} new root keys")
    with storage.exclusive_lock(repo.path):
        old = repo.root()
        new: Metadata[Root] = Metadata[Root].from_bytes(old.to_bytes())
        new.signatures.clear()
        root = new.signed
        root.version += 1
        root.expires = repo.expiry.expires(Root.type)
        _replace_keys(root, Root.type, new_root_keys)
        root.roles[Root.type].threshold = threshold
        for role, keys in role_keys.items():
            _replace_keys(root, role, keys)

        known = set(old.signed.roles[Root.type].keyids) | set(root.roles[Root.type].keyids)
        signers: dict[str, Signer] = {}
        for signer in [*old_signers, *new_signers]:
            keyid = signer.public_key.keyid
            if keyid not in known:
                raise RotationError(f"signer {keyid[:12]}… is neither an old nor a new root key")
            signers[keyid] = signer
        for signer in signers.values():
            new.sign(signer, append=True)
        _check_threshold(old.signed, "OLD", new)
        _check_threshold(root, "NEW", new)

        targets_changed = Targets.type in role_keys
        online_changed = bool({Snapshot.type, Timestamp.type} & set(role_keys))
        resigned_targets: Metadata[Targets] | None = None
        if targets_changed:
            resigned_targets = Metadata[Targets].from_bytes(repo.targets_bytes())
            resigned_targets.signatures.clear()
            resigned_targets.signed.version += 1
            resigned_targets.signed.expires = repo.expiry.expires(Targets.type)
            for signer in targets_signers:
                resigned_targets.sign(signer, append=True)
            try:
                root.verify_delegate(Targets.type, resigned_targets.signed_bytes,
                                     resigned_targets.signatures)
            except UnsignedMetadataError as exc:
                raise RotationError(f"new targets keys need targets_signers that meet the "
                                    f"threshold ({exc})") from None
        if online_changed or targets_changed:
            _online_matches(root, repo)

        repo.write_root(new)
        bumps: dict[str, int] = {}
        if resigned_targets is not None:
            repo.write_versioned(resigned_targets, Targets.type)
            bumps[Targets.type] = resigned_targets.signed.version
        if bumps or online_changed:
            repo.write_snapshot_and_timestamp(bumps)
        return root.version
