"""The Anthropic provider: the Messages API through the official ``anthropic`` SDK.

Structured output is forced with a single tool, ``classify``, whose ``input_schema`` is the answer
schema, and ``tool_choice={"type": "tool", "name": "classify"}``: the model must answer by "calling"
it, and the tool input (already parsed JSON on the wire) is returned as JSON text for the tier to
validate. SDK retries are off (``max_retries=0``); the tier retries; the HTTP client obeys the
call's deadline and errors are mapped by the shared :func:`~frontdesk.llm.providers.http_api.sdk_error`. Anthropic returns no token
log-probabilities, so ``label_probs`` is always None.

``temperature`` is not sent: the installed SDK's ``messages.create`` has no such parameter any more
(the tier's ``request.temperature`` is ignored here).
"""

from __future__ import annotations

import json
from typing import Any

from frontdesk.llm import deadline
from frontdesk.llm.base import LLMRequest, LLMResponse, ProviderError
from frontdesk.llm.providers.http_api import api_key_for, sdk_error

TOOL_NAME = "classify"
TOOL_DESCRIPTION = "Record the classification of the customer message. Always answer by calling this tool."


class AnthropicProvider:
    """One Messages API call per :meth:`complete`; errors become :class:`ProviderError`."""

    name = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "ANTHROPIC_API_KEY",
        tier_name: str = "llm",
    ) -> None:
        import anthropic  # lazy: the SDK is an optional dependency (ImportError → the tier's ConfigError)

        self._sdk = anthropic
        self.model = model
        self.tier_name = tier_name
        self.base_url = base_url
        self._key = api_key_for(api_key, api_key_env, base_url, service="Anthropic")
        # an explicit api_key makes the SDK ignore ANTHROPIC_AUTH_TOKEN, profiles and federation env vars
        self._client = anthropic.Anthropic(api_key=self._key, base_url=base_url, max_retries=0, timeout=60.0,
                                           http_client=deadline.http_client(anthropic))

    def __repr__(self) -> str:  # never shows the key
        return f"AnthropicProvider(model={self.model!r}, base_url={self.base_url!r})"

    def complete(self, request: LLMRequest) -> LLMResponse:
        try:
            message = self._client.messages.create(
                model=self.model,
                max_tokens=request.max_tokens,
                system=request.system,
                messages=[{"role": "user", "content": request.user}],
                tools=[{"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": request.schema}],
                tool_choice={"type": "tool", "name": TOOL_NAME},
                timeout=request.remaining_s(),
            )
        except Exception as exc:  # noqa: BLE001 — every failure becomes a ProviderError
            raise self._error(exc) from None
        try:
            return self._response(message)
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 — a 200 whose body is not a message
            raise ProviderError(self.tier_name, "bad_response", f"unexpected response shape ({type(exc).__name__})") from None

    def _response(self, message: Any) -> LLMResponse:
        tier = self.tier_name
        if isinstance(message, (str, bytes)) or message is None:
            raise ProviderError(tier, "bad_response", "the response is not a Messages API message")
        stop = getattr(message, "stop_reason", None)
        if stop == "refusal":
            details = getattr(message, "stop_details", None)
            why = getattr(details, "explanation", None) or getattr(details, "category", None) or "stop_reason=refusal"
            raise ProviderError(tier, "refusal", f"the model refused ({' '.join(str(why).split())[:200]})")
        blocks = getattr(message, "content", None) or []
        tool = next((b for b in blocks if getattr(b, "type", None) == "tool_use" and getattr(b, "name", None) == TOOL_NAME), None)
        if tool is None:
            text = " ".join(getattr(b, "text", "") or "" for b in blocks if getattr(b, "type", None) == "text")
            said = f": {' '.join(text.split())[:120]!r}" if text.strip() else ""
            raise ProviderError(tier, "bad_response", f"no {TOOL_NAME} tool call in the answer (stop_reason={stop}){said}")
        if not isinstance(tool.input, dict):
            raise ProviderError(tier, "bad_response", f"the {TOOL_NAME} tool input is not a JSON object")
        usage = getattr(message, "usage", None)
        return LLMResponse(
            text=json.dumps(tool.input, ensure_ascii=False),
            input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
            output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
            model=getattr(message, "model", None) or self.model,
            label_probs=None,
            raw={"id": getattr(message, "id", None), "stop_reason": stop},
        )

    def _error(self, exc: Exception) -> ProviderError:
        return sdk_error(exc, self._sdk, self.tier_name, [self._key])

    def close(self) -> None:
        self._client.close()
