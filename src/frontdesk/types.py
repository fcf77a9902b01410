"""The small typed values that flow through frontdesk: messages in, tier results, decisions out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Urgency = Literal["low", "normal", "high", "critical"]
"""How soon a message needs an answer (see :mod:`frontdesk.intake.extract.signals`)."""

ActionStatus = Literal["pending", "held", "running", "done", "failed", "skipped", "rejected", "cancelled"]
"""Where a label's action stands: pending (will run), held (waits for a reviewer's approval), running,
done, failed (gave up; ``error`` says why), skipped (not run, ``reason`` says why: a human-review decision,
a duplicate), rejected (a reviewer said no), cancelled (a reviewer relabelled the message)."""

Verdict = Literal["accept", "flag", "escalate", "unknown", "error", "review"]
"""What the gate (or the router) made of one tier's answer.

accept: the tier's labels stand. flag: they stand but a human should look (middle band).
escalate: unsure between known labels — or possibly none of them fits (out of scope) and a later
model tier can judge that — try the next tier. unknown: none of the known labels fits (the tier's
out-of-scope detector), or no tier was confident and ``fallback: unknown`` maps such messages to the
unknown label. error: the tier failed (reason says why). review: the human tier.
"""

TierRole = Literal["guardrail", "model", "llm", "human"]
"""What a tier is for in the cascade (declared by the tier class; see :mod:`frontdesk.tiers.base`)."""

TraceRole = Literal["intake", "guardrail", "model", "llm", "human"]
"""The role of a trace entry: a tier's role, or ``intake`` for what happened before the tiers (language check)."""

#: roles of trace entries stored before entries carried their role (by the kind they were written with)
_ROLE_BEFORE_ROLES: dict[str, str] = {"preprocess": "intake", "rules": "guardrail", "llm": "llm", "human": "human"}


class Message(BaseModel):
    """One inbound message. Only ``text`` is required."""

    model_config = ConfigDict(frozen=True)

    text: str
    sender: str | None = None
    channel: str | None = None
    language: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


@dataclass(slots=True)
class TierResult:
    """What a tier returns for one message: label scores (best first) plus what the call cost.

    ``ranked`` holds (label, probability) pairs sorted by probability, at least the top few; for a
    single-label tier the probabilities are calibrated over the whole label set. ``oos`` holds the
    tier's out-of-scope columns for the message (:mod:`frontdesk.gating.oos`) when it computes its own.
    """

    ranked: list[tuple[str, float]]
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    tokens: dict[str, int] = field(default_factory=dict)
    rationale: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    oos: dict[str, float] | None = None


class LabelScore(BaseModel):
    """One label with its probability."""

    model_config = ConfigDict(frozen=True)

    label: str
    score: float


class TierTrace(BaseModel):
    """What happened at one tier: its top-k scores, the gate's verdict and why, cost and latency."""

    tier: str
    kind: str
    role: TraceRole = Field("model", description="what the entry's tier is for: intake (before the tiers), guardrail, "
                                                 "model, llm or human — code decides on this, ``kind`` is for people")
    verdict: Verdict
    labels: list[str] = Field(default_factory=list)
    confidence: float | None = None
    margin: float | None = None
    top: list[LabelScore] = Field(default_factory=list)
    reason: str = ""
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    tokens: dict[str, int] = Field(default_factory=dict)
    rationale: str | None = None
    outcome: str | None = Field(
        None, description="LLM tier only: whose label the acceptance policy kept — llm (the LLM overruled the classifier), "
                          "agree, guess (the classifier's guess kept), none (no candidate fit), injection (held for review)")
    fields: dict[str, Any] | None = Field(None, description="fields the tier extracted (LLM tier: the label's extract_schema)")
    field_notes: list[str] | None = Field(None, description="why extracted values were dropped (invalid, not in the schema)")
    oos_score: float | None = Field(None, description="the tier's out-of-scope score in [0, 1] (share of in-scope "
                                    "validation messages that look more in scope), when it has a detector")
    oos_threshold: float | None = Field(None, description="the score at or above which the message is out of scope")

    @model_validator(mode="before")
    @classmethod
    def _role_of_old_entries(cls, data: Any) -> Any:
        """An entry stored before entries carried a role gets the role its kind had then."""
        if isinstance(data, dict) and "role" not in data and data.get("kind") in _ROLE_BEFORE_ROLES:
            return {**data, "role": _ROLE_BEFORE_ROLES[data["kind"]]}
        return data


class Sentiment(BaseModel):
    """The customer's tone: a label, the lexicon's compound score in [-1, 1] and whether it is very negative
    (anger, insults, shouting, legal threats)."""

    model_config = ConfigDict(frozen=True)

    label: Literal["negative", "neutral", "positive"]
    score: float = Field(0.0, ge=-1.0, le=1.0)
    very_negative: bool = False


class ActionResult(BaseModel):
    """One label's action on a decision and what became of it (the store keeps the live state)."""

    name: str = Field(description="the action's name (labels.<label>.action)")
    label: str | None = Field(None, description="the label whose action this is")
    status: ActionStatus
    reason: str = ""
    result: Any = Field(None, description="what the action returned (JSON)")
    error: str | None = None
    attempts: int = 0
    updated_at: datetime | None = None


class PiiRecord(BaseModel):
    """The original values behind a decision's placeholders; stored only with ``extract.store_pii: true``."""

    placeholders: dict[str, str] = Field(default_factory=dict, description="'<EMAIL_1>' → 'a@b.com' as written")
    fields: dict[str, Any] = Field(default_factory=dict, description="the fields with their original values (E.164 phones …)")


def _new_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Decision(BaseModel):
    """The single result of routing a message (JSON-serialisable with ``model_dump_json``).

    ``labels`` is what to act on. When ``tier == "human"`` no model was confident: the message
    waits for human review and ``labels`` is the best guess of the last tier that answered.
    ``escalated`` is true when the message went past the first tier; ``flagged`` when it was
    accepted in the review band or handed to a human. ``reason`` says why, with the numbers.
    ``latency_ms`` is wall time from receipt to decision (for a batch: from the batch's start);
    each tier's own time is in its trace entry.
    """

    id: str = Field(default_factory=_new_id)
    text: str
    labels: list[str]
    confidence: float
    tier: str
    escalated: bool
    flagged: bool
    reason: str = ""
    truncated: bool = False
    trace: list[TierTrace] = Field(default_factory=list)
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    created_at: datetime = Field(default_factory=_now)
    message: Message | None = None
    language: str | None = Field(None, description="detected language (ISO 639-1) when preprocessing ran")
    original_text: str | None = Field(None, description="the text as received, when preprocessing changed it")
    duplicate_of: str | None = Field(None, description="id of the earlier decision this one repeats (dedup window)")
    fields: dict[str, Any] = Field(default_factory=dict, description="extracted fields, PII as placeholders: rule fields "
                                   "(amounts, dates, ids …, each a list) and, when the LLM tier answered, the label's schema fields")
    sentiment: Sentiment | None = Field(None, description="the customer's tone (extract stage)")
    urgency: Urgency | None = Field(None, description="how soon it needs an answer (extract stage)")
    requires_human: bool = Field(False, description="a person must look before any action runs (sentiment/rule policy)")
    actions: list[ActionResult] = Field(default_factory=list, description="the labels' actions and their state")
    pii: PiiRecord | None = Field(None, description="original values behind the placeholders; kept only with extract.store_pii")

    @property
    def label(self) -> str | None:
        """The first (most confident) label, or None when there is none."""
        return self.labels[0] if self.labels else None

    @property
    def needs_review(self) -> bool:
        """True when a human should look at this decision (review band, human tier, or requires_human)."""
        return self.flagged or self.tier == "human" or self.requires_human
