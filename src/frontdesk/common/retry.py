"""The one retry helper: exponential backoff with jitter, ``Retry-After`` honoured, a wall-clock deadline.

Used by the LLM tier, the webhook sink and the drift-alert webhook, so every outbound call retries
the same way. Built on tenacity; the pieces that are frontdesk's own are the policy object (so the
settings have one spelling everywhere), :func:`parse_retry_after` (``retry-after-ms``, seconds or an
HTTP date) and the deadline: no wait ever crosses it, so a retry that would start after the
deadline is not made and the last failure is raised at once.

Usage::

    policy = RetryPolicy(retries=3, backoff_s=0.2, max_backoff_s=5)
    result, attempts = call_with_retries(send, policy, retryable=lambda e: isinstance(e, Transient),
                                         retry_after=lambda e: getattr(e, "retry_after", None))
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How to retry: ``retries`` extra attempts, waits of ``backoff_s * 2**n`` (capped at
    ``max_backoff_s``) stretched by up to ``jitter`` (a fraction: 0.5 → ×1.0–1.5) so that clients
    failing together do not retry together. A ``Retry-After`` of at most ``max_retry_after_s``
    seconds is honoured (the wait is at least that long); a longer one is ignored and the normal
    backoff applies, so one server cannot park the caller for an hour."""

    retries: int = 2
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    jitter: float = 0.5
    max_retry_after_s: float = 30.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.backoff_s < 0 or self.max_backoff_s < 0 or self.jitter < 0 or self.max_retry_after_s < 0:
            raise ValueError(f"retry settings must be ≥ 0, got {self}")

    def backoff(self, attempt: int, rand: float) -> float:
        """The wait after failed attempt ``attempt`` (1-based) with ``rand`` ∈ [0, 1) as the jitter draw."""
        base = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
        return min(base * (1.0 + self.jitter * rand), self.max_backoff_s)


def parse_retry_after(headers: Mapping[str, str] | str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value, or from headers (``retry-after-ms`` first,
    then ``retry-after``: delta-seconds or an HTTP date); None when absent or unparseable."""
    if headers is None:
        return None
    if isinstance(headers, str):
        raw: str | None = headers
    else:
        ms = _header(headers, "retry-after-ms")
        if ms is not None:
            try:
                value = float(ms) / 1000.0
                if math.isfinite(value) and value >= 0:
                    return value
            except ValueError:
                pass
        raw = _header(headers, "retry-after")
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))
    return value if math.isfinite(value) and value >= 0 else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict with other capitalisation
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


@functools.cache
def _tenacity() -> tuple[Any, type, type]:
    """tenacity and frontdesk's wait and stop strategies (imported on first use: tenacity pulls in asyncio)."""
    import tenacity
    from tenacity.stop import stop_base
    from tenacity.wait import wait_base

    class _Wait(wait_base):
        """Exponential backoff with jitter; at least the server's ``Retry-After`` when it is not too long."""

        def __init__(self, policy: RetryPolicy, retry_after: Callable[[BaseException], float | None], rand: Callable[[], float]) -> None:
            self.policy, self.retry_after, self.rand = policy, retry_after, rand

        def __call__(self, retry_state: Any) -> float:
            wait = self.policy.backoff(retry_state.attempt_number, self.rand())
            exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
            after = self.retry_after(exc) if exc is not None else None
            if after is not None and after <= self.policy.max_retry_after_s:
                wait = max(wait, after)
            return wait

    class _StopAtDeadline(stop_base):
        """Stop when the next attempt would start at or after ``deadline`` (a ``clock()`` time)."""

        def __init__(self, deadline: float, clock: Callable[[], float]) -> None:
            self.deadline, self.clock = deadline, clock

        def __call__(self, retry_state: Any) -> bool:
            return self.clock() + retry_state.upcoming_sleep >= self.deadline

    return tenacity, _Wait, _StopAtDeadline


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    retryable: Callable[[BaseException], bool],
    retry_after: Callable[[BaseException], float | None] = lambda _exc: None,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] | None = None,
    on_retry: Callable[[BaseException, int, float], None] | None = None,
) -> tuple[T, int]:
    """Call ``fn`` until it returns, retrying exceptions for which ``retryable`` is true.

    Returns ``(result, attempts)``. When it gives up (a non-retryable error, retries used up, or the
    next attempt would start after ``deadline``, a ``clock()`` time) the last exception is raised
    with an ``attempts`` attribute set. ``on_retry(exc, attempt, wait_s)`` is called before each wait
    (for logs); ``sleep``/``clock``/``rand`` are injectable for tests.
    """
    import random

    tenacity, _Wait, _StopAtDeadline = _tenacity()
    stop: Any = tenacity.stop_after_attempt(policy.retries + 1)
    if deadline is not None:
        stop = stop | _StopAtDeadline(deadline, clock)

    def before_sleep(state: Any) -> None:
        if on_retry is not None and state.outcome is not None:
            on_retry(state.outcome.exception(), state.attempt_number, state.upcoming_sleep)

    retrying = tenacity.Retrying(
        stop=stop,
        wait=_Wait(policy, retry_after, rand or random.random),
        retry=tenacity.retry_if_exception(retryable),
        sleep=sleep,
        reraise=True,
        before_sleep=before_sleep,
    )
    attempts = 0

    def attempt() -> T:
        nonlocal attempts
        attempts += 1
        return fn()

    try:
        return retrying(attempt), attempts
    except BaseException as exc:
        try:
            exc.attempts = attempts  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - exceptions with __slots__
            pass
        raise


__all__ = ["RetryPolicy", "call_with_retries", "parse_retry_after"]
