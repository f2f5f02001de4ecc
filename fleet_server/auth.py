"""Operator tokens and their scopes.

Scopes, each including the ones before it:

- ``read``: look (models, devices, rollouts, audit log);
- ``deploy``: change what devices run (publish, deploy, rollouts, tagging);
- ``admin``: manage operator tokens (and everything else).

Tokens live in two places, both hashed (SHA-256 of a 256-bit random token; nothing
to brute-force): ``[[operator_tokens]]`` in the server config (the bootstrap tokens
``server init`` makes; admin unless the entry says otherwise) and the
``api_tokens`` table (made through the API by an admin, revocable at once, recorded
in the audit log). A token's *name* is who it is in the audit log.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import JSON, Float, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from fleet_server.config import OperatorToken, hash_token, new_operator_token
from fleet_server.db import AuditEntry, Base

Scope = Literal["read", "deploy", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "deploy", "admin")
_IMPLIED: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}), "deploy": frozenset({"read", "deploy"}),
    "admin": frozenset({"read", "deploy", "admin"})}
# What an operator route needs when it does not say: looking is read, changing is deploy.
METHOD_SCOPE: dict[str, Scope] = {"GET": "read", "HEAD": "read", "OPTIONS": "read"}


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    created_by: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(64), nullable=True)


@dataclass(frozen=True)
class Identity:
    """Who is calling: the token's name and its effective scopes."""

    name: str
    scopes: frozenset[str]
    source: Literal["config", "database"]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


class TokenRefused(ValueError):
    """A token operation that cannot be done; the message says why."""


def effective_scopes(scopes: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for s in scopes:
        out |= _IMPLIED[s]
    return frozenset(out)


def parse_scopes(text: str) -> list[Scope]:
    """``read,deploy`` -> ["read", "deploy"]; unknown names are an error."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SCOPES]
    if bad or not names:
        raise ValueError(f"invalid scopes {text!r}: use a comma-separated list of "
                         f"{', '.join(SCOPES)}")
    return [s for s in SCOPES if s in names]


def find_identity(token: str, config_tokens: Sequence[OperatorToken],
                  session: Session) -> Identity | None:
    return identity_for_hash(hash_token(token), config_tokens, session)


def identity_for_hash(digest: str, config_tokens: Sequence[OperatorToken],
                      session: Session) -> Identity | None:
    """The identity of the token with SHA-256 ``digest`` (the console's sessions keep
    only the hash), or None if it is unknown or revoked."""
    for entry in config_tokens:
        if hmac.compare_digest(entry.sha256, digest):
            return Identity(entry.name, effective_scopes(entry.scopes), "config")
    row = session.scalars(select(ApiTokenRow).where(ApiTokenRow.sha256 == digest)).first()
    if row is None or row.revoked_at is not None:
        return None
    return Identity(row.name, effective_scopes(row.scopes), "database")


def missing_scope_message(identity: Identity, needed: str, what: str) -> str:
    held = ", ".join(s for s in SCOPES if s in identity.scopes)
    return (f"token {identity.name!r} has scope(s) [{held}]; {what} needs '{needed}': ask an "
            f"admin for a token with it (nanofleet server token --name NAME --scopes {needed})")


def create_token(session: Session, name: str, scopes: Sequence[Scope],
                 config_tokens: Sequence[OperatorToken], actor: str) -> str:
    """Store a new token's hash; returns the token (shown once)."""
    if any(t.name == name for t in config_tokens):
        raise TokenRefused(f"the name {name!r} belongs to a token in the server config; "
                           "choose another name")
    existing = session.get(ApiTokenRow, name)
    if existing is not None:
        state = "revoked" if existing.revoked_at is not None else "active"
        raise TokenRefused(f"a token named {name!r} already exists ({state}); names are "
                           "never reused, so the audit log stays unambiguous: choose another")
    token = new_operator_token()
    now = time.time()
    session.add(ApiTokenRow(name=name, sha256=hash_token(token), scopes=list(scopes),
                            created_at=now, created_by=actor))
    session.add(AuditEntry(actor=actor, action="token-create", subject=name, at=now,
                           detail={"scopes": list(scopes)}))
    return token


def revoke_token(session: Session, name: str, config_tokens: Sequence[OperatorToken],
                 actor: str) -> None:
    row = session.get(ApiTokenRow, name)
    if row is None:
        hint = (" (it is in the server config: remove it there and restart)"
                if any(t.name == name for t in config_tokens) else "")
        raise TokenRefused(f"no API token named {name!r}{hint}")
    if row.revoked_at is not None:
        return
    now = time.time()
    row.revoked_at, row.revoked_by = now, actor
    session.add(AuditEntry(actor=actor, action="token-revoke", subject=name, at=now, detail={}))


def list_tokens(session: Session, config_tokens: Sequence[OperatorToken]) -> list[dict[
        str, object]]:
    out: list[dict[str, object]] = [
        {"name": t.name, "scopes": list(t.scopes), "source": "config", "created_at": None,
         "created_by": None, "revoked_at": None} for t in config_tokens]
    out += [{"name": r.name, "scopes": list(r.scopes), "source": "database",
             "created_at": r.created_at, "created_by": r.created_by,
             "revoked_at": r.revoked_at}
            for r in session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.created_at))]
    return out
