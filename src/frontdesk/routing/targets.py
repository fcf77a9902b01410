"""Routing targets: what happens to a Decision once its labels are known.

Each label maps to (a) a **queue** with a priority and an SLA (a team queue router), (b) an
optional cap on the **tools** an agent gets for it (see :mod:`frontdesk.routing.tools`) and (c) a **model
tier** (``simple`` / ``reasoning`` / ``tool_use`` → a model name). :func:`fan_out` turns one
Decision into one :class:`RoutedTarget` per label, all linked by ``parent_id`` (the Decision id);
sinks (:mod:`frontdesk.routing.sinks`) deliver them.

The extract stage's signals adjust targets (``targets.signals``, :class:`SignalPolicy`): an urgent
message gets a more urgent priority and a shorter SLA, and a very negative message or a legal/abuse
guardrail can set ``requires_human`` (its action then waits for a reviewer). Targets carry the
decision's fields (masked: PII as placeholders), urgency and sentiment to the queue.

Two fallbacks keep hard cases safe: a decision no model was confident about (``tier == "human"``)
goes to the review queue as a single target carrying the best guess, and any target whose
confidence is below ``low_confidence`` (or that went to a human) gets the most capable model tier.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from frontdesk.errors import ConfigError, validation_message
from frontdesk.types import Decision

if TYPE_CHECKING:
    from frontdesk.routing.tools import Tool, ToolCatalog


class QueueRoute(BaseModel):
    """A team queue: its name, priority (1 = most urgent … 5) and SLA in minutes (None = no SLA)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str = Field(min_length=1, description="queue name, e.g. 'billing'")
    priority: int = Field(3, ge=1, le=5, description="1 = most urgent, 5 = least")
    sla_minutes: int | None = Field(None, ge=1, description="minutes until the target is due; None = no SLA")


class LabelTarget(BaseModel):
    """Where one label goes. Every field is optional: unset ones fall back to the config's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: QueueRoute | None = Field(None, description="None = the config's default_queue")
    model_tier: str | None = Field(None, description="a key of model_tiers; None = default_model_tier")
    tools_max: int | None = Field(None, ge=1, description="cap on the tools handed to an agent; None = no cap")


UrgencyLevel = Literal["low", "normal", "high", "critical"]


class RequiresHuman(BaseModel):
    """When a decision needs a person before any action runs (it also gets a review item)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    very_negative: bool = Field(False, description="the customer is very negative (anger, insults, legal threats)")
    rules: list[str] = Field(default_factory=list, description="labels of guardrail rules (e.g. legal_or_complaint, abuse) "
                             "that require a human when they fire")
    urgency: list[UrgencyLevel] = Field(default_factory=list, description="urgency levels that require a human")


class SignalPolicy(BaseModel):
    """How urgency and sentiment change a target: priority up, SLA down, requires_human.

    ``priority`` and ``sla_minutes`` are caps per urgency level: a ``critical`` message with
    ``priority: {critical: 1}`` gets priority 1 whatever its label's route says, and its SLA is at
    most ``sla_minutes.critical``. Nothing is ever made less urgent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: dict[UrgencyLevel, int] = Field(default_factory=dict, description="urgency → most urgent priority allowed (1–5)")
    sla_minutes: dict[UrgencyLevel, int] = Field(default_factory=dict, description="urgency → longest SLA allowed (minutes)")
    very_negative_priority: int | None = Field(None, ge=1, le=5, description="priority cap for very negative messages")
    requires_human: RequiresHuman = Field(default_factory=RequiresHuman)

    @model_validator(mode="after")
    def _ranges(self) -> SignalPolicy:
        bad = {k: v for k, v in self.priority.items() if not 1 <= v <= 5}
        if bad:
            raise ValueError(f"priority: {bad}: priorities are 1 (most urgent) … 5")
        bad = {k: v for k, v in self.sla_minutes.items() if v < 1}
        if bad:
            raise ValueError(f"sla_minutes: {bad}: an SLA is at least 1 minute")
        return self

    def requires_human_reason(self, decision: Decision, rule_labels: Sequence[str] = ()) -> str | None:
        """Why ``decision`` requires a human under this policy (None: it does not)."""
        rh = self.requires_human
        tone = decision.sentiment
        if rh.very_negative and tone is not None and tone.very_negative:
            return f"very negative sentiment ({tone.score:+.2f})"
        fired = [label for label in rule_labels if label in rh.rules]
        if fired:
            return f"guardrail rule {fired[0]!r} fired"
        if decision.urgency is not None and decision.urgency in rh.urgency:
            return f"urgency {decision.urgency}"
        return None

    def adjust(self, route: QueueRoute, decision: Decision) -> QueueRoute:
        """``route`` made at least as urgent as the decision's urgency and sentiment ask."""
        priority, sla = route.priority, route.sla_minutes
        if decision.urgency in self.priority:
            priority = min(priority, self.priority[decision.urgency])  # type: ignore[index]
        if self.very_negative_priority is not None and decision.sentiment is not None and decision.sentiment.very_negative:
            priority = min(priority, self.very_negative_priority)
        if decision.urgency in self.sla_minutes:
            cap = self.sla_minutes[decision.urgency]  # type: ignore[index]
            sla = cap if sla is None else min(sla, cap)
        if (priority, sla) == (route.priority, route.sla_minutes):
            return route
        return route.model_copy(update={"priority": priority, "sla_minutes": sla})


def _default_tiers() -> dict[str, str]:
    return {"simple": "small-model", "reasoning": "large-model", "tool_use": "tool-model"}


class TargetsConfig(BaseModel):
    """The label → target table plus the defaults and fallbacks (load with :meth:`load` / :meth:`parse`).

    ``low_confidence``: a target whose confidence is below it (or whose decision went to human
    review) is served by ``most_capable_tier`` whatever its label says — a cheap model should not
    get the messages the classifier itself was unsure about.
    """

    model_config = ConfigDict(extra="forbid")

    labels: dict[str, LabelTarget] = Field(default_factory=dict)
    default_queue: QueueRoute = Field(default_factory=lambda: QueueRoute(queue="triage", priority=3))
    review_queue: QueueRoute = Field(default_factory=lambda: QueueRoute(queue="human-review", priority=2))
    model_tiers: dict[str, str] = Field(default_factory=_default_tiers, min_length=1)
    default_model_tier: str = "simple"
    most_capable_tier: str = "reasoning"
    low_confidence: float = Field(0.6, ge=0.0, le=1.0)
    signals: SignalPolicy = Field(default_factory=SignalPolicy)

    @model_validator(mode="after")
    def _check_tiers(self) -> TargetsConfig:
        known = ", ".join(sorted(self.model_tiers))
        refs = [("default_model_tier", self.default_model_tier), ("most_capable_tier", self.most_capable_tier)]
        refs += [(f"labels.{label}.model_tier", t.model_tier) for label, t in self.labels.items() if t.model_tier is not None]
        for field, tier in refs:
            if tier not in self.model_tiers:
                raise ValueError(f"{field}: unknown model tier {tier!r}; add it to model_tiers or use one of: {known}")
        for tier, model in self.model_tiers.items():
            if not model.strip():
                raise ValueError(f"model_tiers.{tier}: the model name is empty")
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> TargetsConfig:
        """Validate a mapping (e.g. the ``targets:`` section of a config file); ConfigError on a bad field."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"expected a mapping of settings, got {type(data).__name__}", field="targets")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(validation_message(exc), field="targets") from exc

    @classmethod
    def load(cls, path: str | Path) -> TargetsConfig:
        """Read a JSON or YAML file (the whole file, or its ``targets`` key)."""
        p = Path(path)
        try:
            raw = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {p} ({exc.strerror}): check the path", field="targets") from exc
        try:
            data = json.loads(raw) if p.suffix.lower() == ".json" else yaml.safe_load(raw)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{p} is not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {exc}", field="targets") from exc
        if isinstance(data, Mapping) and isinstance(data.get("targets"), Mapping):
            data = data["targets"]
        return cls.parse(data or {})

    def target_for(self, label: str | None) -> LabelTarget:
        """The configured target of ``label`` (an empty one, i.e. all defaults, when unlisted)."""
        return self.labels.get(label, _EMPTY) if label is not None else _EMPTY

    def model_tier_for(self, label: str | None, confidence: float, *, human: bool = False) -> str:
        """The model tier for a target: the label's (or the default), or the most capable on low confidence."""
        if human or confidence < self.low_confidence:
            return self.most_capable_tier
        return self.target_for(label).model_tier or self.default_model_tier


_EMPTY = LabelTarget()


class RoutedTarget(BaseModel):
    """One delivery unit: a label of a Decision with its queue, SLA and model (JSON-serialisable).

    ``id`` is ``"{parent_id}:{i}"`` — stable for a given decision, so a sink can use it as an
    idempotency key and a receiver can drop repeats. ``tools`` is filled only when :func:`fan_out`
    is given a tool catalogue.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    parent_id: str
    label: str | None
    queue: str
    priority: int
    sla_minutes: int | None = None
    created_at: datetime
    due_at: datetime | None = None
    model_tier: str
    model: str
    needs_review: bool
    confidence: float
    text: str
    tools_max: int | None = None
    tools: list[str] | None = None
    fields: dict[str, Any] = Field(default_factory=dict, description="the decision's extracted fields, PII masked")
    urgency: UrgencyLevel | None = None
    sentiment: Literal["negative", "neutral", "positive"] | None = None
    requires_human: bool = False


def check_labels(config: TargetsConfig, labels: Sequence[str]) -> None:
    """Raise :class:`ConfigError` when the config routes labels the model does not know (typos, old labels)."""
    unknown = sorted(set(config.labels) - set(labels))
    if unknown:
        known = sorted(labels)
        raise ConfigError(
            f"targets set for unknown label(s) {unknown}; fix or remove them. Known labels: "
            + ", ".join(known[:20]) + (" …" if len(known) > 20 else ""),
            field="targets.labels",
        )


def _label_confidences(decision: Decision) -> dict[str, float]:
    """Per-label probabilities from the trace of the tier that answered (multi-label decisions)."""
    for trace in reversed(decision.trace):
        if trace.tier == decision.tier:
            return {s.label: s.score for s in trace.top}
    return {}


def fan_out(
    decision: Decision,
    config: TargetsConfig,
    *,
    catalog: ToolCatalog | None = None,
    rerank: Callable[[str, list[Tool]], list[float]] | None = None,
    fields: Mapping[str, Any] | None = None,
) -> list[RoutedTarget]:
    """One RoutedTarget per label of ``decision`` (in label order), linked by ``parent_id``.

    A decision that went to human review (``tier == "human"``) or carries no label becomes a single
    target in ``review_queue`` labelled with the best guess. ``decision.needs_review`` (flagged, or
    human) is carried on every target. A label's confidence is its probability in the answering
    tier's trace when there (multi-label decisions), else the decision's confidence; below
    ``config.low_confidence`` the target gets ``most_capable_tier``. With ``catalog`` each target
    also lists the tools selected for its label (capped at the label's ``tools_max``). Urgency and
    sentiment adjust priority and SLA by ``config.signals``; ``fields`` (default: the decision's) are
    copied onto every target — pass the masked view when the decision keeps PII.
    """
    human = decision.tier == "human" or not decision.labels
    if human:
        plan: list[tuple[str | None, QueueRoute, float]] = [
            (decision.label, config.review_queue, decision.confidence)
        ]
    else:
        per_label = _label_confidences(decision) if len(decision.labels) > 1 else {}
        plan = [
            (label, config.target_for(label).queue or config.default_queue, per_label.get(label, decision.confidence))
            for label in dict.fromkeys(decision.labels)  # drop repeats, keep order
        ]
    out = []
    shared_fields = dict(decision.fields if fields is None else fields)
    for i, (label, route, confidence) in enumerate(plan):
        route = config.signals.adjust(route, decision)
        lt = config.target_for(label)
        tier = config.model_tier_for(label, confidence, human=human)
        tools = None
        if catalog is not None:
            chosen = catalog.select([label] if label else [], decision.text, max_tools=lt.tools_max, rerank=rerank)
            tools = [t.name for t in chosen]
        out.append(
            RoutedTarget(
                id=f"{decision.id}:{i}",
                parent_id=decision.id,
                label=label,
                queue=route.queue,
                priority=route.priority,
                sla_minutes=route.sla_minutes,
                created_at=decision.created_at,
                due_at=decision.created_at + timedelta(minutes=route.sla_minutes) if route.sla_minutes else None,
                model_tier=tier,
                model=config.model_tiers[tier],
                needs_review=decision.needs_review or human,
                confidence=confidence,
                text=decision.text,
                tools_max=lt.tools_max,
                tools=tools,
                fields=shared_fields,
                urgency=decision.urgency,
                sentiment=decision.sentiment.label if decision.sentiment is not None else None,
                requires_human=decision.requires_human,
            )
        )
    return out
