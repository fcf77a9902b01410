"""frontdesk: hybrid intent classification and routing.

A fast calibrated classifier answers the routine messages; a gate sends the uncertain ones up a
cascade of tiers (encoder, LLM, human review). The public API::

    from frontdesk import Router, Dataset
    router = Router.train(Dataset.load("path/to/banking77"), tiers=["linear"])
    decision = router.route("I was charged twice for one coffee")
"""

__version__ = "0.1.0"

from frontdesk.data.dataset import Dataset, Example
from frontdesk.loop.distill import distill_dataset
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
from frontdesk.cascade.router import Router, RouterSettings
from frontdesk.tiers.base import Tier, available_tiers, register_tier
from frontdesk.tiers.clauses import ClauseParams, ClauseTier
from frontdesk.tiers.ensemble import EnsembleParams, EnsembleTier
from frontdesk.types import Decision, LabelScore, Message, TierResult, TierTrace

__all__ = [
    "__version__",
    "ClauseParams",
    "ClauseTier",
    "ConfigError",
    "DataError",
    "Dataset",
    "Decision",
    "EnsembleParams",
    "EnsembleTier",
    "Example",
    "FrontdeskError",
    "GatePolicy",
    "InputError",
    "LabelScore",
    "Message",
    "ModelError",
    "NotFittedError",
    "Objective",
    "OperatingCurve",
    "OperatingPoint",
    "Router",
    "RouterSettings",
    "Tier",
    "TierError",
    "TierResult",
    "TierTrace",
    "available_tiers",
    "distill_dataset",
    "fit_gate",
    "register_tier",
]
