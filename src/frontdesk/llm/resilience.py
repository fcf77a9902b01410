"""Fault handling of the LLM tier: a bounded call pool with a wall-clock deadline, a circuit breaker
whose half-open state admits one trial, the answer-cache key, and record/replay of real answers.

Retries are :func:`frontdesk.common.retry.call_with_retries` and the answer cache is
:class:`frontdesk.common.ttlcache.TTLCache` (re-exported here), the same helpers the webhooks use.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import threading
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from frontdesk.common.retry import RetryPolicy, call_with_retries
from frontdesk.common.ttlcache import TTLCache
from frontdesk.llm.base import LLMResponse, ProviderError
from frontdesk.llm.deadline import deadline_scope

T = TypeVar("T")
Permit = Literal["call", "trial"]


class CircuitBreaker:
    """Skips a provider that keeps failing, then lets exactly one trial call find out whether it is back.

    Closed: calls go through. It opens after ``failures`` consecutive failed calls, or after
    ``timeouts`` consecutive calls that ran out of time (a hung provider is detected after a couple of
    deadlines, not after ``failures`` of them). Open: calls fail fast for ``cooldown_s``. Then
    half-open: the first caller gets the one *trial* permit, every other caller still fails fast
    until the trial reports: success closes the circuit, failure opens it for another cool-down.

    Callers take a permit with :meth:`acquire` (None: skip the provider) and report with
    :meth:`success`, :meth:`failure` or :meth:`release` (the call was not made).
    """

    def __init__(self, failures: int = 5, cooldown_s: float = 30.0, timeouts: int = 2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.cooldown_s, self.timeouts, self.clock = failures, cooldown_s, timeouts, clock
        self._failed = 0
        self._timed_out = 0
        self._opened_at: float | None = None
        self._trial = False
        self._lock = threading.Lock()

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        with self._lock:
            return self._state()

    def _state(self) -> Literal["closed", "open", "half-open"]:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self._opened_at >= self.cooldown_s else "open"

    def acquire(self) -> Permit | None:
        """A permit to call the provider now, or None while the circuit is open or a trial is in flight."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return "call"
            if state == "half-open" and not self._trial:
                self._trial = True
                return "trial"
            return None

    def allow(self) -> bool:
        """Would a call go through now? (Takes no permit; for display.)"""
        with self._lock:
            state = self._state()
            return state == "closed" or (state == "half-open" and not self._trial)

    def success(self, permit: Permit = "call") -> None:
        """The provider answered: a trial closes the circuit; a normal call resets the failure counts."""
        with self._lock:
            if permit == "trial":
                self._trial = False
                self._opened_at = None
            if self._opened_at is None:
                self._failed = self._timed_out = 0

    def failure(self, permit: Permit = "call", *, timeout: bool = False) -> None:
        """The provider failed (``timeout``: it ran out of time); may open the circuit."""
        with self._lock:
            if permit == "trial":
                self._trial = False
                self._opened_at = self.clock()
                return
            if self._opened_at is not None:  # a call that started before the circuit opened
                return
            self._failed += 1
            self._timed_out = self._timed_out + 1 if timeout else 0
            if self._failed >= self.failures or self._timed_out >= self.timeouts:
                self._opened_at = self.clock()

    def release(self, permit: Permit) -> None:
        """The permit was not used (the call was refused before reaching the provider)."""
        if permit == "trial":
            with self._lock:
                self._trial = False

    def remaining_s(self) -> float:
        with self._lock:
            return 0.0 if self._opened_at is None else max(0.0, self.cooldown_s - (self.clock() - self._opened_at))


class CallPool:
    """Runs provider calls off the caller's thread: at most ``max_concurrency`` at once, at most
    ``max_waiting`` callers queued for a slot, everyone else refused at once (``busy``).

    Each call runs on its own daemon thread under :func:`~frontdesk.llm.deadline.deadline_scope`; the
    caller waits for it until the deadline and no longer (``timeout``). A call abandoned at its
    deadline keeps its slot until the provider returns, so a hung provider fills the pool and later
    calls are refused at once instead of piling up: the threads serving requests are never all
    stuck behind the LLM.
    """

    def __init__(self, max_concurrency: int, max_waiting: int, *, tier: str = "llm") -> None:
        if max_concurrency < 1 or max_waiting < 0:
            raise ValueError("max_concurrency must be ≥ 1 and max_waiting ≥ 0")
        self.max_concurrency, self.max_waiting, self.tier = max_concurrency, max_waiting, tier
        self._cond = threading.Condition()
        self.in_flight = 0
        self.waiting = 0
        self.abandoned = 0

    def run(self, fn: Callable[[], T], deadline: float) -> T:
        """``fn()`` on a pool thread; raises ``ProviderError`` ``busy`` (no slot) or ``timeout`` (deadline)."""
        self._acquire(deadline)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def work() -> None:
            try:
                with deadline_scope(deadline):
                    result = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                with self._cond:
                    self.in_flight -= 1
                    self._cond.notify()

        try:
            threading.Thread(target=work, name=f"frontdesk-{self.tier}-call", daemon=True).start()
        except BaseException:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify()
            raise
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            with self._cond:
                self.abandoned += 1
            raise ProviderError(self.tier, "timeout", "no answer by the call's deadline") from None

    def _acquire(self, deadline: float) -> None:
        with self._cond:
            if self.in_flight < self.max_concurrency:
                self.in_flight += 1
                return
            if self.waiting >= self.max_waiting:
                raise ProviderError(
                    self.tier, "busy",
                    f"LLM tier busy: {self.in_flight} calls in flight and {self.waiting} waiting "
                    f"(max_concurrency={self.max_concurrency}, max_waiting={self.max_waiting}); not queued",
                )
            self.waiting += 1
            try:
                while self.in_flight >= self.max_concurrency:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ProviderError(self.tier, "busy",
                                            f"LLM tier busy: no free slot (max_concurrency={self.max_concurrency}) "
                                            f"before the call's deadline")
                    self._cond.wait(left)
                self.in_flight += 1
            finally:
                self.waiting -= 1
                self._cond.notify()  # a waiter that gave up may leave a free slot to the next one

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {"in_flight": self.in_flight, "waiting": self.waiting, "abandoned": self.abandoned}


def cache_key(text: str, candidates: tuple[str, ...], model: str) -> str:
    """Normalised text + candidate set + model → a stable key."""
    norm = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    raw = json.dumps([norm, sorted(candidates), model], ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class Recording:
    """Record/replay of provider answers as JSONL: ``{"key", "text", "input_tokens", "output_tokens", "model"}``.

    mode ``record`` appends every real answer; ``replay`` answers from the file only (a key that
    was never recorded is a ``not_recorded`` failure, so a replayed benchmark never calls out);
    ``through`` answers from the file what is there and records the rest (a refit replays).
    """

    def __init__(self, path: str | Path, mode: str) -> None:
        if mode not in ("record", "replay", "through"):
            raise ValueError("mode must be 'record', 'replay' or 'through'")
        self.path, self.mode = Path(path), mode
        self._lock = threading.Lock()
        self._answers: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self._answers[row["key"]] = row

    def __len__(self) -> int:
        return len(self._answers)

    def has(self, key: str) -> bool:
        """True when an answer for ``key`` is recorded."""
        return key in self._answers

    def lookup(self, key: str, tier: str) -> LLMResponse:
        row = self._answers.get(key)
        if row is None:
            raise ProviderError(tier, "not_recorded", f"no recorded answer for this message in {self.path}")
        return LLMResponse(row["text"], row.get("input_tokens", 0), row.get("output_tokens", 0), row.get("model", ""),
                           label_probs=row.get("label_probs"))

    def record(self, key: str, response: LLMResponse) -> None:
        row = {"key": key, "text": response.text, "input_tokens": response.input_tokens,
               "output_tokens": response.output_tokens, "model": response.model, "label_probs": response.label_probs}
        with self._lock:
            self._answers[key] = row
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")


__all__ = ["CallPool", "CircuitBreaker", "Recording", "RetryPolicy", "TTLCache", "cache_key", "call_with_retries"]
