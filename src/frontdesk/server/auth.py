"""API keys with scopes. Keys are random 32-byte tokens; only their SHA-256 is stored in config.

SHA-256 (not a slow password hash) is the right tool here: the keys are long random tokens, not
human passwords, so there is nothing to brute-force, and every request must verify in microseconds.
Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable

from frontdesk.config import ApiKey, AuthConfig, Scope

KEY_PREFIX = "fd_"


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
