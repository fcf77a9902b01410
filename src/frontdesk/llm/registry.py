"""LLM providers by name: the built-in ones, those registered in code, and those installed packages
declare under the ``frontdesk.providers`` entry-point group.

Adding a provider is one call (or one entry point), nowhere else::

    from frontdesk.llm.registry import ProviderSettings, register_provider

    def make_echo(settings: ProviderSettings) -> EchoProvider:   # any object with name, model, complete(), close()
        return EchoProvider(settings.model, **settings.options)

    register_provider("echo", make_echo, default_model="echo-1", install="pip install frontdesk-echo")

or, in the provider package's ``pyproject.toml``::

    [project.entry-points."frontdesk.providers"]
    echo = "frontdesk_echo:make_echo"        # a factory, or a ProviderInfo

after which ``llm: {provider: echo}`` in frontdesk.yaml and ``--llm echo`` work. Built-in providers
import their SDK only when constructed; a missing package becomes a :class:`ConfigError` that says
what to install.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from frontdesk.errors import ConfigError
from frontdesk.llm.base import Provider
from frontdesk.plugins import PROVIDERS_GROUP, PluginRegistry

ENTRY_POINT_GROUP = PROVIDERS_GROUP


@dataclass(frozen=True)
class ProviderSettings:
    """What a provider factory gets: the ``llm:`` settings that concern the provider."""

    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    n_threads: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    tier_name: str = "llm"


ProviderFactory = Callable[[ProviderSettings], Provider]


@dataclass(frozen=True)
class ProviderInfo:
    """A provider: its ``factory``, the model used when none is given, how to install what it needs,
    and ``ready`` — a cheap check (no model loading) that returns None when it can run here, else why not."""

    name: str
    factory: ProviderFactory
    default_model: str | None = None
    install: str | None = None
    description: str = ""
    ready: Callable[[], str | None] | None = None


def _provider_plugin(name: str, obj: Any) -> ProviderInfo:
    """A registered or installed provider: a :class:`ProviderInfo` (renamed to ``name``) or a bare factory."""
    if isinstance(obj, ProviderInfo):
        if not callable(obj.factory):
            raise TypeError(f"the factory must be callable, got {type(obj.factory).__name__}")
        return obj if obj.name == name else dataclasses.replace(obj, name=name)
    if callable(obj):
        return ProviderInfo(name, obj)
    raise TypeError(f"expected a factory or a ProviderInfo, got a {type(obj).__name__}")


def _builtins() -> dict[str, ProviderInfo]:
    """The built-in providers (cheap: their SDKs are imported only when a provider is built)."""
    from frontdesk.llm.models import DEFAULT_MODEL

    local = "pip install 'frontdesk[llm-local]'"
    compiled = "pip install 'frontdesk[llm-llama-cpp]'"
    api = "pip install 'frontdesk[llm]'"
    return {info.name: info for info in (
        ProviderInfo("local", _xllamacpp, DEFAULT_MODEL, local,
                     "offline GGUF model in process (xllamacpp: prebuilt llama.cpp, no compiler)", _local_ready("xllamacpp", local)),
        ProviderInfo("llama-cpp", _llama_cpp, DEFAULT_MODEL, f"{compiled} (compiles llama.cpp)",
                     "offline GGUF model in process (llama-cpp-python)", _local_ready("llama_cpp", compiled)),
        ProviderInfo("openai", _openai, "gpt-4o-mini", api,
                     "any OpenAI-compatible endpoint (OpenAI, Azure, vLLM, Ollama, llama.cpp server, …)", _sdk_ready("openai", api)),
        ProviderInfo("anthropic", _anthropic, "claude-3-5-haiku-latest", api, "the Anthropic Messages API",
                     _sdk_ready("anthropic", api)),
    )}


PROVIDERS: PluginRegistry[ProviderInfo] = PluginRegistry(
    "LLM provider", PROVIDERS_GROUP, field="llm.provider", how="register_provider('NAME', factory)",
    builtins=_builtins, coerce=_provider_plugin)
"""LLM providers by name (:mod:`frontdesk.plugins`)."""


def register_provider(
    name: str,
    factory: ProviderFactory,
    *,
    default_model: str | None = None,
    install: str | None = None,
    description: str = "",
    ready: Callable[[], str | None] | None = None,
    replace: bool = False,
) -> ProviderInfo:
    """Make ``factory`` the provider called ``name``; returns its :class:`ProviderInfo`.

    Registering a name that is taken raises :class:`ConfigError` unless ``replace=True``.
    """
    if not callable(factory):
        raise ConfigError(f"provider {name!r}: the factory must be callable, got {type(factory).__name__}", field="llm.provider")
    return PROVIDERS.register(name, ProviderInfo(name, factory, default_model, install, description, ready), replace=replace)


def unregister_provider(name: str) -> None:
    """Forget a provider registered in code (tests; built-ins come back on the next lookup)."""
    PROVIDERS.unregister(name)


def provider_names() -> list[str]:
    """Every provider that can be named: built-in, registered and installed (entry points; not loaded)."""
    return PROVIDERS.names()


def get_provider(name: str) -> ProviderInfo:
    """The provider called ``name`` (an entry point is loaded on first use); else :class:`ConfigError`."""
    return PROVIDERS.get(name)


def create_provider(name: str, settings: ProviderSettings) -> Provider:
    """Build the provider ``name``; a missing package or an unknown option is a :class:`ConfigError`."""
    info = get_provider(name)
    try:
        return info.factory(settings)
    except ImportError as exc:
        how = f": {info.install}" if info.install else ""
        raise ConfigError(f"the {name} provider needs the {exc.name or 'missing'} package{how}", field="llm.provider") from exc
    except TypeError as exc:
        if settings.options and "unexpected keyword argument" in str(exc):
            raise ConfigError(f"{exc} — check llm.options for the {name} provider", field="llm.options") from exc
        raise


def provider_ready(name: str) -> str | None:
    """None when provider ``name`` can run here (by its cheap check), else why not and how to fix it."""
    info = get_provider(name)
    return info.ready() if info.ready is not None else None


# -- the built-in providers ----------------------------------------------------------------------


def _openai(s: ProviderSettings) -> Provider:
    from frontdesk.llm.providers.openai_compat import OpenAIProvider

    kw: dict[str, Any] = {"base_url": s.base_url, "tier_name": s.tier_name, **s.options}
    if s.api_key_env:
        kw["api_key_env"] = s.api_key_env
    return OpenAIProvider(s.model, **kw)


def _anthropic(s: ProviderSettings) -> Provider:
    from frontdesk.llm.providers.anthropic_api import AnthropicProvider

    kw: dict[str, Any] = {"base_url": s.base_url, "tier_name": s.tier_name, **s.options}
    if s.api_key_env:
        kw["api_key_env"] = s.api_key_env
    return AnthropicProvider(s.model, **kw)


def _xllamacpp(s: ProviderSettings) -> Provider:
    from frontdesk.llm.providers.xllamacpp import XllamacppProvider

    return XllamacppProvider(s.model, n_threads=s.n_threads, tier_name=s.tier_name, **s.options)


def _llama_cpp(s: ProviderSettings) -> Provider:
    from frontdesk.llm.providers.llama_cpp import LlamaCppProvider

    return LlamaCppProvider(s.model, n_threads=s.n_threads, tier_name=s.tier_name, **s.options)


def _sdk_ready(module: str, install: str) -> Callable[[], str | None]:
    def ready() -> str | None:
        return None if importlib.util.find_spec(module) is not None else f"the {module} package is not installed ({install})"

    return ready


def _local_ready(module: str, install: str) -> Callable[[], str | None]:
    """The offline provider can run: its package is installed (not imported: it sets OpenMP options
    first), the CPU can run it, and the default model is fetched."""

    def ready() -> str | None:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed ({install}, or `make demo`)"
        if module == "xllamacpp":
            from frontdesk.llm.providers.xllamacpp import missing_cpu_features

            missing = missing_cpu_features()
            if missing:
                return f"this CPU lacks {', '.join(sorted(missing))} (needed by the prebuilt xllamacpp wheel): use --llm llama-cpp"
        from frontdesk.llm.models import is_installed

        if not is_installed():
            return "the local model is not fetched (frontdesk models fetch, or `make demo`)"
        return None

    return ready


__all__ = ["ENTRY_POINT_GROUP", "PROVIDERS", "ProviderFactory", "ProviderInfo", "ProviderSettings", "create_provider", "get_provider",
           "provider_names", "provider_ready", "register_provider", "unregister_provider"]
