"""LLM providers: OpenAI-compatible APIs, Anthropic, and local GGUF models."""
