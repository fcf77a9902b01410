"""Example frontdesk plug-ins, found through this package's entry points (see pyproject.toml).

* ``KeywordTier`` (tier kind ``keywords``): learns the words that, in the training data, almost
  always mean one label ("parcel" → shipping_status) and answers when a message contains one.
  Cheap, uncalibrated: put it before the linear tier (``--tiers keywords,linear``).
* ``ECHO`` (LLM provider ``echo``): answers the first candidate label, speaking to nothing
  external — a skeleton for a provider that calls your own model server.
* ``note`` (action ``note``): returns what it was called with — a skeleton for opening a ticket.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from frontdesk import ActionCall, Dataset, LLMRequest, LLMResponse, ModelError, ProviderInfo, ProviderSettings, Tier, TierResult
from frontdesk.tiers.base import parse_params

_WORD = re.compile(r"[a-z][a-z']+")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.casefold()))


class KeywordParams(BaseModel):
    """``--tier-param keywords.min_count=3`` and friends."""

    min_count: int = Field(3, ge=1, description="training messages a word must occur in")
    purity: float = Field(0.95, gt=0.5, le=1.0, description="share of those messages that carry the word's label")


class KeywordTier(Tier):
    """Answers with the label of the most telling keyword in the message (none: the message goes on)."""

    kind = "keywords"  # the entry point's name: saved models name the tier by it
    role = "model"  # a classifier over the model's labels (guardrail / model / llm / human)
    needs = frozenset()  # no candidates, descriptions or examples from the model

    def __init__(self, name: str | None = None, params: KeywordParams | dict[str, Any] | None = None) -> None:
        super().__init__(name)
        self.params = parse_params(KeywordParams, params, self.name)
        self.keywords: dict[str, tuple[str, float]] = {}

    def fit(self, data: Dataset, progress: Any = None) -> KeywordTier:
        seen: dict[str, Counter[str]] = defaultdict(Counter)
        for ex in data.train:
            for word in _words(ex.text):
                seen[word].update(ex.labels)
        self.keywords = {}
        for word, labels in seen.items():
            label, n = labels.most_common(1)[0]
            share = n / sum(labels.values())
            if n >= self.params.min_count and share >= self.params.purity:
                self.keywords[word] = (label, round(share, 4))
        self.labels_ = data.labels
        return self

    def score(self, text: str, candidates: Any = None) -> TierResult:
        self._check_fitted()
        votes: dict[str, float] = {}
        hits: dict[str, str] = {}
        for word in sorted(_words(text) & self.keywords.keys()):
            label, share = self.keywords[word]
            if share > votes.get(label, 0.0):
                votes[label], hits[label] = share, word
        ranked = sorted(votes.items(), key=lambda kv: (-kv[1], kv[0]))
        why = f"keyword {hits[ranked[0][0]]!r}" if ranked else "no keyword"
        return TierResult(ranked, rationale=why)

    def info(self) -> dict[str, Any]:
        return {"keywords": len(self.keywords)}

    def save(self, path: Path) -> None:
        state = {"params": self.params.model_dump(), "labels": list(self.labels_), "keywords": self.keywords}
        (path / "keywords.json").write_text(json.dumps(state, indent=1, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path, name: str) -> KeywordTier:
        try:
            state = json.loads((path / "keywords.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelError(f"keywords.json is missing or damaged ({exc}): retrain the model", path=path) from exc
        tier = cls(name, state["params"])
        tier.labels_ = tuple(state["labels"])
        tier.keywords = {w: (lab, share) for w, (lab, share) in state["keywords"].items()}
        return tier


class EchoProvider:
    """An LLM provider (``complete`` one request, ``close``) that answers the first candidate."""

    name = "echo"

    def __init__(self, model: str, confidence: float = 0.9) -> None:
        self.model, self.confidence = model, confidence

    def complete(self, request: LLMRequest) -> LLMResponse:
        label = next(c for c in request.allowed if c != "none")  # the schema's enum: candidates plus "none"
        answer = {"labels": [label], "confidence": self.confidence, "rationale": "echo"}
        return LLMResponse(json.dumps(answer), input_tokens=0, output_tokens=0, model=self.model)

    def close(self) -> None:
        pass


def make_echo(settings: ProviderSettings) -> EchoProvider:
    """The factory frontdesk calls with the ``llm:`` settings (``options`` are the provider's own)."""
    return EchoProvider(settings.model, **settings.options)


ECHO = ProviderInfo("echo", make_echo, default_model="echo-1", description="answers the first candidate (example plug-in)")


def note(call: ActionCall) -> dict[str, Any]:
    """An action: runs once per accepted decision whose label names it (``labels.<label>.action: note``)."""
    return {"noted": call.label, "decision": call.decision_id}
