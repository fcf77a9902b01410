"""One process's connection to the shared state, and the shared parts built on it."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from frontdesk.errors import ConfigError
from frontdesk.shared.cache import RedisTTLCache
from frontdesk.shared.config import SharedConfig
from frontdesk.shared.dedup import RedisDeduplicator
from frontdesk.shared.drift import DriftFeed
from frontdesk.shared.versions import VersionKey

if TYPE_CHECKING:
    from frontdesk.cascade.router import Router

T = TypeVar("T")
log = logging.getLogger("frontdesk.shared")


class SharedState:
    """A Redis client (thread-safe connection pool) plus factories for the shared dedup store, caches,
    version key and drift feed. One per process: pipelines rebuilt by a reload reuse it."""

    def __init__(self, config: SharedConfig, client: Any | None = None, *, replica: str | None = None) -> None:
        self.config = config
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}"
        if client is None:
            try:
                client = redis.Redis.from_url(config.url, socket_timeout=config.timeout_s,
                                              socket_connect_timeout=config.timeout_s, health_check_interval=30)
            except ValueError as exc:
                raise ConfigError(f"bad Redis URL {config.url!r} ({exc})", field="shared.url") from exc
            self._own = True
        else:
            self._own = False
        self.client = client

    def ping(self) -> bool:
        """True when Redis answers (replicas carry on alone while it does not)."""
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def deduplicator(self, window_s: float, encode: Callable[[T], str | bytes], decode: Callable[[bytes], T]) -> RedisDeduplicator[T]:
        c = self.config
        return RedisDeduplicator(self.client, window_s=window_s, encode=encode, decode=decode, prefix=c.prefix,
                                 lease_s=c.lease_s, wait_s=c.wait_s)

    def cache(self, namespace: str, ttl_s: float, *, encode: Callable[[Any], Any] = lambda v: v,
              decode: Callable[[Any], Any] = lambda v: v) -> RedisTTLCache[Any]:
        return RedisTTLCache(self.client, namespace, ttl_s, prefix=self.config.prefix, encode=encode, decode=decode)

    def versions(self) -> VersionKey:
        return VersionKey(self.client, self.config.prefix)

    def drift_feed(self, router: Router | None = None) -> DriftFeed:
        return DriftFeed(self.client, self.config.prefix, maxlen=self.config.drift_maxlen,
                         primary_tier=router.primary.name if router is not None else None, replica=self.replica)

    def close(self) -> None:
        if self._own:
            self.client.close()
