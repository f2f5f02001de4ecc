"""Desired state per device: computed here, stored in the database, retained on the broker.

The database row is written first (a new revision: at least the old one + 1, and at least
the seconds since 2026, so that a database restored from a backup numbers its next
documents above those devices already hold; :mod:`fleet_server.revisions`), then the
document is published
retained on ``nanofleet/v1/dev/{id}/desired``; ``published_revision`` records
what the broker acknowledged. A broker that is away only delays delivery: on
every (re)connect the server publishes every document again
(:meth:`DesiredStates.publish_all`), because a broker restarted without
persistence has lost its retained messages, and devices ignore a revision they
already have.

Publishing always sends a row's *current* document under one lock, so a slow
publish of revision 5 can never overwrite revision 6 in the broker's retained
slot. Server replicas do not share that lock: after its broker acknowledged, a
publisher reads the revisions again and sends any that moved on meanwhile (another
replica's newer document may have reached the broker before this older one).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from contract import topics
from contract.messages import DesiredModel, DesiredState
from fleet_server.db import AuditEntry, Database, DesiredStateRow
from fleet_server.revisions import next_revision


class RetainedPublisher(Protocol):
    def publish_retained_many(self, messages: Sequence[tuple[str, bytes]],
                              timeout: float) -> list[bool]:
        """Publish each (topic, payload) retained at QoS 1; True where the broker acked."""
        ...


def next_desired(current: DesiredState | None, *, slot: str, model: str, version: int,
                 metadata_url: str | None, target_base_url: str | None,
                 rollout_id: str | None = None,
                 action: Literal["install", "rollback"] = "install",
                 new_revision: bool = False, now: float) -> DesiredState:
    """The document after asking for ``model`` ``version`` on ``slot``, at wall-clock
    ``now`` (the revision: :func:`fleet_server.revisions.next_revision`).

    Returns ``current`` itself when nothing would change (no new revision, so a
    repeated deploy does not make devices re-read anything) unless ``new_revision``:
    a rollout's retry sends the same request again under a new revision, which is
    what makes an agent try again at once."""
    slots = dict(current.slots) if current else {}
    slots[slot] = DesiredModel(model=model, version=version)
    candidate = DesiredState(
        revision=next_revision(current.revision if current else 0, now), slots=slots,
        metadata_url=metadata_url, target_base_url=target_base_url, rollout_id=rollout_id,
        action=action)
    if current is not None and not new_revision and candidate.model_dump(
            exclude={"revision"}) == current.model_dump(exclude={"revision"}):
        return current
    return candidate


@dataclass(frozen=True)
class DeployOutcome:
    device_id: str
    revision: int
    changed: bool
    published: bool


def _encode(doc: DesiredState) -> bytes:
    return json.dumps(doc.model_dump(mode="json"), sort_keys=True).encode()


class DesiredStates:
    def __init__(self, db: Database, publisher: RetainedPublisher | None, *,
                 metadata_url: str | None, target_base_url: str | None,
                 publish_timeout: float = 10.0) -> None:
        self.db = db
        self.publisher = publisher
        self.metadata_url = metadata_url
        self.target_base_url = target_base_url
        self.publish_timeout = publish_timeout
        self._publish_lock = threading.Lock()

    def deploy(self, device_ids: Sequence[str], *, slot: str, model: str, version: int,
               actor: str, rollout_id: str | None = None) -> list[DeployOutcome]:
        """Set ``slot`` -> ``model`` ``version`` for each device, then publish."""
        with self.db.session() as session:
            changed = self.stage(session, device_ids, slot=slot, model=model, version=version,
                                 rollout_id=rollout_id)
            session.add(AuditEntry(actor=actor, action="deploy", subject=f"{model} v{version}",
                                   detail={"slot": slot, "devices": list(device_ids),
                                           "rollout_id": rollout_id}))
        published = self.publish(list(device_ids))
        return [DeployOutcome(d, rev, is_new, d in published)
                for d, (rev, is_new) in changed.items()]

    def stage(self, session: Session, device_ids: Sequence[str], *, slot: str, model: str,
              version: int, rollout_id: str | None = None,
              action: Literal["install", "rollback"] = "install",
              new_revision: bool = False) -> dict[str, tuple[int, bool]]:
        """Write the new documents in ``session`` (the caller's transaction) without
        publishing; call :meth:`publish` after the commit. Returns device -> (revision,
        changed)."""
        for device_id in device_ids:
            topics.check_device_id(device_id)
        changed: dict[str, tuple[int, bool]] = {}
        rows = {r.device_id: r for r in session.scalars(
            select(DesiredStateRow).where(DesiredStateRow.device_id.in_(device_ids))
            .with_for_update())}
        now = time.time()
        for device_id in device_ids:
            row = rows.get(device_id)
            current = DesiredState.model_validate(row.document) if row else None
            doc = next_desired(current, slot=slot, model=model, version=version,
                               metadata_url=self.metadata_url,
                               target_base_url=self.target_base_url, rollout_id=rollout_id,
                               action=action, new_revision=new_revision, now=now)
            is_new = doc is not current
            if row is None:
                row = rows[device_id] = DesiredStateRow(device_id=device_id,
                                                        published_revision=0)
                session.add(row)
            if is_new:
                row.revision = doc.revision
                row.document = doc.model_dump(mode="json")
                row.updated_at = now
                row.rollout_id = rollout_id
            changed[device_id] = (doc.revision, is_new)
        return changed

    def current(self, session: Session, device_id: str) -> DesiredStateRow | None:
        return session.get(DesiredStateRow, device_id)

    def publish(self, device_ids: Sequence[str], *, force: bool = False,
                _depth: int = 0) -> set[str]:
        """Publish the current documents of ``device_ids``; returns those the broker acked
        (now or before: a revision already acknowledged counts as published, and is sent
        again only with ``force``)."""
        if not device_ids:
            return set()
        with self._publish_lock:
            with self.db.session() as session:
                rows = list(session.scalars(select(DesiredStateRow).where(
                    DesiredStateRow.device_id.in_(device_ids))))
            done = set() if force else {
                r.device_id for r in rows if r.published_revision >= r.revision}
            todo = [r for r in rows if force or r.published_revision < r.revision]
            if not todo or self.publisher is None:
                return done
            acks = self.publisher.publish_retained_many(
                [(topics.desired(r.device_id),
                  _encode(DesiredState.model_validate(r.document))) for r in todo],
                self.publish_timeout)
            acked = [r for r, ok in zip(todo, acks, strict=True) if ok]
            with self.db.session() as session:
                for r in acked:
                    session.execute(update(DesiredStateRow).where(
                        DesiredStateRow.device_id == r.device_id,
                        DesiredStateRow.published_revision < r.revision,
                    ).values(published_revision=r.revision))
                sent = {r.device_id: r.revision for r in acked}
                overtaken = [device_id for device_id, revision in session.execute(
                    select(DesiredStateRow.device_id, DesiredStateRow.revision).where(
                        DesiredStateRow.device_id.in_(list(sent))))
                    if revision > sent[device_id]] if sent else []
        if overtaken and _depth < 3:
            self.publish(overtaken, force=True, _depth=_depth + 1)
        return done | {r.device_id for r in acked}

    def publish_all(self, batch: int = 1000) -> int:
        """Publish every device's document again (after a (re)connect); returns how many
        the broker acknowledged."""
        with self.db.session() as session:
            ids = list(session.scalars(select(DesiredStateRow.device_id).where(
                DesiredStateRow.revision > 0).order_by(DesiredStateRow.device_id)))
        return sum(len(self.publish(ids[i:i + batch], force=True))
                   for i in range(0, len(ids), batch))
