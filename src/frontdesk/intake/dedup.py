"""Duplicates: the same sender sending the same message within a window gets the earlier decision."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar, runtime_checkable

from frontdesk.errors import ConfigError
from frontdesk.common.textkey import text_key

T = TypeVar("T")


# -- duplicates ---------------------------------------------------------------------------


def dedup_text(text: str) -> str:
    """The form of a message compared for duplicates (see :func:`frontdesk.common.textkey.text_key`)."""
    return text_key(text)


def dedup_key(sender: str | None, text: str) -> bytes | None:
    """The 128-bit BLAKE2 key of (sender, message), or None when the message must not be deduplicated (no sender)."""
    if sender is None or not sender.strip():
        return None
    raw = sender.strip().casefold() + "\x1f" + dedup_text(text)
    return hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@runtime_checkable
class DedupStore(Protocol[T]):
    """Where committed decisions are remembered for deduplication: in this process (:class:`Deduplicator`) or
    shared by every replica (:class:`frontdesk.shared.RedisDeduplicator`). The flow for each message is
    ``claim`` → decide → ``settle`` → commit → ``confirm`` (or ``release`` when nothing was committed);
    a copy claimed elsewhere waits for the outcome with a deadline, then is decided afresh — it is never
    answered "duplicate of" a decision that is not committed."""

    window_s: float

    @property
    def enabled(self) -> bool: ...

    def claim(self, sender: str | None, text: str, owner: object) -> tuple[T | None, bytes | None]: ...

    def settle(self, key: bytes | None, value: T) -> None: ...

    def confirm(self, key: bytes | None) -> None: ...

    def release(self, key: bytes | None) -> None: ...

    def lookup(self, sender: str | None, text: str) -> T | None: ...

    def remember(self, sender: str | None, text: str, value: T) -> None: ...

    def clear(self) -> None: ...


class Claim(Generic[T]):
    """A message being decided and not yet committed: whoever else sends it waits for the outcome."""

    __slots__ = ("owner", "value", "done")

    def __init__(self, owner: object) -> None:
        self.owner = owner
        self.value: T | None = None
        self.done = threading.Event()


C = TypeVar("C", bound=Claim)  # type: ignore[type-arg]


class ClaimTable(Generic[T, C]):
    """What every :class:`DedupStore` shares: the window, the key of a message, and this process's claims
    of the messages being decided (``C``: the store's claim type), each settled with its decided value."""

    def __init__(self, window_s: float, wait_s: float, clock: Callable[[], float]) -> None:
        if window_s < 0:
            raise ConfigError(f"must be ≥ 0 seconds (0 disables deduplication), got {window_s}", field="dedup_window_s")
        self.window_s = float(window_s)
        self.wait_s = float(wait_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._claims: dict[bytes, C] = {}

    @property
    def enabled(self) -> bool:
        """False when the window is 0."""
        return self.window_s > 0

    def key(self, sender: str | None, text: str) -> bytes | None:
        """The dedup key of a message, or None when it must not be deduplicated (no sender)."""
        return dedup_key(sender, text)

    def _key_of(self, sender: str | None, text: str) -> bytes | None:
        """The key a lookup, claim or remember uses: None when the message has no sender or dedup is off."""
        return dedup_key(sender, text) if self.enabled else None

    def settle(self, key: bytes | None, value: T) -> None:
        """Attach the decided value to a claim (copies in the same request now get it)."""
        if key is None:
            return
        with self._lock:
            claim = self._claims.get(key)
            if claim is not None:
                claim.value = value

    def _pop_claim(self, key: bytes | None) -> C | None:
        """Take the claim of ``key`` out of the table (None: there is none); the caller wakes its waiters."""
        if key is None:
            return None
        with self._lock:
            return self._claims.pop(key, None)

    def _drop_claims(self) -> None:
        """Forget every claim; their waiters decide afresh."""
        with self._lock:
            claims, self._claims = self._claims, {}
        for claim in claims.values():
            claim.done.set()


class Deduplicator(ClaimTable[T, Claim[T]]):
    """Remembers a *committed* value (typically a Decision) per (sender, message) for ``window_s`` seconds.

    The service must never answer "duplicate of X" for an X the store does not hold, so a value is
    remembered only once its decision is committed. The flow for each message is
    :meth:`claim` → decide → :meth:`settle` → commit → :meth:`confirm` (or :meth:`release` when the
    commit or the request failed: the next copy of the message is then decided afresh). While a
    message is claimed, a concurrent copy from another request waits for the outcome (single-flight)
    instead of being classified twice; a copy inside the *same* request (``owner``) gets the pending
    value, which commits in the same transaction.

    ``lookup`` returns what was committed for the same sender and message (compared with
    ``dedup_text``) within the window, else None. A ``None`` sender never deduplicates: two
    anonymous customers can send the same "Where is my order?" and must not get each other's
    decision. Keys are 128-bit BLAKE2 digests, so the message text is not kept. Thread-safe; holds
    at most ``max_entries`` (the oldest are evicted first); ``clock`` is injectable for tests.
    ``window_s=0`` disables it.
    """

    def __init__(
        self,
        window_s: float = 60.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        wait_s: float = 10.0,
    ) -> None:
        super().__init__(window_s, wait_s, clock)
        if max_entries < 1:
            raise ConfigError(f"must be at least 1, got {max_entries}", field="max_entries")
        self.max_entries = int(max_entries)
        self._entries: OrderedDict[bytes, tuple[float, T]] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def lookup(self, sender: str | None, text: str) -> T | None:
        """The committed value remembered for this sender and message within the window, else None."""
        key = self._key_of(sender, text)
        if key is None:
            return None
        with self._lock:
            return self._committed(key)

    def claim(self, sender: str | None, text: str, owner: object) -> tuple[T | None, bytes | None]:
        """Look the message up and, when it is new, claim it for ``owner`` until confirmed or released.

        Returns ``(earlier, None)`` for a duplicate (committed within the window, or pending in the
        same ``owner``'s request), ``(None, key)`` when the caller now holds the claim and must
        :meth:`confirm` or :meth:`release` it, and ``(None, None)`` when dedup does not apply (no
        sender, disabled, or a concurrent claim did not settle within ``wait_s``: decided afresh).
        """
        key = self._key_of(sender, text)
        if key is None:
            return None, None
        deadline = self._clock() + self.wait_s
        while True:
            with self._lock:
                earlier = self._committed(key)
                if earlier is not None:
                    return earlier, None
                pending = self._claims.get(key)
                if pending is None:
                    self._claims[key] = Claim(owner)
                    return None, key
                if pending.owner is owner:
                    return pending.value, None
            left = deadline - self._clock()
            if left <= 0 or not pending.done.wait(min(left, self.wait_s)):
                return None, None

    def confirm(self, key: bytes | None) -> None:
        """The claimed message's decision is committed: remember it for the window, wake the waiters."""
        if key is None:
            return
        with self._lock:
            claim = self._claims.pop(key, None)
            if claim is None:
                return
            if claim.value is not None:
                self._store(key, claim.value)
        claim.done.set()

    def release(self, key: bytes | None) -> None:
        """The claimed message was not committed: forget the claim (its next copy is decided afresh)."""
        claim = self._pop_claim(key)
        if claim is not None:
            claim.done.set()

    def remember(self, sender: str | None, text: str, value: T) -> None:
        """Store an already committed ``value`` for this sender and message; the window starts now."""
        key = self._key_of(sender, text)
        if key is None:
            return
        with self._lock:
            self._store(key, value)

    def clear(self) -> None:
        """Forget everything (pending claims included; their waiters decide afresh)."""
        with self._lock:
            self._entries.clear()
        self._drop_claims()

    def _committed(self, key: bytes) -> T | None:
        now = self._clock()
        self._expire(now)
        entry = self._entries.get(key)
        return entry[1] if entry is not None else None

    def _store(self, key: bytes, value: T) -> None:
        now = self._clock()
        self._entries[key] = (now, value)
        self._entries.move_to_end(key)
        self._expire(now)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _expire(self, now: float) -> None:
        # Entries are in the order they were stored, so the expired ones are at the front.
        while self._entries:
            stored_at = next(iter(self._entries.values()))[0]
            if now - stored_at < self.window_s:
                break
            self._entries.popitem(last=False)
