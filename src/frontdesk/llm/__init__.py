"""LLM providers (OpenAI-compatible, Anthropic, local llama.cpp), the prompt and fault handling.

The tier that uses them is :class:`frontdesk.tiers.llm.LLMTier`.
"""

from frontdesk.llm.base import LLMRequest, LLMResponse, Provider, ProviderError

__all__ = ["LLMRequest", "LLMResponse", "Provider", "ProviderError"]
