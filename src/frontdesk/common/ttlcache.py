"""The one TTL cache: a bounded, thread-safe mapping whose entries expire (cachetools ``TTLCache`` + a lock).

``ttl_s <= 0`` turns it off (every ``get`` misses, ``put`` stores nothing), so "no cache" is a setting,
not a code path. Entries past their time-to-live are never returned; when full, the least recently
used entry goes first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache as _TTLCache

V = TypeVar("V")


class TTLCache(Generic[V]):
    """``get``/``put``/``pop``/``clear`` under one lock; ``clock`` is injectable for tests."""

    def __init__(self, ttl_s: float = 3600.0, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be ≥ 1, got {max_entries}")
        self.ttl_s, self.max_entries = ttl_s, max_entries
        self._data: _TTLCache[Hashable, V] | None = _TTLCache(max_entries, ttl_s, timer=clock) if ttl_s > 0 else None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._data is not None

    def get(self, key: Hashable) -> V | None:
        """The live value for ``key``, or None."""
        if self._data is None:
            return None
        with self._lock:
            return self._data.get(key)

    def put(self, key: Hashable, value: V) -> None:
        if self._data is None:
            return
        with self._lock:
            self._data[key] = value

    def pop(self, key: Hashable) -> V | None:
        if self._data is None:
            return None
        with self._lock:
            return self._data.pop(key, None)

    def clear(self) -> None:
        if self._data is not None:
            with self._lock:
                self._data.clear()

    def __len__(self) -> int:
        if self._data is None:
            return 0
        with self._lock:
            self._data.expire()
            return len(self._data)


__all__ = ["TTLCache"]
