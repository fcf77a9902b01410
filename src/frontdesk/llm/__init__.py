"""LLM providers (local xllamacpp, llama-cpp-python, OpenAI-compatible, Anthropic, plug-ins), the prompt,
the provider registry and fault handling (deadline, call pool, circuit breaker).

The tier that uses them is :class:`frontdesk.tiers.llm.LLMTier`.
"""

from frontdesk.llm.base import LLMRequest, LLMResponse, Provider, ProviderError
from frontdesk.llm.registry import ProviderInfo, ProviderSettings, get_provider, provider_names, register_provider

__all__ = ["LLMRequest", "LLMResponse", "Provider", "ProviderError", "ProviderInfo", "ProviderSettings", "get_provider",
           "provider_names", "register_provider"]
