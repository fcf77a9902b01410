"""The tier interface: every tier (rules, linear, encoder, LLM, a plug-in …) joins the Router through it.

A tier turns text into label scores. *Model tiers* (linear, encoder) also expose calibrated
``predict_proba`` over the whole label set, which the Router uses to fit the tier's gate on
validation data.

A tier says what it is for, and what it needs from the model it joins, in two class-level
declarations; the Router, the pipeline and the batch cascade read those, never the tier's ``kind``:

``role`` — where the tier stands and how its answer is treated (:data:`TierRole`):

* ``guardrail``: runs first and pre-routes explicit signals (keyword rules); its labels may lie outside
  the model's label set; it is not the primary tier, gives no evidence to the LLM, and the config's
  ``rules:`` replace it;
* ``model``: a classifier over the model's label set (the default); the first calibrated one is the
  *primary* tier (its gate may be certified), and every calibrated one gives the LLM tier evidence;
* ``llm``: asks an LLM to choose among candidates, after the model tiers; its answer passes the
  injection rule and the acceptance policy (:mod:`frontdesk.llm.acceptance`). One per cascade, an
  :class:`~frontdesk.tiers.llm.LLMTier` (plug a new LLM in as a *provider*, :mod:`frontdesk.llm.registry`);
* ``human``: hands the message to people (a review service); last.

``needs`` — what the Router hands the tier (:data:`TierNeed`): ``candidates`` (the labels earlier tiers
proposed, in ``score(text, candidates)``; None for tiers that do not declare it), ``descriptions`` (the
labels' descriptions) and ``examples`` (training examples per label, and the model's example index of the
nearest ones), both through :meth:`Tier.attach` when the tier joins a trained model
(:meth:`Router.with_tier <frontdesk.cascade.router.Router.with_tier>`).

New tier kinds register with :func:`register_tier`, or from an installed package's ``frontdesk.tiers``
entry point (:mod:`frontdesk.plugins`), so that ``--tiers`` and saved models can name them by ``kind``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, get_args

import numpy as np
from pydantic import BaseModel, ValidationError

from frontdesk.common.progress import Progress
from frontdesk.data.dataset import Dataset
from frontdesk.errors import ConfigError, ModelError, NotFittedError, validation_message
from frontdesk.gating.gate import GatePolicy
from frontdesk.plugins import TIERS_GROUP, PluginRegistry
from frontdesk.types import TierResult, TierRole

if TYPE_CHECKING:
    from frontdesk.llm.retrieval import ExampleIndex

TierNeed = Literal["candidates", "descriptions", "examples"]
"""What a tier may need from the model it joins (see the module docstring)."""

#: cascade order of the roles: a tier added to a trained model goes after the tiers of its role and before later roles
ROLE_ORDER: dict[str, int] = {"guardrail": 0, "model": 1, "llm": 2, "human": 3}


@dataclass(frozen=True)
class TierContext:
    """What a trained model hands a tier that joins it (:meth:`Tier.attach`)."""

    labels: tuple[str, ...]
    descriptions: Mapping[str, str] = field(default_factory=dict)
    #: a few training texts per label (the same for every message)
    examples: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: the training examples nearest to each message (:mod:`frontdesk.llm.retrieval`), when the model has the index
    example_index: ExampleIndex | None = None
    multi_label: bool = False


P = TypeVar("P", bound=BaseModel)


def parse_params(model: type[P], params: P | dict[str, Any] | None, tier_name: str) -> P:
    """A tier's settings as its pydantic model; invalid settings are a ConfigError that names the tier."""
    if isinstance(params, model):
        return params
    try:
        return model(**(params or {}))
    except ValidationError as exc:
        raise ConfigError(validation_message(exc), field=f"tier_params.{tier_name}") from exc


class Tier(ABC):
    """Base class of all tiers. Subclasses set ``kind`` (and ``role``/``needs`` when not a plain model
    tier) and implement score / save / load; ``__init__(name, params)`` is how ``--tiers`` builds them."""

    kind: ClassVar[str]
    #: where the tier stands in the cascade and how its answer is treated (module docstring)
    role: ClassVar[TierRole] = "model"
    #: what the Router hands the tier (module docstring)
    needs: ClassVar[frozenset[TierNeed]] = frozenset()
    #: True for tiers whose ``predict_proba`` covers the full label set (their gates are fitted).
    calibrated: ClassVar[bool] = False
    #: True when ``score`` is exactly the top-k of ``predict_proba`` (the batch cascade then scores and
    #: gates whole chunks as arrays instead of calling ``score_batch``); a subclass that changes ``score`` resets it
    score_is_proba: ClassVar[bool] = False

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.kind
        self.labels_: tuple[str, ...] = ()

    # -- training -------------------------------------------------------------------------
    def fit(self, data: Dataset, progress: Progress | None = None) -> Tier:
        """Train on ``data.train`` (and calibrate on ``data.validation``); returns self."""
        self.labels_ = data.labels
        return self

    @property
    def fitted(self) -> bool:
        return bool(self.labels_)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(f"tier {self.name!r} is not trained: call fit() or load a saved model first")

    def attach(self, context: TierContext) -> None:
        """Join a trained model (:meth:`Router.with_tier`): take its label set, and what ``needs`` declares.

        The default keeps the labels; tiers that need descriptions or examples override it.
        """
        self.labels_ = tuple(context.labels)

    def use_example_index(self, index: ExampleIndex) -> None:
        """The model's example index, handed to tiers that need ``examples`` when a router is assembled
        (a loaded model's tiers get it this way); a tier that already has one keeps its own."""

    # -- inference ------------------------------------------------------------------------
    @abstractmethod
    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        """Scores for one message; ``candidates`` are labels earlier tiers proposed (may be ignored)."""

    def score_batch(self, texts: Sequence[str], candidates: Sequence[Sequence[str] | None] | None = None) -> list[TierResult]:
        """Scores for many messages; tiers override this when batching is cheaper."""
        cands = candidates or [None] * len(texts)
        return [self.score(t, c) for t, c in zip(texts, cands)]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated probabilities (n, len(labels_)); only for ``calibrated`` tiers."""
        raise NotImplementedError(f"tier kind {self.kind!r} has no predict_proba over the label set")

    def info(self) -> dict[str, Any]:
        """Facts worth reporting about the trained tier (calibration, sizes, training time)."""
        return {}

    # -- out-of-scope columns (frontdesk.gating.oos) ------------------------------------------------
    def fit_oos(self, data: Dataset, unknown_label: str | None, progress: Progress | None = None) -> None:
        """Fit what the tier's out-of-scope columns need beyond the model itself (e.g. per-label centroids of
        the training data); ``unknown_label`` is the data's unknown class, if it has one. Default: nothing."""

    def oos_column_names(self) -> tuple[str, ...]:
        """The columns its out-of-scope detector combines, most telling first (the first is used alone when
        there are no out-of-scope examples). Default: what any calibrated tier has, its top probability and margin."""
        return ("max_prob", "margin")

    def predict_with_oos(self, texts: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``predict_proba`` and the out-of-scope columns of the same texts, in one pass where the tier can."""
        from frontdesk.gating.oos import probability_columns

        probs = self.predict_proba(texts)
        return probs, probability_columns(probs)

    def default_gate(self) -> GatePolicy:
        """The gate of a tier whose thresholds are not fitted (uncalibrated tiers)."""
        return GatePolicy()

    # -- persistence ----------------------------------------------------------------------
    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the tier's state into directory ``path`` (created by the caller)."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path, name: str) -> Tier:
        """Read a tier saved by :meth:`save`."""


def _tier_plugin(kind: str, obj: Any) -> type[Tier]:
    """A registered or installed tier: a Tier subclass whose ``kind`` is its name and whose role is known."""
    if not (isinstance(obj, type) and issubclass(obj, Tier)):
        raise TypeError(f"expected a subclass of frontdesk.tiers.base.Tier, got {obj!r}")
    declared = getattr(obj, "kind", None)
    if declared != kind:
        raise ValueError(f"{obj.__name__} declares kind {declared!r}: saved models name a tier by its class's kind, "
                         f"so register it as {declared!r} (or set kind = {kind!r})")
    if obj.role not in ROLE_ORDER:
        raise ValueError(f"{obj.__name__} declares role {obj.role!r}: use one of {', '.join(ROLE_ORDER)}")
    unknown = set(obj.needs) - set(get_args(TierNeed))
    if unknown:
        raise ValueError(f"{obj.__name__} needs {sorted(unknown)}: a tier may need {', '.join(get_args(TierNeed))}")
    return obj


TIERS: PluginRegistry[type[Tier]] = PluginRegistry(
    "tier kind", TIERS_GROUP, field="tiers", how="register_tier('KIND', TierClass)", coerce=_tier_plugin,
    builtins={
        "linear": "frontdesk.tiers.linear:LinearTier",
        "rules": "frontdesk.tiers.rules:RulesTier",
        "llm": "frontdesk.tiers.llm:LLMTier",
        "encoder": "frontdesk.tiers.encoder:EncoderTier",
        "ensemble": "frontdesk.tiers.ensemble:EnsembleTier",
        "clauses": "frontdesk.tiers.clauses:ClauseTier",
    },
)
"""Tier kinds by name: the built-ins, those registered in code, and installed packages' ``frontdesk.tiers``."""


def register_tier(kind: str, cls: type[Tier], *, replace: bool = False) -> None:
    """Make a tier class available under ``kind`` (its class attribute ``kind``) for training and loading."""
    TIERS.register(kind, cls, replace=replace)


def unregister_tier(kind: str) -> None:
    """Forget a tier kind registered in code (tests; a built-in comes back on the next lookup)."""
    TIERS.unregister(kind)


def tier_class(kind: str) -> type[Tier]:
    """The class registered for ``kind``; built-in and installed tiers are imported on first use
    (their extras may be absent); an unknown kind is a :class:`ConfigError` listing the known ones."""
    return TIERS.get(kind)


def save_tier(tier: Tier, root: Path, rel: str) -> dict[str, str]:
    """Save ``tier`` into ``root/rel``; returns the manifest entry that :func:`load_tier` reads back."""
    (root / rel).mkdir(parents=True, exist_ok=True)
    tier.save(root / rel)
    return {"name": tier.name, "kind": tier.kind, "path": rel}


def load_tier(entry: dict[str, Any], root: Path, what: str = "tier") -> Tier:
    """The tier described by a :func:`save_tier` entry, loaded by its kind from ``root/entry["path"]``."""
    sub = root / entry["path"]
    if not sub.is_dir():
        raise ModelError(f"{what} directory {entry['path']} is missing: copy the whole model directory", path=root)
    return tier_class(entry["kind"]).load(sub, entry["name"])


def calibrated_tier_class(kind: str, *, field: str, what: str, instead: str) -> type[Tier]:
    """The class of ``kind`` when it is a calibrated model tier (ensemble members, the clause classifier);
    else a :class:`ConfigError` on ``field`` that names ``what`` the kind is for and what to use ``instead``."""
    try:
        cls = tier_class(kind)
    except ImportError as exc:
        raise ConfigError(f"{what} kind {kind!r} cannot be imported ({exc}): install its extra or {instead}", field=field) from exc
    if not cls.calibrated or cls.role != "model":
        raise ConfigError(f"{what} kind {kind!r} has no calibrated predict_proba over the label set: {instead}", field=field)
    return cls


def role_of_kind(kind: str) -> TierRole | None:
    """The role of tier kind ``kind`` (imports its class), or None when it is not available here."""
    try:
        return tier_class(kind).role
    except (ConfigError, ImportError):
        return None


def available_tiers() -> list[str]:
    """Tier kinds that can be named in ``--tiers``: built-in, registered and installed (not imported)."""
    return TIERS.names()
