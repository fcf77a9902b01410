"""Deduplication shared by replicas: committed decisions in Redis, a short lease per message being decided.

Same contract as the in-process :class:`~frontdesk.intake.dedup.Deduplicator` (the
:class:`~frontdesk.intake.dedup.DedupStore` protocol): a decision becomes visible to other replicas
only when :meth:`RedisDeduplicator.confirm` runs after the commit (an atomic ``SET NX PX window``),
so no replica ever answers "duplicate of" an id the store does not hold. While one replica decides a
message it holds a lease key (``SET NX PX lease_s``, deleted on confirm/release, expiring if the
replica dies); a copy arriving at another replica polls for the decision until ``wait_s``, then is
decided afresh. Copies within one process wait on an event instead of polling; a batch that already
holds claims never waits for another's (two batches waiting on each other would stall). Redis errors
degrade to "no dedup" for that message (logged), never to a failed request.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from redis import RedisError

from frontdesk.intake.dedup import Claim, ClaimTable

T = TypeVar("T")
log = logging.getLogger("frontdesk.shared")

# KEYS[1] value key, KEYS[2] lease key; ARGV lease token, lease ms → {1, value} | {2, ''} (lease taken) | {0, ''}
_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, ''} end
return {0, ''}
"""
# KEYS[1] value key, KEYS[2] lease key; ARGV value, window ms, lease token
_CONFIRM = """
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""
# KEYS[1] lease key; ARGV lease token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class _Claim(Claim[T]):
    """A local claim with its Redis lease token."""

    __slots__ = ("token", "held")

    def __init__(self, owner: object, token: str) -> None:
        super().__init__(owner)
        self.token = token
        self.held = False  # True once the Redis lease is ours (False: still asking Redis)


class RedisDeduplicator(ClaimTable[T, _Claim[T]]):
    """A :class:`~frontdesk.intake.dedup.DedupStore` in Redis; ``encode``/``decode`` turn values into bytes/str."""

    def __init__(self, client: Any, *, window_s: float, encode: Callable[[T], str | bytes], decode: Callable[[bytes], T],
                 prefix: str = "frontdesk:", lease_s: float = 30.0, wait_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(window_s, wait_s, clock)
        self.client, self.lease_s = client, float(lease_s)
        self.encode, self.decode, self.prefix = encode, decode, prefix
        self._claim = client.register_script(_CLAIM)
        self._confirm = client.register_script(_CONFIRM)
        self._release = client.register_script(_RELEASE)
        self.errors = 0
        """Redis errors met (each one: that message was not deduplicated)."""

    def _vkey(self, key: bytes) -> str:
        return f"{self.prefix}dedup:v:{key.hex()}"

    def _lkey(self, key: bytes) -> str:
        return f"{self.prefix}dedup:l:{key.hex()}"

    def _error(self, what: str, exc: Exception) -> None:
        self.errors += 1
        log.warning("shared dedup: %s failed, this message is not deduplicated (%s: %s)", what, type(exc).__name__, exc)

    # -- the claim flow ------------------------------------------------------------------------------
    def claim(self, sender: str | None, text: str, owner: object) -> tuple[T | None, bytes | None]:
        """``(earlier, None)`` for a duplicate of a committed decision (or of a pending one of the same
        ``owner``), ``(None, key)`` when the caller now holds the claim (confirm or release it), ``(None,
        None)`` when dedup does not apply or the wait for another replica's decision ran out."""
        key = self._key_of(sender, text)
        if key is None:
            return None, None
        deadline = self._clock() + self.wait_s
        delay = 0.002
        while True:
            with self._lock:
                pending = self._claims.get(key)
                if pending is not None and pending.owner is owner:
                    return pending.value, None
                busy = any(c.owner is owner for c in self._claims.values())
                mine = None
                if pending is None:
                    mine = self._claims[key] = _Claim(owner, uuid.uuid4().hex)
            if mine is not None:
                outcome = self._acquire(key, mine)
                if outcome is not None:
                    return outcome
            elif busy:
                return None, None  # never wait while holding claims: decide afresh
            elif not pending.done.wait(max(0.0, deadline - self._clock())):  # type: ignore[union-attr]
                return None, None
            else:
                continue  # the local claim ended: look again (its decision is in Redis if it was committed)
            if busy or self._clock() >= deadline:
                return None, None
            time.sleep(min(delay, max(0.0, deadline - self._clock())))
            delay = min(delay * 2, 0.05)

    def _acquire(self, key: bytes, mine: _Claim[T]) -> tuple[T | None, bytes | None] | None:
        """Ask Redis for the committed value, else for the lease. None: another replica holds the lease."""
        try:
            kind, raw = self._claim(keys=[self._vkey(key), self._lkey(key)], args=[mine.token, max(1, int(self.lease_s * 1000))])
        except RedisError as exc:
            self._drop(key, mine)
            self._error("claim", exc)
            return None, None
        if int(kind) == 2:
            mine.held = True
            return None, key
        self._drop(key, mine)
        if int(kind) == 1:
            return self.decode(raw), None
        return None

    def _drop(self, key: bytes, claim: _Claim[T]) -> None:
        with self._lock:
            if self._claims.get(key) is claim:
                del self._claims[key]
        claim.done.set()

    def confirm(self, key: bytes | None) -> None:
        """The claimed message's decision is committed: share it for the window (SET NX PX), drop the lease."""
        self._end_claim(key, "confirm", commit=True)

    def release(self, key: bytes | None) -> None:
        """Nothing was committed: drop the lease so the next copy is decided afresh at once."""
        self._end_claim(key, "release", commit=False)

    def _end_claim(self, key: bytes | None, what: str, *, commit: bool) -> None:
        """Take the claim out, share its value (``commit`` and there is one) or just drop the lease; wake its waiters."""
        claim = self._pop_claim(key)
        if claim is None or key is None:
            return
        try:
            if commit and claim.value is not None:
                self._confirm(keys=[self._vkey(key), self._lkey(key)],
                              args=[self.encode(claim.value), max(1, int(self.window_s * 1000)), claim.token])
            else:
                self._release(keys=[self._lkey(key)], args=[claim.token])
        except RedisError as exc:
            self._error(what, exc)
        finally:
            claim.done.set()

    # -- direct access -------------------------------------------------------------------------------
    def lookup(self, sender: str | None, text: str) -> T | None:
        """The committed value shared for this sender and message within the window, else None."""
        key = self._key_of(sender, text)
        if key is None:
            return None
        try:
            raw = self.client.get(self._vkey(key))
        except RedisError as exc:
            self._error("lookup", exc)
            return None
        return None if raw is None else self.decode(raw)

    def remember(self, sender: str | None, text: str, value: T) -> None:
        """Share an already committed ``value`` for this sender and message; the window starts now."""
        key = self._key_of(sender, text)
        if key is None:
            return
        try:
            self.client.set(self._vkey(key), self.encode(value), px=max(1, int(self.window_s * 1000)))
        except RedisError as exc:
            self._error("remember", exc)

    def clear(self) -> None:
        """Forget every shared decision and lease under this prefix (all replicas), and the local claims."""
        self._drop_claims()
        keys = list(self.client.scan_iter(match=f"{self.prefix}dedup:*", count=1000))
        for i in range(0, len(keys), 1000):
            self.client.delete(*keys[i : i + 1000])
