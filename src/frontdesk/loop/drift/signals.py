"""What one decision contributes to drift: its primary-tier confidence, whether it is unknown or escalated."""

from __future__ import annotations

from collections.abc import Iterable

from frontdesk.types import Decision

NO_LABEL = "(none)"
"""The label-distribution bucket of decisions without any label."""


def primary_confidence(decision: Decision, primary_tier: str | None = None) -> float | None:
    """The confidence of the first model tier in the decision's trace (``primary_tier`` names it; by
    default the first entry of role ``model``: not a guardrail, intake, the LLM or human review). None when
    that tier did not answer (a guardrail rule routed the message, the tier failed)."""
    for entry in decision.trace:
        if primary_tier is not None:
            if entry.tier == primary_tier:
                return entry.confidence if entry.verdict != "error" else None
            continue
        if entry.role != "model":
            continue
        if entry.verdict == "error" or entry.confidence is None:
            return None
        return entry.confidence
    return None


def is_out_of_scope(decision: Decision) -> bool:
    """Whether a tier's out-of-scope detector called the message out of scope (its trace holds the unknown
    verdict with a score): decided as the unknown label, or sent to human review with reason 'out of scope'."""
    return any(t.verdict == "unknown" and t.oos_score is not None for t in decision.trace)


def is_unknown(decision: Decision, unknown_labels: Iterable[str] = ("oos", "unknown"), *,
               count_human_as_unknown: bool = False) -> bool:
    """Whether a decision counts as unknown: its first label is an unknown label, an out-of-scope detector
    called it out of scope (:func:`is_out_of_scope`, with or without an unknown label to send it to), or it
    went to human review (``tier == "human"``) with no label; with ``count_human_as_unknown`` any
    human-review decision counts."""
    if decision.labels and decision.labels[0] in set(unknown_labels):
        return True
    if is_out_of_scope(decision):
        return True
    if decision.tier == "human":
        return count_human_as_unknown or not decision.labels
    return False


def is_escalated(decision: Decision) -> bool:
    """Answered past the first model tier, human review included."""
    return decision.escalated or decision.tier == "human"
