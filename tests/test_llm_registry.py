"""LLM providers by name: the built-ins, one registered in code, one installed as an outside package
(a real distribution on ``sys.path`` declaring a ``frontdesk.providers`` entry point)."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from frontdesk import GatePolicy, Router, RouterSettings
from frontdesk.cli.common import llm_params
from frontdesk.errors import ConfigError
from frontdesk.llm.base import LLMRequest, LLMResponse, Provider
from frontdesk.llm.registry import (
    ENTRY_POINT_GROUP,
    ProviderSettings,
    create_provider,
    get_provider,
    provider_names,
    register_provider,
    unregister_provider,
)
from frontdesk.tiers.llm import LLMParams

TEXT = "I was charged twice for my order and want the extra payment back"


class EchoProvider:
    """Answers the last candidate (so the answer is visibly the provider's, not the classifier's)."""

    name = "echo"

    def __init__(self, model: str, confidence: float = 0.9) -> None:
        self.model, self.confidence, self.calls = model, confidence, 0

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.calls += 1
        label = [c for c in request.allowed if c != "none"][-1]
        return LLMResponse(json.dumps({"labels": [label], "confidence": self.confidence, "rationale": "echo"}), 10, 5, self.model)

    def close(self) -> None:
        pass


def unsure(router: Router) -> Router:
    return Router(router.tiers, {"linear": GatePolicy(threshold=1.0)}, RouterSettings(),
                  descriptions=router.descriptions, examples=router.examples)


def test_builtin_providers_are_listed_and_unknown_names_say_which_exist() -> None:
    assert {"local", "llama-cpp", "openai", "anthropic"} <= set(provider_names())
    assert get_provider("local").default_model == "qwen2.5-coder-1.5b"
    assert "xllamacpp" in get_provider("local").description and "llama-cpp-python" in get_provider("llama-cpp").description
    with pytest.raises(ConfigError, match="unknown LLM provider 'gpt5'.*anthropic, llama-cpp, local, openai"):
        get_provider("gpt5")
    with pytest.raises(ValueError, match="unknown LLM provider 'gpt5'"):  # pydantic's ValidationError
        LLMParams(provider="gpt5")
    with pytest.raises(ConfigError, match="unknown LLM provider 'gpt5'"):  # the tier's settings parser
        from frontdesk.tiers.llm import LLMTier

        LLMTier("llm", {"provider": "gpt5"})
    with pytest.raises(ConfigError, match="--llm: unknown LLM provider 'gpt5'"):
        llm_params("gpt5", None, None)
    assert llm_params("anthropic", "claude-x", None) == {"provider": "anthropic", "model": "claude-x", "base_url": None}


def test_a_provider_registered_in_code_runs_in_the_tier(router: Router) -> None:
    made: list[EchoProvider] = []

    def factory(settings: ProviderSettings) -> Provider:
        made.append(EchoProvider(settings.model, **settings.options))
        return made[-1]

    register_provider("echo", factory, default_model="echo-1", description="test provider")
    try:
        with pytest.raises(ConfigError, match="already registered"):
            register_provider("echo", factory)
        assert "echo" in provider_names() and llm_params("echo", None, None)["provider"] == "echo"
        r = unsure(router).with_llm({"provider": "echo", "options": {"confidence": 0.8}})
        d = r.route(TEXT)
        candidates = [lab for lab, _ in r.tier("linear").score(TEXT).ranked[:5]]
        llm = d.trace[1]  # the provider's answer (no acceptance policy fitted: the safe default keeps the classifier's guess)
        assert llm.tier == "llm" and llm.top[0].label == candidates[-1] and llm.top[0].score == 0.8 and llm.rationale == "echo"
        assert made[0].model == "echo-1" and made[0].calls == 1 and r.tier("llm").info()["provider"] == "echo"
        with pytest.raises(ConfigError, match="llm.options.*unexpected keyword argument 'colour'"):
            create_provider("echo", ProviderSettings(model="m", options={"colour": "red"}))
    finally:
        unregister_provider("echo")
    assert "echo" not in provider_names()


def test_a_missing_package_says_what_to_install() -> None:
    def factory(settings: ProviderSettings) -> Provider:
        import frontdesk_no_such_sdk  # noqa: F401

        raise AssertionError("unreachable")

    register_provider("needs-sdk", factory, default_model="m", install="pip install frontdesk-needs-sdk")
    try:
        with pytest.raises(ConfigError, match="needs the frontdesk_no_such_sdk package: pip install frontdesk-needs-sdk"):
            create_provider("needs-sdk", ProviderSettings(model="m"))
    finally:
        unregister_provider("needs-sdk")


@pytest.fixture()
def outside_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tiny installed distribution, ``frontdesk-fixed``, providing the ``fixed`` provider by entry point."""
    site = tmp_path / "site"
    (site / "frontdesk_fixed").mkdir(parents=True)
    (site / "frontdesk_fixed" / "__init__.py").write_text(textwrap.dedent('''
        import json
        from frontdesk.llm.base import LLMResponse
        from frontdesk.llm.registry import ProviderInfo

        class FixedProvider:
            name = "fixed"

            def __init__(self, model, label_index=0):
                self.model, self.label_index = model, label_index

            def complete(self, request):
                label = request.allowed[self.label_index]
                return LLMResponse(json.dumps({"labels": [label], "confidence": 0.95, "rationale": "fixed"}), 1, 1, self.model)

            def close(self):
                pass

        def make(settings):
            return FixedProvider(settings.model, **settings.options)

        PROVIDER = ProviderInfo("fixed", make, default_model="fixed-1", install="pip install frontdesk-fixed")
    '''))
    dist = site / "frontdesk_fixed-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: frontdesk-fixed\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nfixed = frontdesk_fixed:PROVIDER\nbroken = frontdesk_fixed:nothing_here\n")
    monkeypatch.syspath_prepend(str(site))
    yield "fixed"
    unregister_provider("fixed")
    sys.modules.pop("frontdesk_fixed", None)


def test_an_installed_package_provides_a_provider_by_entry_point(outside_package: str, router: Router) -> None:
    assert {"fixed", "broken"} <= set(provider_names())  # listed without being imported
    assert "frontdesk_fixed" not in sys.modules
    params = LLMParams(provider="fixed", options={"label_index": 1})
    assert params.model_name == "fixed-1"
    r = unsure(router).with_llm(params.model_dump())
    d = r.route(TEXT)
    candidates = [lab for lab, _ in r.tier("linear").score(TEXT).ranked[:5]]
    llm = d.trace[1]  # the plug-in's answer (the safe default then keeps the classifier's guess: no policy is fitted)
    assert llm.tier == "llm" and llm.top[0].label == candidates[1] and llm.rationale == "fixed"
    with pytest.raises(ConfigError, match="'broken' LLM provider's entry point 'frontdesk_fixed:nothing_here' from frontdesk-fixed 0.1 failed to load"):
        get_provider("broken")
