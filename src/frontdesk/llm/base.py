"""The provider interface of the LLM tier: one request/response shape, one error type.

A provider turns an :class:`LLMRequest` (system + user prompt, the JSON schema the answer must
follow, the allowed labels) into an :class:`LLMResponse` (the raw text, token usage, optional
per-label probabilities from log-probabilities). Providers do *one* call: retries, the circuit
breaker, caching and validation live in the tier (``frontdesk.tiers.llm``), so every provider
behaves the same under faults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from frontdesk.errors import TierError

FailureKind = Literal["timeout", "rate_limit", "server_error", "client_error", "connection", "bad_response", "refusal", "circuit_open", "not_recorded"]
RETRYABLE: frozenset[str] = frozenset({"timeout", "rate_limit", "server_error", "connection"})


class ProviderError(TierError):
    """One failed LLM call. ``kind`` says what failed; ``retry_after`` (seconds) when the server said."""

    def __init__(self, tier: str, kind: FailureKind, reason: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(tier, f"{kind}: {reason}")
        self.kind = kind
        self.status = status
        self.retry_after = retry_after

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
