"""The tier interface: every tier (rules, linear, encoder, LLM, …) plugs into the Router through it.

A tier turns text into label scores. *Model tiers* (linear, encoder) also expose calibrated
``predict_proba`` over the whole label set, which the Router uses to fit the tier's gate on
validation data. Tiers that only look at candidates (an LLM) receive the labels that earlier
tiers proposed through ``candidates``.

New tier kinds register with :func:`register_tier` (or by an entry in ``_BUILTIN``) so that saved
models can name them by ``kind`` and the Router never changes.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ValidationError

from frontdesk.common.progress import Progress
from frontdesk.data.dataset import Dataset
from frontdesk.errors import ConfigError, ModelError, NotFittedError, validation_message
from frontdesk.gating.gate import GatePolicy
from frontdesk.types import TierResult


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
    """Base class of all tiers. Subclasses set ``kind`` and implement score / save / load."""

    kind: ClassVar[str]
    #: True for tiers whose ``predict_proba`` covers the full label set (their gates are fitted).
    calibrated: ClassVar[bool] = False

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


_BUILTIN: dict[str, str] = {
    "linear": "frontdesk.tiers.linear:LinearTier",
    "rules": "frontdesk.tiers.rules:RulesTier",
    "llm": "frontdesk.tiers.llm:LLMTier",
    "encoder": "frontdesk.tiers.encoder:EncoderTier",
    "ensemble": "frontdesk.tiers.ensemble:EnsembleTier",
    "clauses": "frontdesk.tiers.clauses:ClauseTier",
}
_REGISTRY: dict[str, type[Tier]] = {}


def register_tier(kind: str, cls: type[Tier]) -> None:
    """Make a tier class available under ``kind`` for training and loading."""
    _REGISTRY[kind] = cls


def tier_class(kind: str) -> type[Tier]:
    """The class registered for ``kind``; imports built-in tiers lazily (their extras may be absent)."""
    if kind not in _REGISTRY:
        target = _BUILTIN.get(kind)
        if target is None:
            known = sorted(set(_BUILTIN) | set(_REGISTRY))
            raise ConfigError(f"unknown tier kind {kind!r}: use one of {', '.join(known)}", field="tiers")
        module, attr = target.split(":")
        _REGISTRY[kind] = getattr(importlib.import_module(module), attr)
    return _REGISTRY[kind]


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


def available_tiers() -> list[str]:
    """Tier kinds that can be named in ``--tiers``."""
    return sorted(set(_BUILTIN) | set(_REGISTRY))
