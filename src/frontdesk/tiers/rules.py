"""Guardrail rules: keyword/regex rules that pre-route explicit signals before any model runs.

Seeds 002/003: "lawyer", "sue", threats of violence… must reach the legal/abuse queue even when the
classifier would call them a billing question. Matching is case- and diacritics-insensitive
("Advogado", "ADVOGADO" and "advogádo" are the same) and word-boundary aware ("sue" matches
"I will sue you" but not "issue" or "suede"); a keyword ending in ``*`` matches as a prefix
("lawyer*" → "lawyers"), whitespace inside a keyword matches any run of whitespace. ``patterns``
are regular expressions applied to the same folded text. The tier is not trained and not
calibrated: a matching rule scores its ``confidence`` (default 1.0); no match → no scores, so the
message simply goes on to the next tier.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from frontdesk.data.dataset import Dataset
from frontdesk.errors import ConfigError, ModelError
from frontdesk.gating.gate import GatePolicy
from frontdesk.types import TierResult
from frontdesk.tiers.base import Progress, Tier, TierContext, parse_params


def fold(text: str) -> str:
    """Casefold and strip diacritics: the form both rules and messages are matched in."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


class Rule(BaseModel):
    """Route to ``label`` when any keyword or pattern matches."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, description="the label a match routes to (may be one the model does not have, e.g. legal)")
    keywords: list[str] = Field(default_factory=list, description="words or phrases matched as whole words, case- and "
                                "accent-insensitive; a trailing * matches a prefix (lawyer*)")
    patterns: list[str] = Field(default_factory=list, description="regular expressions over the folded text")
    confidence: float = Field(1.0, gt=0.0, le=1.0, description="the confidence a match reports")

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"pattern {p!r} is not a valid regular expression: {exc}") from exc
        return patterns

    def regex(self) -> re.Pattern[str]:
        parts = []
        for kw in self.keywords:
            k = fold(kw.strip())
            prefix = k.endswith("*")
            body = r"\s+".join(re.escape(w) for w in k.rstrip("*").split())
            parts.append(rf"(?<!\w){body}" + (r"\w*" if prefix else r"(?!\w)"))
        parts += [f"(?:{p})" for p in self.patterns]
        if not parts:
            raise ConfigError(f"rule for {self.label!r} has no keywords and no patterns", field="rules")
        return re.compile("|".join(parts))


class RulesParams(BaseModel):
    """The rules of the tier, in priority order (the first matching rule ranks first)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list, description="the rules, in priority order (the first match ranks first)")
    cost_per_call_usd: float = Field(0.0, ge=0, description="cost reported per message this tier scores (for cost accounting)")


class RulesTier(Tier):
    """Keyword/regex guardrails; put it first in the cascade (``--tiers rules,linear``)."""

    kind = "rules"
    role = "guardrail"

    def __init__(self, name: str | None = None, params: RulesParams | dict[str, Any] | None = None) -> None:
        super().__init__(name)
        self.params = parse_params(RulesParams, params, self.name)
        self._compiled = [(r.label, r.confidence, r.regex()) for r in self.params.rules]

    def default_gate(self) -> GatePolicy:
        """A matching rule always routes (its confidence is the rule's own)."""
        return GatePolicy(threshold=0.0)

    def fit(self, data: Dataset, progress: Progress | None = None) -> RulesTier:
        """Nothing to learn; the label set is the data's plus any label only the rules use."""
        if not self.params.rules:
            raise ConfigError("the rules tier has no rules: pass tier_params={'rules': {'rules': [...]}}", field=f"tiers.{self.name}")
        self.labels_ = tuple(dict.fromkeys([*data.labels, *(r.label for r in self.params.rules)]))
        return self

    def attach(self, context: TierContext) -> None:
        """Joining a trained model: its labels plus any label only the rules use."""
        self.labels_ = tuple(dict.fromkeys([*context.labels, *(r.label for r in self.params.rules)]))

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        t0 = time.perf_counter()
        folded = fold(text)
        ranked: list[tuple[str, float]] = []
        matched: list[str] = []
        for label, conf, rx in self._compiled:
            m = rx.search(folded)
            if m and label not in {lab for lab, _ in ranked}:
                ranked.append((label, conf))
                matched.append(m.group(0))
        ranked.sort(key=lambda lp: -lp[1])
        rationale = f"matched {matched}" if matched else "no rule matched"
        return TierResult(ranked, cost_usd=self.params.cost_per_call_usd, latency_ms=(time.perf_counter() - t0) * 1e3, rationale=rationale)

    def save(self, path: Path) -> None:
        (path / "rules.json").write_text(json.dumps({"params": self.params.model_dump(), "labels": list(self.labels_)}, indent=2, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path, name: str) -> RulesTier:
        try:
            meta = json.loads((path / "rules.json").read_text(encoding="utf-8"))
            tier = cls(name, RulesParams(**meta["params"]))
            tier.labels_ = tuple(meta["labels"])
        except FileNotFoundError as exc:
            raise ModelError("rules.json is missing: re-save the model", path=path) from exc
        except (KeyError, json.JSONDecodeError, ValidationError) as exc:
            raise ModelError(f"rules.json is invalid ({exc}): re-save the model", path=path) from exc
        return tier
