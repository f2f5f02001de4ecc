"""Console sign-in: a server-side session per browser, bound to an operator token.

Signing in checks the token like the REST API does (:func:`fleet_server.auth.find_identity`)
and stores only its SHA-256 with a random session id; the browser holds the id in a
cookie (HttpOnly, SameSite=Strict, Secure over TLS). Every request looks the token up
again by its hash, so a revoked token signs its sessions out at once and a token's
scopes are always the current ones. Each session has its own CSRF token, which every
form and every htmx request sends back (checked with a constant-time compare).
Sessions are rows (``console_sessions``), so several server replicas share them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, String, delete
from sqlalchemy.orm import Mapped, Session, mapped_column

from fleet_server.auth import Identity, find_identity, identity_for_hash
from fleet_server.config import OperatorToken, hash_token
from fleet_server.db import AuditEntry, Base

COOKIE = "nanofleet_console"
MAX_SESSIONS_PER_TOKEN = 20  # bounded: the oldest go when a token signs in once more


class ConsoleSessionRow(Base):
    __tablename__ = "console_sessions"

    id_sha256: Mapped[str] = mapped_column(String(64), primary_key=True,
                                           doc="hash of the cookie's session id")
    token_sha256: Mapped[str] = mapped_column(String(64), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    last_used: Mapped[float] = mapped_column(Float, index=True)


@dataclass(frozen=True)
class SignedIn:
    identity: Identity
    csrf: str
    session_key: str  # hash of the session id (the row's key)


class SignInRefused(ValueError):
    """The token was refused; the message says what to do."""


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def sign_in(session: Session, token: str, config_tokens: Sequence[OperatorToken],
            now: float, idle_s: float = 8 * 3600) -> tuple[str, Identity]:
    """A new session for ``token``: (session id for the cookie, identity). Sessions idle
    longer than ``idle_s`` (anyone's) are removed on the way: the table stays bounded.
    Only once the token is known: a refused sign-in writes nothing (review, December 2026:
    each anonymous attempt deleted first, and took the database's write lock that report
    ingest and rollouts wait for)."""
    token = token.strip()
    if not token:
        raise SignInRefused("enter an operator token (nanofleet server token makes one)")
    identity = find_identity(token, config_tokens, session)
    if identity is None:
        raise SignInRefused("token not recognised or revoked: check it, or ask an admin for "
                            "one (nanofleet server token)")
    expire(session, now, idle_s)
    digest = hash_token(token)
    older = [r for r in session.query(ConsoleSessionRow).filter(
        ConsoleSessionRow.token_sha256 == digest).order_by(ConsoleSessionRow.last_used.desc())]
    for row in older[MAX_SESSIONS_PER_TOKEN - 1:]:
        session.delete(row)
    session_id = secrets.token_urlsafe(32)
    session.add(ConsoleSessionRow(id_sha256=_key(session_id), token_sha256=digest,
                                  csrf=secrets.token_urlsafe(32), created_at=now,
                                  last_used=now))
    session.add(AuditEntry(actor=identity.name, action="console-sign-in", subject="",
                           at=now, detail={}))
    return session_id, identity


def lookup(session: Session, session_id: str | None, config_tokens: Sequence[OperatorToken],
           now: float, idle_s: float, max_age_s: float = 12 * 3600,
           used: bool = True) -> SignedIn | None:
    """The signed-in operator of a cookie, or None (unknown, idle too long, older than
    ``max_age_s``, token revoked). ``used``: the request is the operator's, not a page's
    own live polling, which must not keep an unattended tab signed in for ever (review,
    December 2026: seven days of polling alone kept a session)."""
    if not session_id:
        return None
    row = session.get(ConsoleSessionRow, _key(session_id))
    if row is None:
        return None
    if now - row.last_used > idle_s or now - row.created_at > max_age_s:
        session.delete(row)
        return None
    identity = identity_for_hash(row.token_sha256, config_tokens, session)
    if identity is None:
        session.delete(row)
        return None
    if used and now - row.last_used > 60:  # one write a minute per session at most
        row.last_used = now
    return SignedIn(identity, row.csrf, row.id_sha256)


def csrf_ok(signed_in: SignedIn, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(signed_in.csrf.encode(), (sent or "").encode())


def sign_out(session: Session, session_id: str | None, actor: str, now: float) -> None:
    if session_id:
        session.execute(delete(ConsoleSessionRow).where(
            ConsoleSessionRow.id_sha256 == _key(session_id)))
        session.add(AuditEntry(actor=actor, action="console-sign-out", subject="", at=now,
                               detail={}))


def _count(result: Any) -> int:
    """Rows a DELETE removed (CursorResult.rowcount; typed as a plain Result)."""
    return int(getattr(result, "rowcount", 0) or 0)


def expire(session: Session, now: float, idle_s: float) -> int:
    """Remove sessions idle longer than ``idle_s``; returns how many."""
    return _count(session.execute(delete(ConsoleSessionRow).where(
        ConsoleSessionRow.last_used < now - idle_s)))


__all__ = ["COOKIE", "ConsoleSessionRow", "SignInRefused", "SignedIn", "csrf_ok", "expire",
           "lookup", "sign_in", "sign_out"]
