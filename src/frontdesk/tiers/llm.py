"""The LLM tier: an LLM reads the candidate labels' definitions and returns a structured decision.

It receives the message plus the top-k candidate labels the cheaper tiers proposed (namespace
narrowing), each with its description and the training examples nearest to the message (the
model's example index, :mod:`frontdesk.llm.retrieval`), and must answer JSON
``{labels, confidence, rationale}`` restricted to those candidates (or ``"none"`` → the next
tier / human review / unknown). Providers come from :mod:`frontdesk.llm.registry`: ``local``
(xllamacpp, offline, the default), ``llama-cpp`` (llama-cpp-python), ``openai`` (any
OpenAI-compatible endpoint), ``anthropic``, and any registered or installed plug-in.

Whether the answer *stands* is not this tier's call: the router checks it for prompt injection
(:mod:`frontdesk.llm.injection`) and then applies the acceptance policy
(:mod:`frontdesk.llm.acceptance`) — fitted on validation answers, or the safe default.

Faults degrade, never drop, and never hold the service: each call has a wall-clock deadline
(``deadline_s``) that covers every retry and wait; calls run on a bounded pool (``max_concurrency``
in flight, ``max_waiting`` queued, the rest refused at once as "LLM tier busy"), so the threads
that answer confident messages are never all waiting on the LLM; timeouts, 429 and 5xx are
retried with jittered backoff honouring ``Retry-After`` while the deadline allows; a circuit
breaker skips the LLM after ``breaker_failures`` failed calls or ``breaker_timeouts`` timed-out
ones, then admits one trial call. An invalid answer (outside the candidates, not JSON, empty,
refusal) is a failed call. When candidate labels have an extraction schema
(``labels.<label>.extract_schema``), the same call also returns the chosen label's fields
(:mod:`frontdesk.intake.extract.llm_fields`): validated per property, invalid ones dropped with a
reason in the trace, never a second call. A failed call raises :class:`~frontdesk.llm.base.ProviderError` with the
time it took, which the router records in the trace before sending the message on to human
review with the classifier's best guess.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from frontdesk.data.dataset import Dataset
from frontdesk.errors import ConfigError, FrontdeskError, ModelError
from frontdesk.gating.gate import GatePolicy
from frontdesk.llm.base import LLMRequest, LLMResponse, Provider, ProviderError
from frontdesk.llm.prompt import PROMPT_VERSION, InvalidAnswer, answer_schema, build_prompt, parse_answer
from frontdesk.llm.registry import ProviderSettings, create_provider, get_provider
from frontdesk.llm.resilience import CallPool, CircuitBreaker, Recording, RetryPolicy, TTLCache, cache_key, call_with_retries
from frontdesk.llm.retrieval import ExampleIndex
from frontdesk.types import TierResult
from frontdesk.tiers.base import Progress, Tier, TierContext, parse_params

#: USD per 1M tokens (input, output) for a few well-known models; override with ``prices`` in config.
#: Prices change — these are list prices as published when this table was written.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "claude-3-5-haiku-latest": (0.80, 4.00),
    "claude-sonnet-4-0": (3.00, 15.00),
}


class LLMParams(BaseModel):
    """Settings of the LLM tier (``llm:`` in frontdesk.yaml, or ``--llm``/``--llm-model``/``--llm-base-url``)."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field("local", description="local (xllamacpp, offline) | llama-cpp | openai | anthropic | a registered plug-in")
    model: str | None = Field(None, description="model id; default per provider (local: qwen2.5-coder-1.5b)")
    base_url: str | None = Field(None, description="OpenAI-compatible or Anthropic endpoint (vLLM, Ollama, llama.cpp server …)")
    api_key_env: str | None = Field(None, description="env var holding the API key (default OPENAI_API_KEY / ANTHROPIC_API_KEY)")
    candidates_k: int = Field(5, ge=1, description="labels from earlier tiers the LLM chooses among")
    examples_per_label: int = Field(2, ge=0, le=5, description="training examples shown per candidate label")
    retrieval: bool = Field(True, description="show each candidate's training examples nearest to the message (the model's "
                                              "example index); false: the same few examples for every message")
    max_labels: int = Field(1, ge=1, description="labels per answer (raised automatically for multi-intent data)")
    timeout_s: float = Field(30.0, gt=0, description="per attempt: the longest wait for the provider (never past the deadline)")
    deadline_s: float | None = Field(None, gt=0, description="wall-clock limit of one LLM call, retries and waits included "
                                                              "(default: timeout_s); then the message goes to human review")
    retries: int = Field(2, ge=0, description="retries of timeouts, 429 and 5xx, while the deadline allows")
    backoff_s: float = Field(0.5, ge=0, description="first wait before a retry; doubles each time, plus up to 50 % jitter")
    max_backoff_s: float = Field(8.0, ge=0, description="longest wait between retries (a longer Retry-After is still honoured "
                                                         "when the deadline allows it)")
    max_concurrency: int = Field(4, ge=1, description="LLM calls in flight at once (each on its own thread, off the request threads)")
    max_waiting: int = Field(4, ge=0, description="calls queued for a slot (up to their deadline); more are sent to human "
                                                   "review at once as 'LLM tier busy'")
    breaker_failures: int = Field(5, ge=1, description="consecutive failed calls that open the circuit")
    breaker_timeouts: int = Field(2, ge=1, description="consecutive timed-out calls that open the circuit (a hung provider)")
    breaker_cooldown_s: float = Field(30.0, gt=0, description="how long an open circuit skips the LLM before one trial call")
    cache_ttl_s: float = Field(3600.0, ge=0, description="exact-match answer cache; 0 disables")
    cache_size: int = Field(10_000, ge=1, description="answers the in-process cache keeps (least recently used go first)")
    record: Path | None = Field(None, description="append every real answer to this JSONL file")
    replay: Path | None = Field(None, description="answer only from this recording (no calls)")
    price_input_per_1m: float | None = Field(None, ge=0, description="USD per 1M input tokens (default: known price or 0)")
    price_output_per_1m: float | None = Field(None, ge=0, description="USD per 1M output tokens (default: known price or 0)")
    max_tokens: int = Field(200, ge=16, description="output token limit of one answer")
    rationale_chars: int = Field(60, ge=0, le=500, description="length cap of the LLM's few-word rationale (kept in the trace); "
                                                               "0: no rationale, fewer output tokens (a local model answers faster)")
    n_threads: int | None = Field(None, ge=1, description="local providers: llama.cpp threads")
    options: dict[str, Any] = Field(default_factory=dict, description="provider-specific constructor options "
                                    "(openai: structured, logprobs; local: n_ctx, n_batch, prompt_cache_mb, …)")
    # -- acceptance: what happens to an answer (see frontdesk.llm.acceptance / frontdesk.llm.injection) --
    policy: Literal["auto", "safe"] = Field(
        "auto", description="auto: the fitted acceptance policy saved with the model when it was fitted for this LLM model, "
                            "else the safe default; safe: always the safe default (the LLM never changes the classifier's label)")
    calibration_size: int = Field(300, ge=10, description="fitting: validation messages that reach the LLM to call it on")
    accept_accuracy: float | None = Field(
        None, gt=0, le=1, description="fitting: accuracy the LLM tier's accepted answers must reach on validation "
                                      "(default: what the first tier's gate reaches on the messages it accepts)")
    injection_guard: Literal["review", "verify", "off"] = Field(
        "review", description="a message with prompt-injection signals: review: human review (the LLM is not called); "
                              "verify: the LLM's answer stands, flagged, only if it is the earlier tiers' top label on the "
                              "message without the flagged parts; off: no check (not recommended)")
    injection_prescan: bool = Field(True, description="with injection signals, earlier tiers may not accept the message either")
    label_echo: bool = Field(True, description="review an answer that overrules the earlier tiers with a multi-word label "
                                               "the message spells out in plain words")

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, name: str) -> str:
        get_provider(name)  # ConfigError (a ValueError) listing the providers that exist
        return name

    @property
    def model_name(self) -> str:
        model = self.model or get_provider(self.provider).default_model
        if not model:
            raise ConfigError(f"the {self.provider} provider has no default model: set llm.model", field="llm.model")
        return model

    @property
    def call_deadline_s(self) -> float:
        """The wall-clock budget of one call, retries included."""
        return self.deadline_s if self.deadline_s is not None else self.timeout_s

    def retry_policy(self) -> RetryPolicy:
        # any Retry-After is honoured; the deadline decides whether waiting for it is possible
        return RetryPolicy(retries=self.retries, backoff_s=self.backoff_s, max_backoff_s=self.max_backoff_s,
                           max_retry_after_s=float("inf"))

    def prices(self) -> tuple[float, float]:
        known = DEFAULT_PRICES.get(self.model_name, (0.0, 0.0))
        return (self.price_input_per_1m if self.price_input_per_1m is not None else known[0],
                self.price_output_per_1m if self.price_output_per_1m is not None else known[1])


def make_provider(params: LLMParams, tier_name: str = "llm") -> Provider:
    """The provider object for ``params``, from the registry (imports its SDK lazily)."""
    settings = ProviderSettings(model=params.model_name, base_url=params.base_url, api_key_env=params.api_key_env,
                                n_threads=params.n_threads, options=params.options, tier_name=tier_name)
    return create_provider(params.provider, settings)


def _encode_answer(value: tuple[Any, ...]) -> list[Any]:
    """A cached answer ``(ranked, rationale, fields, notes)`` as JSON (the shared cache stores JSON)."""
    ranked, *rest = value
    return [[[label, p] for label, p in ranked], *rest]


def _decode_answer(data: list[Any]) -> tuple[Any, ...]:
    """Back from JSON: ``ranked`` as a tuple of (label, probability) tuples, the rest as stored."""
    ranked, *rest = data
    return (tuple((str(label), float(p)) for label, p in ranked), *rest)


class LLMTier(Tier):
    """Asks an LLM to choose among the candidate labels; see the module docstring."""

    kind = "llm"
    role = "llm"
    needs = frozenset({"candidates", "descriptions", "examples"})

    def __init__(self, name: str | None = None, params: LLMParams | dict[str, Any] | None = None, *, provider: Provider | None = None) -> None:
        super().__init__(name)
        self.params = parse_params(LLMParams, params, self.name)
        self.descriptions: dict[str, str] = {}
        self.examples: dict[str, list[str]] = {}
        self.index: ExampleIndex | None = None
        self.extract_schemas: dict[str, dict[str, Any]] = {}
        """label → JSON Schema of the fields to extract with the label (set from labels.<label>.extract_schema)."""
        self._provider = provider
        self._provider_lock = threading.Lock()
        self.breaker = CircuitBreaker(self.params.breaker_failures, self.params.breaker_cooldown_s, self.params.breaker_timeouts)
        self.pool = CallPool(self.params.max_concurrency, self.params.max_waiting, tier=self.name)
        # (ranked, rationale, extracted fields, field notes) per (text, candidates, model, schemas)
        self.cache: TTLCache[tuple[tuple[tuple[str, float], ...], str, dict[str, Any] | None, list[str] | None]] = \
            TTLCache(self.params.cache_ttl_s, self.params.cache_size)
        self._recording: Recording | None = None
        if self.params.replay is not None:
            self._recording = Recording(self.params.replay, "replay")
        elif self.params.record is not None:
            self._recording = Recording(self.params.record, "record")
        self.sleep = time.sleep

    def share_cache(self, shared: Any) -> None:
        """Use the replicas' shared answer cache (a :class:`frontdesk.shared.SharedState`) instead of this
        process's: same keys and TTL, JSON values in Redis."""
        self.cache = shared.cache(f"llm:{self.name}", self.params.cache_ttl_s, encode=_encode_answer, decode=_decode_answer)

    @property
    def provider(self) -> Provider:
        if self._provider is None:
            with self._provider_lock:
                if self._provider is None:
                    self._provider = make_provider(self.params, self.name)
        return self._provider

    def default_gate(self) -> GatePolicy:
        """Accept the LLM's answer when its confidence is at least 0.5 (below: human review)."""
        if self.params.max_labels > 1:
            return GatePolicy(threshold=0.25, multi_label=True, decision_threshold=0.0)
        return GatePolicy(threshold=0.5)

    def fit(self, data: Dataset, progress: Progress | None = None) -> LLMTier:
        """Nothing to train: keep the labels, their descriptions and a few examples each."""
        self.attach(TierContext(data.labels, data.descriptions, data.label_examples(self.params.examples_per_label),
                                multi_label=data.multi_label))
        return self

    def attach(self, context: TierContext) -> None:
        """Take the model's label set, descriptions and examples (``examples`` are the fixed fallback, the
        example index gives the nearest ones); multi-label data raises ``max_labels`` to 3."""
        self.labels_ = tuple(context.labels)
        self.descriptions = dict(context.descriptions)
        self.examples = {k: list(v)[: self.params.examples_per_label] for k, v in context.examples.items()}
        if context.example_index is not None:
            self.index = context.example_index
        if context.multi_label and self.params.max_labels == 1:
            self.params = self.params.model_copy(update={"max_labels": 3})

    def use_example_index(self, index: ExampleIndex) -> None:
        if self.index is None:
            self.index = index

    def examples_for(self, text: str, candidates: Sequence[str]) -> dict[str, list[str]]:
        """The examples the prompt shows for each candidate: nearest to ``text`` when the tier has an index."""
        n = self.params.examples_per_label
        if self.index is not None and self.params.retrieval and n:
            near = self.index.nearest(text, candidates, n)
            return {c: near.get(c) or self.examples.get(c, [])[:n] for c in candidates}
        return {c: self.examples.get(c, [])[:n] for c in candidates}

    @property
    def recording(self) -> Recording | None:
        """The record/replay file in use, if any."""
        return self._recording

    def use_recording(self, path: Path, mode: str = "through") -> None:
        """Answer from / append to a recording at ``path`` (``through``: replay what is there, call and record the rest)."""
        self._recording = Recording(path, mode)

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        self._check_fitted()
        t0 = time.perf_counter()
        cands = tuple(c for c in (candidates or self.labels_) if c in set(self.labels_))[: self.params.candidates_k] \
            if candidates else tuple(self.labels_)
        if not cands:
            raise ProviderError(self.name, "client_error", "no candidate labels to choose from")
        schemas = {c: self.extract_schemas[c] for c in cands if c in self.extract_schemas}
        key = cache_key(text, cands, self.cache_model) + (_schemas_key(schemas) if schemas else "")
        cached = self.cache.get(key)
        if cached is not None:
            ranked, rationale, fields, notes = cached
            return TierResult(list(ranked), latency_ms=(time.perf_counter() - t0) * 1e3, rationale=rationale,
                              info={"cached": True, "candidates": list(cands), "fields": fields, "field_notes": notes})
        system, user = build_prompt(text, cands, self.descriptions, self.examples_for(text, cands), multi_label=self.params.max_labels > 1,
                                    rationale=self.params.rationale_chars > 0)
        schema = answer_schema(cands, max_labels=self.params.max_labels, rationale_chars=self.params.rationale_chars)
        if schemas:  # the label's fields come back in the same call
            from frontdesk.intake.extract.llm_fields import INSTRUCTION, extend_answer_schema

            schema = extend_answer_schema(schema, cands, schemas)
            system = f"{system}\n\n{INSTRUCTION}"
        request = LLMRequest(system, user, schema, cands, max_tokens=self.params.max_tokens, timeout_s=self.params.timeout_s)
        response, attempts = self._call(key, request)
        try:
            answer = parse_answer(response.text, cands, max_labels=self.params.max_labels)
        except InvalidAnswer as exc:
            raise ProviderError(self.name, "bad_response", str(exc)) from None
        conf = answer.confidence
        if response.label_probs and answer.labels:  # log-probabilities beat self-reported confidence
            conf = min(response.label_probs.get(label, conf) for label in answer.labels)
        ranked = [(label, conf) for label in answer.labels]
        rationale = answer.rationale if answer.labels else f"none of the candidates fit: {answer.rationale}"
        fields, notes = None, None
        if schemas and answer.labels:
            from frontdesk.intake.extract.llm_fields import validate_fields

            got, dropped = validate_fields(response.text, answer.labels[0], schemas)
            fields, notes = got or None, dropped or None
        self.cache.put(key, (tuple(ranked), rationale, fields, notes))
        info = {"attempts": attempts, "candidates": list(cands), "model": response.model, "stated_confidence": answer.confidence,
                "fields": fields, "field_notes": notes}
        pin, pout = self.params.prices()
        cost = (response.input_tokens * pin + response.output_tokens * pout) / 1e6
        tokens = {"input": response.input_tokens, "output": response.output_tokens}
        return TierResult(ranked, cost_usd=cost, latency_ms=(time.perf_counter() - t0) * 1e3, tokens=tokens,
                          rationale=rationale, info=info)

    @property
    def provider_model(self) -> str:
        return f"{self.params.provider}:{self.params.model_name}"

    @property
    def cache_model(self) -> str:
        """What the answer cache and recordings key on besides text and candidates: model and prompt version."""
        return f"{self.provider_model}#prompt{PROMPT_VERSION}" + ("" if self.params.rationale_chars else "-norationale")

    def _call(self, key: str, request: LLMRequest) -> tuple[LLMResponse, int]:
        """One LLM call: breaker permit → a pool slot → retries, all within the call's deadline."""
        if self._recording is not None and self._recording.mode == "replay":
            return self._recording.lookup(key, self.name), 1
        if self._recording is not None and self._recording.mode == "through" and self._recording.has(key):
            return self._recording.lookup(key, self.name), 1
        provider = self.provider  # built (SDK imported, client made) before the clock starts: setup is not the call
        started = time.monotonic()
        budget = self.params.call_deadline_s
        deadline = started + budget
        request = dataclasses.replace(request, deadline=deadline, timeout_s=min(request.timeout_s, budget))
        permit = self.breaker.acquire()
        if permit is None:
            why = ("a trial call is checking whether it is back" if self.breaker.state == "half-open"
                   else f"skipping it for {self.breaker.remaining_s():.0f} s more")
            raise _spent(ProviderError(self.name, "circuit_open", f"the LLM provider failed repeatedly; {why}"), started)

        def attempts() -> tuple[LLMResponse, int]:
            return call_with_retries(lambda: provider.complete(request), self.params.retry_policy(),
                                     retryable=lambda e: isinstance(e, ProviderError) and e.retryable,
                                     retry_after=lambda e: getattr(e, "retry_after", None), deadline=deadline, sleep=self.sleep)

        try:
            response, n = self.pool.run(attempts, deadline)
        except ProviderError as exc:
            if exc.kind == "busy":
                self.breaker.release(permit)
            elif exc.retryable:  # the provider is unavailable: timeouts, 429, 5xx, connection
                self.breaker.failure(permit, timeout=exc.kind == "timeout")
            else:  # it answered (a 4xx, a refusal, a bad answer): reachable
                self.breaker.success(permit)
            if exc.retry_after is not None and time.monotonic() + exc.retry_after > deadline:
                exc.reason += f"; the server asked to retry after {exc.retry_after:g} s, past the {budget:g} s deadline"
            raise _spent(exc, started) from None
        except FrontdeskError:
            self.breaker.release(permit)
            raise
        except Exception as exc:  # noqa: BLE001 - a provider bug is a failed call, not a crash
            self.breaker.failure(permit)
            raise _spent(ProviderError(self.name, "bad_response", f"the provider raised {type(exc).__name__}: {exc}"), started) from exc
        self.breaker.success(permit)
        if self._recording is not None:
            self._recording.record(key, response)
        return response, n

    def info(self) -> dict[str, Any]:
        return {"provider": self.params.provider, "model": self.params.model_name, "candidates_k": self.params.candidates_k}

    def save(self, path: Path) -> None:
        meta = {"params": self.params.model_dump(mode="json", exclude={"record", "replay"}), "labels": list(self.labels_),
                "descriptions": self.descriptions, "examples": self.examples}
        (path / "llm.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path, name: str) -> LLMTier:
        try:
            meta = json.loads((path / "llm.json").read_text(encoding="utf-8"))
            tier = cls(name, meta["params"])
            tier.attach(TierContext(tuple(meta["labels"]), meta.get("descriptions", {}), meta.get("examples", {})))
        except FileNotFoundError as exc:
            raise ModelError("llm.json is missing: re-save the model", path=path) from exc
        except (KeyError, json.JSONDecodeError) as exc:
            raise ModelError(f"llm.json is invalid ({exc}): re-save the model", path=path) from exc
        return tier


def _schemas_key(schemas: dict[str, dict[str, Any]]) -> str:
    """A cache-key suffix: answers with fields depend on the schemas asked for."""
    import hashlib

    return ":" + hashlib.sha256(json.dumps(schemas, sort_keys=True).encode()).hexdigest()[:16]


def _spent(exc: ProviderError, started: float) -> ProviderError:
    """``exc`` with the time the call took (and its attempts) in the reason and in ``latency_ms``."""
    elapsed = time.monotonic() - started
    attempts = getattr(exc, "attempts", 0) or 0
    if exc.kind in ("busy", "circuit_open"):
        spent = f"no call made, {elapsed:.1f} s"
    elif attempts:
        spent = f"{attempts} attempt{'s' if attempts != 1 else ''}, {elapsed:.1f} s"
    else:  # abandoned at the deadline while an attempt was still running
        spent = f"{elapsed:.1f} s"
    exc.reason = f"{exc.reason} [{spent}]"
    exc.args = (f"tier {exc.tier!r} failed: {exc.reason}",)
    exc.latency_ms = elapsed * 1e3
    return exc
