"""A TTL cache in Redis with the interface of :class:`frontdesk.common.ttlcache.TTLCache` (shared by replicas)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from redis import RedisError

V = TypeVar("V")
log = logging.getLogger("frontdesk.shared")


class RedisTTLCache(Generic[V]):
    """``get``/``put``/``pop``/``clear`` on Redis keys ``{prefix}{namespace}:{key}`` that expire after ``ttl_s``.

    Values are stored as JSON (``encode``/``decode`` convert them, e.g. tuples back from lists). ``ttl_s <= 0``
    turns it off like the in-process cache. A Redis error, or a value that does not encode or decode, is a
    miss (``get``) or a skipped store (``put``), logged and counted in :attr:`errors`: a cache never fails the
    request it serves.
    """

    def __init__(self, client: Any, namespace: str, ttl_s: float = 3600.0, *, prefix: str = "frontdesk:",
                 encode: Callable[[V], Any] = lambda v: v, decode: Callable[[Any], V] = lambda v: v) -> None:
        self.client, self.ttl_s = client, ttl_s
        self.base = f"{prefix}{namespace}:"
        self._encode, self._decode = encode, decode
        self.errors = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def _key(self, key: Hashable) -> str:
        return self.base + str(key)

    def _error(self, what: str, exc: Exception) -> None:
        self.errors += 1
        log.warning("shared cache %s: %s failed (%s: %s)", self.base, what, type(exc).__name__, exc)

    def get(self, key: Hashable) -> V | None:
        """The live value for ``key``, or None."""
        if not self.enabled:
            return None
        try:
            raw = self.client.get(self._key(key))
            return None if raw is None else self._decode(json.loads(raw))
        except (RedisError, ValueError, TypeError) as exc:  # unreachable, or an entry another version wrote: a miss
            self._error("get", exc)
            return None

    def put(self, key: Hashable, value: V) -> None:
        if not self.enabled:
            return
        try:
            self.client.set(self._key(key), json.dumps(self._encode(value), ensure_ascii=False), px=max(1, int(self.ttl_s * 1000)))
        except (RedisError, ValueError, TypeError) as exc:  # a value that is not JSON is not shared, never an error
            self._error("put", exc)

    def pop(self, key: Hashable) -> V | None:
        if not self.enabled:
            return None
        try:
            raw = self.client.getdel(self._key(key))
            return None if raw is None else self._decode(json.loads(raw))
        except (RedisError, ValueError, TypeError) as exc:
            self._error("pop", exc)
            return None

    def clear(self) -> None:
        """Delete every entry of this namespace (for every replica)."""
        if not self.enabled:
            return
        keys = list(self.client.scan_iter(match=self.base + "*", count=1000))
        for i in range(0, len(keys), 1000):
            self.client.delete(*keys[i : i + 1000])

    def __len__(self) -> int:
        if not self.enabled:
            return 0
        return sum(1 for _ in self.client.scan_iter(match=self.base + "*", count=1000))
