"""What the HTTP API providers share (no SDK imported here): API keys, redaction, and the one mapping
of an SDK exception to a :class:`~frontdesk.llm.base.ProviderError`.

The OpenAI and Anthropic SDKs are generated from the same template, so their exceptions have the
same shape (``APITimeoutError``, ``APIConnectionError``, ``APIStatusError`` with ``status_code``,
``response.headers`` and ``body``); :func:`sdk_error` maps either, given the SDK module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from ipaddress import ip_address
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from frontdesk.common.retry import parse_retry_after
from frontdesk.errors import ConfigError
from frontdesk.llm.base import ProviderError

#: the API key sent to a local server that needs none (vLLM, Ollama, llama.cpp, LM Studio ignore it)
LOCAL_PLACEHOLDER_KEY = "sk-no-key-required"
_LOCAL_HOSTS = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_local_url(url: str | None) -> bool:
    """True for a base URL on this machine (localhost, 127.0.0.0/8, ::1)."""
    if not url:
        return False
    host = (urlsplit(url if "://" in url else f"http://{url}").hostname or "").lower()
    if host in _LOCAL_HOSTS or host.endswith(".localhost"):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def api_key_for(api_key: str | None, api_key_env: str, base_url: str | None, *, service: str) -> str:
    """The key to use: ``api_key``, else ``$api_key_env``, else a placeholder for a local ``base_url``.

    Raises :class:`ConfigError` naming the environment variable when a real endpoint has no key.
    The error never contains a key (there is none to leak at that point).
    """
    if api_key:
        return api_key
    env = os.environ.get(api_key_env, "").strip()
    if env:
        return env
    if is_local_url(base_url):
        return LOCAL_PLACEHOLDER_KEY
    where = urlsplit(base_url).hostname if base_url else f"the default {service} endpoint"
    raise ConfigError(
        f"no API key for {where}: set the {api_key_env} environment variable (or pass api_key=...); "
        f"a self-hosted server without authentication accepts any value",
        field="llm.api_key_env",
    )


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each secret (≥ 4 characters) replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret != LOCAL_PLACEHOLDER_KEY:
            text = text.replace(secret, "***")
    return text


def status_reason(status: int, message: str, secrets: Iterable[str | None], limit: int = 300) -> str:
    """``HTTP 429: <server message>``, key-free and bounded."""
    message = " ".join(redact(str(message), secrets).split())
    if len(message) > limit:
        message = message[: limit - 1] + "…"
    return f"HTTP {status}: {message}" if message else f"HTTP {status}"


def strip_code_fence(text: str) -> str:
    """``text`` without a surrounding Markdown code fence (```json … ```), which some local models add."""
    s = text.strip()
    if s.startswith("```"):
        s = re.sub(r"^```[A-Za-z0-9_-]*\s*", "", s)
        s = re.sub(r"\s*```\s*$", "", s)
    return s


def server_message(exc: Any) -> str:
    """The server's own error message: ``body.message`` (OpenAI: the ``error`` object), ``body.error.message``
    (Anthropic), else the SDK's message."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        if isinstance(body.get("message"), str):
            return body["message"]
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return err["message"]
    return str(getattr(exc, "message", exc))


def sdk_error(exc: Exception, sdk: ModuleType, tier: str, secrets: Iterable[str | None]) -> ProviderError:
    """The :class:`ProviderError` for an exception raised by the ``openai`` or ``anthropic`` SDK.

    Timeouts, connection failures, 429 (``rate_limit``) and 5xx (``server_error``, Anthropic's 529
    overloaded included) are retryable; other statuses are ``client_error``; anything else the SDK
    raised (a body that is not JSON, a validation error) is ``bad_response``. Keys never appear.
    """
    secrets = list(secrets)
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError(tier, "timeout", "no answer within the time limit")
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = redact(f"{type(cause).__name__}: {cause}" if cause else str(exc), secrets)
        return ProviderError(tier, "connection", f"could not reach the server ({detail[:200]})")
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        why = status_reason(status, server_message(exc), secrets)
        retry_after = parse_retry_after(exc.response.headers)
        if status == 429:
            return ProviderError(tier, "rate_limit", why, status=status, retry_after=retry_after)
        if status >= 500:  # 500, 503, Anthropic's 529 overloaded, …
            return ProviderError(tier, "server_error", why, status=status, retry_after=retry_after)
        return ProviderError(tier, "client_error", why, status=status)
    content_filter = getattr(sdk, "ContentFilterFinishReasonError", None)
    if content_filter is not None and isinstance(exc, content_filter):
        return ProviderError(tier, "refusal", "the answer was withheld by the content filter")
    return ProviderError(tier, "bad_response", redact(f"{type(exc).__name__}: {exc}", secrets)[:300])


__all__ = ["LOCAL_PLACEHOLDER_KEY", "api_key_for", "is_local_url", "redact", "sdk_error", "server_message",
           "status_reason", "strip_code_fence"]
