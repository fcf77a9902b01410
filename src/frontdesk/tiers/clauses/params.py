"""Settings of the clause tier (``ClauseParams``) and its fixed constants."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

TOKEN = re.compile(r"\w+(?:['’&.\-]\w+)*|[^\w\s]")
"""A word (with inner apostrophes, hyphens, dots) or one punctuation mark."""
DEFAULT_JOINERS = ("and", ",", ";", "and then", "and also", "then", "also", "plus", "as well as")
EPS = 1e-9
CLIP = 1e-6
BOOTSTRAP_BLOCKS = [{"analyzer": "word", "ngram_range": [1, 2]}]
#: values tried for each unset decoding weight (α, δ)
WEIGHT_GRID = (0.125, 0.25, 0.5, 1.0, 2.0)


class ClauseParams(BaseModel):
    """Settings of the clause tier.

    The decoding weights α = 1, δ = 0.25 were the best on MixSNIPS validation (never test): the
    whole-message model only tips close calls, so it cannot veto a clearly split clause. With
    ``fit_weights`` every pair of ``WEIGHT_GRID`` is tried on validation and replaces them only
    when it decodes more validation sets exactly (ties go to the pair nearest the given one).
    ``joiners`` are matched case-insensitively on whole tokens, longest
    first; adjacent matches merge (", and then" is one candidate). Set them for other languages.
    """

    model_config = ConfigDict(extra="forbid")

    clause_tier: str = Field("linear", description="kind of the clause classifier: any calibrated single-label tier (linear, encoder, …)")
    clause_params: dict[str, Any] | None = Field(None, description="params of the clause classifier (None: its defaults)")
    message_params: dict[str, Any] | None = Field(None, description="params of the whole-message linear tier (None: its defaults)")
    joiners: list[str] = Field(default_factory=lambda: list(DEFAULT_JOINERS), min_length=1,
                               description="words / punctuation that may separate two clauses")
    max_clauses: int = Field(3, ge=1, le=6, description="most clauses (intents) per message")
    boundary_weight: float = Field(1.0, ge=0, description="α: weight of the boundary classifier's log-likelihood")
    message_weight: float = Field(0.25, ge=0, description="δ: weight of the whole-message one-vs-rest log-likelihood")
    fit_weights: bool = Field(True, description="try WEIGHT_GRID for α and δ on validation (exact match of the decoded set)")
    clause_top_k: int = Field(3, ge=1, description="labels tried per clause when decoding")
    distinct_labels: bool = Field(True, description="no two clauses of one message get the same label")
    boundary_C: float = Field(1.0, gt=0, description="inverse regularisation of the boundary classifier")
    max_segmentations: int = Field(128, ge=1, description="splits scored per message (the most likely boundaries first)")
    top_k: int = Field(10, ge=2, description="labels kept in each result (the gate and the LLM's candidates)")
    cost_per_call_usd: float = Field(0.0, ge=0, description="cost reported per message this tier scores (for cost accounting)")

    @field_validator("joiners")
    @classmethod
    def _joiners(cls, value: list[str]) -> list[str]:
        empty = [j for j in value if not TOKEN.findall(j)]
        if empty:
            raise ValueError(f"joiners {empty} contain no word or punctuation: give words like 'and' or punctuation like ','")
        return value

    @field_validator("clause_tier")
    @classmethod
    def _clause_tier(cls, value: str) -> str:
        if value == "clauses":
            raise ValueError("the clause classifier classifies single clauses: use a single-label kind such as linear or encoder")
        return value
