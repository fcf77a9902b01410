"""API keys with scopes. Keys are random 32-byte tokens; only their SHA-256 is stored in config.

SHA-256 (not a slow password hash) is the right tool here: the keys are long random tokens, not
human passwords, so there is nothing to brute-force, and every request must verify in microseconds.
Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from frontdesk.config import ApiKey, AuthConfig, Scope
from frontdesk.server.errors import ApiError

KEY_PREFIX = "fd_"
_BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer <key> (a key from `frontdesk keys create`)")
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key in an X-API-Key header")


def new_key() -> str:
    """A fresh API key (show it once; store only :func:`hash_key` of it)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The hex SHA-256 of a key, as stored in ``auth.keys[].sha256``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """Looks up a presented key and checks its scope."""

    def __init__(self, config: AuthConfig) -> None:
        self.enabled = config.enabled
        self._keys: list[ApiKey] = list(config.keys)

    def find(self, presented: str | None) -> ApiKey | None:
        if not presented:
            return None
        digest = hash_key(presented)
        match = None
        for key in self._keys:  # compare against every key: no early exit timing signal
            if hmac.compare_digest(key.sha256, digest):
                match = key
        return match

    @staticmethod
    def allows(key: ApiKey, scope: Scope) -> bool:
        return scope in key.scopes or "admin" in key.scopes

    def names(self) -> Iterable[str]:
        return (k.name for k in self._keys)


class RequireKey:
    """FastAPI dependency: the request carries a valid key with ``scope`` (None: any scope).

    ``keys`` is called per request, so a reload that changes the keys applies at once. The
    ``Security`` parameters only document the two ways to send a key in the OpenAPI schema;
    the check reads the headers itself (also from :class:`~frontdesk.server.body.StrictJSONRoute`,
    before a body is read).
    """

    def __init__(self, keys: Callable[[], KeyRing], scope: Scope | None) -> None:
        self.keys, self.scope = keys, scope

    def check_request(self, request: Request) -> None:
        """Raise ApiError 401/403 unless the request may use this endpoint."""
        keys = self.keys()
        if not keys.enabled:
            return
        presented = request.headers.get("x-api-key")
        authorization = request.headers.get("authorization")
        if authorization and authorization[:7].lower() == "bearer ":
            presented = authorization[7:].strip()
        if not presented:
            raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                           headers={"WWW-Authenticate": "Bearer"})
        key = keys.find(presented)
        if key is None:
            raise ApiError(401, "unauthorized", "invalid API key: check it, or create one with `frontdesk keys create`",
                           headers={"WWW-Authenticate": "Bearer"})
        if self.scope is not None and not keys.allows(key, self.scope):
            raise ApiError(403, "forbidden", f"key '{key.name}' lacks the '{self.scope}' scope (has: {', '.join(key.scopes)})")

    async def __call__(self, request: Request, _bearer: Annotated[Any, Security(_BEARER)] = None,
                       _api_key: Annotated[Any, Security(_API_KEY)] = None) -> None:
        self.check_request(request)
