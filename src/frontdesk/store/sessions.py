"""Console sign-ins, kept in the store so that every replica behind a load balancer knows them.

The browser holds a random session token (in an HttpOnly cookie); the table holds only its SHA-256,
the name and key hash of the API key that signed in, the session's CSRF token and its expiry. The
key's scopes are *not* copied: each request looks the key hash up in the current key ring, so
removing a key from the config ends its sessions at once. Signing out deletes the row.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from frontdesk.store.store import Store, _meta, _now, _UTCDateTime

_sessions = sa.Table(
    "console_sessions", _meta,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("key_name", sa.String(), nullable=False),
    sa.Column("key_sha256", sa.String()),
    sa.Column("csrf", sa.String(), nullable=False),
    sa.Column("created_at", _UTCDateTime(), nullable=False),
    sa.Column("expires_at", _UTCDateTime(), nullable=False),
)


@dataclass(slots=True, frozen=True)
class ConsoleSession:
    """One signed-in browser. ``key_sha256`` is None for the development session (auth off)."""

    key_name: str
    key_sha256: str | None
    csrf: str
    created_at: datetime
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Sessions:
    """Create, look up and end console sessions in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, *, key_name: str, key_sha256: str | None, ttl_s: float) -> tuple[str, ConsoleSession]:
        """A new session: (the token for the cookie — shown once, stored hashed —, the session).
        Expired sessions are purged on the way."""
        token = secrets.token_urlsafe(32)
        now = _now()
        session = ConsoleSession(key_name=key_name, key_sha256=key_sha256, csrf=secrets.token_urlsafe(32),
                                 created_at=now, expires_at=now + timedelta(seconds=ttl_s))
        with self.store._write() as conn:
            conn.execute(sa.delete(_sessions).where(_sessions.c.expires_at < now))
            conn.execute(sa.insert(_sessions).values(id=_digest(token), key_name=key_name, key_sha256=key_sha256,
                                                     csrf=session.csrf, created_at=now, expires_at=session.expires_at))
        return token, session

    def get(self, token: str | None) -> ConsoleSession | None:
        """The live session of ``token``, or None (unknown, signed out or expired)."""
        if not token or len(token) > 128:
            return None
        with self.store._read() as conn:
            row = conn.execute(sa.select(_sessions).where(_sessions.c.id == _digest(token))).first()
        if row is None or row.expires_at <= _now():
            return None
        return ConsoleSession(key_name=row.key_name, key_sha256=row.key_sha256, csrf=row.csrf,
                              created_at=row.created_at, expires_at=row.expires_at)

    def delete(self, token: str | None) -> None:
        """End the session of ``token`` (nothing happens for an unknown one)."""
        if token and len(token) <= 128:
            with self.store._write() as conn:
                conn.execute(sa.delete(_sessions).where(_sessions.c.id == _digest(token)))
