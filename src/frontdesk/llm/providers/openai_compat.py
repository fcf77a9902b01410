"""The OpenAI-compatible provider: OpenAI, Azure OpenAI (v1 base URL), vLLM, Ollama, llama.cpp server,
LM Studio, OpenRouter — anything that speaks ``POST {base_url}/chat/completions``.

It uses the official ``openai`` SDK with the SDK's own retries turned off (``max_retries=0``): the tier
retries, so every provider behaves the same under faults. One :meth:`OpenAIProvider.complete` is one
logical call; the only extra HTTP requests it makes are *capability fallbacks*, each at most once per
provider lifetime: a server that rejects ``response_format={"type": "json_schema"}`` is asked again
with ``json_object`` (and never again with ``json_schema``); likewise a server that says it does not
support ``max_tokens`` (→ ``max_completion_tokens``), ``logprobs`` or ``temperature`` (→ dropped).

With ``logprobs=True`` the per-token log-probabilities of the answer, when the server returns them,
become ``label_probs``: for each label that appears in the answer, ``exp`` of the summed log-probs of
the tokens spanning the label's text (:func:`label_probs_from_logprobs`).

Errors are mapped by :func:`frontdesk.llm.providers.http_api.sdk_error` (shared with the Anthropic
provider), and the HTTP client obeys the call's deadline (:mod:`frontdesk.llm.deadline`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from frontdesk.common.retry import parse_retry_after
from frontdesk.errors import ConfigError
from frontdesk.llm import deadline
from frontdesk.llm.base import LLMRequest, LLMResponse, ProviderError
from frontdesk.llm.logprobs import label_probs_from_logprobs, label_value_spans
from frontdesk.llm.providers.http_api import (
    LOCAL_PLACEHOLDER_KEY,
    api_key_for,
    is_local_url,
    redact,
    sdk_error,
    server_message,
    status_reason,
    strip_code_fence,
)

log = logging.getLogger("frontdesk.llm")

Structured = Literal["json_schema", "json_object", "none"]


# -- the provider ---------------------------------------------------------------------------------
def _schema_instruction(schema: Mapping[str, Any]) -> str:
    return "Respond with only a JSON object that follows this JSON schema:\n" + json.dumps(schema, ensure_ascii=False)


def _unsupported(message: str, param: str) -> bool:
    """Does the server's error message say that ``param`` is not supported?"""
    m = message.lower()
    named = any(f"{q}{param}{q}" in m for q in ("'", '"', "`")) or re.search(rf"\b{re.escape(param)}\b", m) is not None
    return named and any(w in m for w in ("unsupported", "not supported", "does not support"))


class OpenAIProvider:
    """One chat-completions call per :meth:`complete`; errors become :class:`ProviderError`.

    ``structured``: ``json_schema`` (strict schema, falls back to ``json_object`` once if the server
    rejects it), ``json_object`` (JSON mode; the schema goes into the system prompt) or ``none``
    (prompt only). ``logprobs``: ask for token log-probabilities to compute ``label_probs``.
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        structured: Structured = "json_schema",
        logprobs: bool = True,
        tier_name: str = "llm",
    ) -> None:
        if structured not in ("json_schema", "json_object", "none"):
            raise ConfigError(f"structured must be json_schema, json_object or none, got {structured!r}", field="llm.structured")
        import openai  # lazy: the SDK is an optional dependency (ImportError → the tier's ConfigError)

        self._sdk = openai
        self.model = model
        self.tier_name = tier_name
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self._key = api_key_for(api_key, api_key_env, self.base_url, service="OpenAI")
        self.structured: Structured = structured
        self.logprobs = logprobs
        self._token_param = "max_tokens"
        self._send_temperature = True
        headers = {}
        host = (urlsplit(self.base_url).hostname or "") if self.base_url else ""
        if host.endswith((".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com")):
            headers["api-key"] = self._key  # Azure's own header; its v1 API also accepts the Bearer token
        self._client = openai.OpenAI(api_key=self._key, base_url=self.base_url, max_retries=0, timeout=60.0,
                                     default_headers=headers or None, http_client=deadline.http_client(openai))

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIProvider(model={self.model!r}, base_url={self.base_url!r}, structured={self.structured!r})"

    # -- request ----------------------------------------------------------------------------------
    def _kwargs(self, request: LLMRequest) -> dict[str, Any]:
        system = request.system
        if self.structured != "json_schema":
            system = f"{system}\n\n{_schema_instruction(request.schema)}" if system else _schema_instruction(request.schema)
        kw: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": request.user}],
            self._token_param: request.max_tokens,
            "timeout": request.remaining_s(),
        }
        if self._send_temperature:
            kw["temperature"] = request.temperature
        if self.structured == "json_schema":
            kw["response_format"] = {"type": "json_schema",
                                     "json_schema": {"name": "classification", "schema": request.schema, "strict": True}}
        elif self.structured == "json_object":
            kw["response_format"] = {"type": "json_object"}
        if self.logprobs:
            kw["logprobs"] = True
        return kw

    def _fallback(self, exc: Exception) -> bool:
        """Adapt to a 400 that says a feature is unsupported; True when the call should be repeated."""
        sdk = self._sdk
        if not isinstance(exc, sdk.APIStatusError) or exc.status_code not in (400, 422):
            return False
        message = f"{exc.message} {json.dumps(exc.body, default=str) if exc.body is not None else ''}".lower()
        why = status_reason(exc.status_code, server_message(exc), [self._key])
        if self.structured == "json_schema" and ("response_format" in message or "json_schema" in message):
            self.structured = "json_object"
            log.warning("%s: %s rejected response_format json_schema (%s); using json_object from now on", self.tier_name, self.model, why)
            return True
        if self._token_param == "max_tokens" and "max_completion_tokens" in message and _unsupported(message, "max_tokens"):
            self._token_param = "max_completion_tokens"
            log.warning("%s: %s does not support max_tokens; using max_completion_tokens from now on", self.tier_name, self.model)
            return True
        if self.logprobs and _unsupported(message, "logprobs"):
            self.logprobs = False
            log.warning("%s: %s does not support logprobs (%s); not asking for them from now on", self.tier_name, self.model, why)
            return True
        if self._send_temperature and _unsupported(message, "temperature"):
            self._send_temperature = False
            log.warning("%s: %s does not support temperature (%s); using the model's default from now on", self.tier_name, self.model, why)
            return True
        return False

    def complete(self, request: LLMRequest) -> LLMResponse:
        for _ in range(5):  # one call + at most one retry per capability fallback
            try:
                completion = self._client.chat.completions.create(**self._kwargs(request))
            except Exception as exc:  # noqa: BLE001 — every failure becomes a ProviderError
                if self._fallback(exc):
                    continue
                raise self._error(exc) from None
            try:
                return self._response(completion, request)
            except ProviderError:
                raise
            except Exception as exc:  # noqa: BLE001 — a 200 whose body is not a chat completion
                raise ProviderError(self.tier_name, "bad_response", f"unexpected response shape ({type(exc).__name__})") from None
        raise ProviderError(self.tier_name, "client_error", "the server rejected every fallback request")

    # -- response ---------------------------------------------------------------------------------
    def _response(self, completion: Any, request: LLMRequest) -> LLMResponse:
        fail = self.tier_name
        if isinstance(completion, (str, bytes)) or not hasattr(completion, "choices"):
            raise ProviderError(fail, "bad_response", "the response is not a chat completion")
        choices = completion.choices or []
        if not choices:
            raise ProviderError(fail, "bad_response", "the response has no choices")
        choice = choices[0]
        message = choice.message
        refusal = getattr(message, "refusal", None) if message is not None else None
        if choice.finish_reason == "content_filter":
            raise ProviderError(fail, "refusal", "the answer was withheld by the content filter (finish_reason=content_filter)")
        if refusal:
            raise ProviderError(fail, "refusal", f"the model refused: {' '.join(str(refusal).split())[:200]}")
        content = message.content if message is not None else None
        if not content or not content.strip():
            raise ProviderError(fail, "bad_response", f"empty answer (finish_reason={choice.finish_reason})")
        text = strip_code_fence(content)
        if choice.finish_reason == "length":
            try:
                json.loads(text)
            except ValueError:
                raise ProviderError(fail, "bad_response", f"answer cut off at max_tokens={request.max_tokens}") from None
        label_probs = None
        lp = getattr(choice, "logprobs", None)
        if self.logprobs and lp is not None and lp.content:
            label_probs = label_probs_from_logprobs(content, [(t.token, t.logprob, t.bytes) for t in lp.content], request.allowed)
        usage = completion.usage
        return LLMResponse(
            text=text,
            input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0) if usage else 0,
            output_tokens=int(getattr(usage, "completion_tokens", 0) or 0) if usage else 0,
            model=completion.model or self.model,
            label_probs=label_probs,
            raw={"id": completion.id, "finish_reason": choice.finish_reason, "structured": self.structured,
                 "system_fingerprint": getattr(completion, "system_fingerprint", None)},
        )

    def _error(self, exc: Exception) -> ProviderError:
        return sdk_error(exc, self._sdk, self.tier_name, [self._key])

    def close(self) -> None:
        self._client.close()


__all__ = ["LOCAL_PLACEHOLDER_KEY", "OpenAIProvider", "api_key_for", "is_local_url", "label_probs_from_logprobs",
           "label_value_spans", "parse_retry_after", "redact", "status_reason", "strip_code_fence"]
