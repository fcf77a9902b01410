"""frontdesk: hybrid intent classification and routing.

A fast calibrated classifier answers the routine messages; a gate sends the uncertain ones up a
cascade of tiers (encoder, LLM, human review). The public API::

    from frontdesk import Router, Dataset
    router = Router.train(Dataset.load("path/to/banking77"), tiers=["linear"])
    decision = router.route("I was charged twice for one coffee")

Names are imported on first use (PEP 562), so ``import frontdesk`` costs milliseconds and the CLI
starts fast; ``from frontdesk import Router`` imports what the Router needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS: dict[str, str] = {
    "Dataset": "frontdesk.data.dataset",
    "Example": "frontdesk.data.dataset",
    "distill_dataset": "frontdesk.loop.distill",
    "ConfigError": "frontdesk.errors",
    "DataError": "frontdesk.errors",
    "FrontdeskError": "frontdesk.errors",
    "InputError": "frontdesk.errors",
    "ModelError": "frontdesk.errors",
    "NotFittedError": "frontdesk.errors",
    "TierError": "frontdesk.errors",
    "GatePolicy": "frontdesk.gating.gate",
    "Objective": "frontdesk.gating.gate",
    "OperatingCurve": "frontdesk.gating.gate",
    "OperatingPoint": "frontdesk.gating.gate",
    "fit_gate": "frontdesk.gating.gate",
    "CertifiedThreshold": "frontdesk.gating.guarantee",
    "accuracy_interval": "frontdesk.gating.guarantee",
    "fit_certified_threshold": "frontdesk.gating.guarantee",
    "LLMRequest": "frontdesk.llm.base",
    "LLMResponse": "frontdesk.llm.base",
    "ProviderError": "frontdesk.llm.base",
    "ProviderInfo": "frontdesk.llm.registry",
    "ProviderSettings": "frontdesk.llm.registry",
    "register_provider": "frontdesk.llm.registry",
    "Router": "frontdesk.cascade.router",
    "RouterSettings": "frontdesk.cascade.router",
    "Pipeline": "frontdesk.pipeline",
    "Tier": "frontdesk.tiers.base",
    "TierContext": "frontdesk.tiers.base",
    "available_tiers": "frontdesk.tiers.base",
    "register_tier": "frontdesk.tiers.base",
    "ClauseParams": "frontdesk.tiers.clauses",
    "ClauseTier": "frontdesk.tiers.clauses",
    "EnsembleParams": "frontdesk.tiers.ensemble",
    "EnsembleTier": "frontdesk.tiers.ensemble",
    "ActionCall": "frontdesk.routing.actions",
    "register_action": "frontdesk.routing.actions",
    "ExtractConfig": "frontdesk.intake.extract",
    "Extractor": "frontdesk.intake.extract",
    "ActionResult": "frontdesk.types",
    "Decision": "frontdesk.types",
    "LabelScore": "frontdesk.types",
    "Message": "frontdesk.types",
    "PiiRecord": "frontdesk.types",
    "Sentiment": "frontdesk.types",
    "TierResult": "frontdesk.types",
    "TierTrace": "frontdesk.types",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'frontdesk' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from frontdesk.cascade.router import Router, RouterSettings
    from frontdesk.data.dataset import Dataset, Example
    from frontdesk.errors import (
        ConfigError,
        DataError,
        FrontdeskError,
        InputError,
        ModelError,
        NotFittedError,
        TierError,
    )
    from frontdesk.gating.gate import GatePolicy, Objective, OperatingCurve, OperatingPoint, fit_gate
    from frontdesk.gating.guarantee import CertifiedThreshold, accuracy_interval, fit_certified_threshold
    from frontdesk.llm.base import LLMRequest, LLMResponse, ProviderError
    from frontdesk.llm.registry import ProviderInfo, ProviderSettings, register_provider
    from frontdesk.loop.distill import distill_dataset
    from frontdesk.pipeline import Pipeline
    from frontdesk.tiers.base import Tier, TierContext, available_tiers, register_tier
    from frontdesk.tiers.clauses import ClauseParams, ClauseTier
    from frontdesk.tiers.ensemble import EnsembleParams, EnsembleTier
    from frontdesk.intake.extract import ExtractConfig, Extractor
    from frontdesk.routing.actions import ActionCall, register_action
    from frontdesk.types import ActionResult, Decision, LabelScore, Message, PiiRecord, Sentiment, TierResult, TierTrace
