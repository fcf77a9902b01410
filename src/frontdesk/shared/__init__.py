"""State shared by replicas through Redis (``shared:`` in frontdesk.yaml).

* :class:`RedisDeduplicator` — dedup across replicas: a decision is shared once committed (SET NX PX),
  a short lease makes concurrent copies on other replicas wait for it (then decide afresh);
* :class:`RedisTTLCache` — the LLM tier's answer cache across replicas;
* :class:`VersionKey` / :class:`VersionWatcher` — a reload on one replica reaches every replica;
* :class:`DriftFeed` — one drift window over every replica's decisions.

:class:`SharedState` holds the connection and builds them. Redis being down never fails a request:
each part degrades to what one process does alone, and says so in the log.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from frontdesk.shared.config import SharedConfig

if TYPE_CHECKING:
    from frontdesk.shared.cache import RedisTTLCache
    from frontdesk.shared.dedup import RedisDeduplicator
    from frontdesk.shared.drift import DriftFeed
    from frontdesk.shared.state import SharedState
    from frontdesk.shared.versions import Announcement, VersionKey, VersionWatcher

_WHERE = {"RedisTTLCache": "cache", "RedisDeduplicator": "dedup", "DriftFeed": "drift", "SharedState": "state",
          "Announcement": "versions", "VersionKey": "versions", "VersionWatcher": "versions"}


def __getattr__(name: str) -> Any:
    """Import the Redis-backed parts on first use: ``frontdesk.config`` needs only SharedConfig (no redis)."""
    if name in _WHERE:
        try:
            module = importlib.import_module(f"frontdesk.shared.{_WHERE[name]}")
        except ModuleNotFoundError as exc:
            if exc.name != "redis":
                raise
            from frontdesk.errors import ConfigError

            raise ConfigError("shared state needs the redis package: pip install 'frontdesk[sinks]'", field="shared") from exc
        return getattr(module, name)
    raise AttributeError(f"module 'frontdesk.shared' has no attribute {name!r}")


__all__ = ["Announcement", "DriftFeed", "RedisDeduplicator", "RedisTTLCache", "SharedConfig", "SharedState", "VersionKey",
           "VersionWatcher"]
