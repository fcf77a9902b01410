"""The provider interface of the LLM tier: one request/response shape, one error type.

A provider turns an :class:`LLMRequest` (system + user prompt, the JSON schema the answer must
follow, the allowed labels) into an :class:`LLMResponse` (the raw text, token usage, optional
per-label probabilities from log-probabilities). Providers do *one* call: retries, the deadline,
the concurrency limit, the circuit breaker, caching and validation live in the tier
(``frontdesk.tiers.llm``), so every provider behaves the same under faults.

A provider should stop at ``request.deadline`` (a ``time.monotonic()`` time): the built-in HTTP
providers do (their sockets never wait past it, see :mod:`frontdesk.llm.deadline`); for any other
provider the tier still answers its caller at the deadline and counts the call as in flight
until the provider returns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from frontdesk.errors import TierError

FailureKind = Literal["timeout", "rate_limit", "server_error", "client_error", "connection", "bad_response", "refusal",
                      "circuit_open", "busy", "not_recorded"]
RETRYABLE: frozenset[str] = frozenset({"timeout", "rate_limit", "server_error", "connection"})


class ProviderError(TierError):
    """One failed LLM call. ``kind`` says what failed; ``retry_after`` (seconds) when the server said.

    The tier sets ``attempts`` and ``latency_ms`` (the wall-clock time the call took, retries and
    waits included) before the error reaches the router, which puts the time into the trace.
    """

    def __init__(self, tier: str, kind: FailureKind, reason: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(tier, f"{kind}: {reason}")
        self.kind = kind
        self.status = status
        self.retry_after = retry_after
        self.attempts = 0

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE


@dataclass(frozen=True)
class LLMRequest:
    """What the tier asks: ``schema`` is a JSON schema whose label enum is ``allowed``."""

    system: str
    user: str
    schema: dict[str, Any]
    allowed: tuple[str, ...]
    max_tokens: int = 256
    temperature: float = 0.0
    timeout_s: float = 30.0
    deadline: float | None = None  # time.monotonic() by which the call must end (the tier sets it)

    def remaining_s(self) -> float:
        """Seconds this call may still take: ``timeout_s``, or less when the deadline is nearer."""
        if self.deadline is None:
            return self.timeout_s
        return max(0.0, min(self.timeout_s, self.deadline - time.monotonic()))


@dataclass
class LLMResponse:
    """What came back: the answer text (JSON), token usage, optional label probabilities."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    label_probs: dict[str, float] | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    """An LLM backend. ``name`` is e.g. ``openai``; ``model`` the model id used for cache keys and prices."""

    name: str
    model: str

    def complete(self, request: LLMRequest) -> LLMResponse:
        """One call; raises :class:`ProviderError` on any failure."""
        ...

    def close(self) -> None:
        ...
