"""The request and response bodies of the HTTP API (they are also its OpenAPI schema).

Request models forbid unknown fields (a typo such as ``"txt"`` is a 422 that names it, not a
silently ignored field) and bound every string a client controls. What JSON itself cannot
express safely — lone surrogates, NaN, deep nesting, huge integers — is refused earlier, by the
body parser (:mod:`frontdesk.server.body`), so every accepted request is storable and serialisable.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from frontdesk.routing.targets import RoutedTarget
from frontdesk.store.store import Feedback, ReviewItem
from frontdesk.types import Decision

MAX_ID_CHARS = 256
"""Sender, channel, actor, reviewer and decision ids: at most this many characters."""
MAX_LABELS = 64

ShortText = Annotated[str, StringConstraints(max_length=MAX_ID_CHARS)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=200)]


def _distinct(labels: list[str]) -> list[str]:
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise ValueError(f"labels repeat {repeated}: give each label once")
    return labels


Labels = Annotated[
    list[Label],
    Field(min_length=1, max_length=MAX_LABELS, json_schema_extra={"uniqueItems": True},
          description="the correct labels, each once (the model's label names)"),
    AfterValidator(_distinct),
]


class RouteRequest(BaseModel):
    """One message to route."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        min_length=1, json_schema_extra={"pattern": r"\S"},
        description="the message text; must contain a non-whitespace character. Only the first max_chars "
        "characters are read (then the decision says truncated: true)",
    )
    sender: ShortText | None = Field(None, description="sender id: enables dedup within the window")
    channel: ShortText | None = Field(None, description="e.g. email, chat, web")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="free-form JSON stored with the decision (the body nests at most 32 levels)"
    )


class BatchRequest(BaseModel):
    """Several messages, decided and committed together."""

    model_config = ConfigDict(extra="forbid")

    messages: list[RouteRequest] = Field(min_length=1, description="at most server.max_batch messages (else 413)")


class TargetOut(RoutedTarget):
    """A routed target as the API returns it: without ``text`` (it is the decision's ``text``)."""

    text: str | None = Field(None, description="omitted in API responses: the text is decision.text (sinks receive it)")


class RouteResponse(BaseModel):
    """The committed decision, its targets (already handed to the sinks) and delivery problems."""

    decision: Decision
    targets: list[TargetOut]
    delivery_errors: list[str] = Field(default_factory=list)


class BatchResponse(BaseModel):
    results: list[RouteResponse]


class FeedbackRequest(BaseModel):
    """A human re-route or confirmation: the correct labels of a decision."""

    model_config = ConfigDict(extra="forbid")

    decision_id: ShortText
    labels: Labels
    actor: ShortText | None = None
    note: Annotated[str, StringConstraints(max_length=10_000)] | None = None


class ResolveRequest(BaseModel):
    """A reviewer's labels for a decision in the review queue."""

    model_config = ConfigDict(extra="forbid")

    labels: Labels
    reviewer: ShortText | None = None
    action: Literal["approve", "reject"] | None = Field(
        None, description="verdict on the decision's held action: approve runs it (once), reject never does")


class ReviewList(BaseModel):
    items: list[ReviewItem]
    depth: int


class ReloadResponse(BaseModel):
    status: str
    gates: dict[str, dict[str, Any]]
    labels: int
    version: int | None = Field(None, description="the config version announced to the other replicas (shared: only)")


class Health(BaseModel):
    status: str


class SharedStatus(BaseModel):
    """This replica's view of the shared state (``shared:`` in frontdesk.yaml)."""

    redis: str = Field(description="ok | unreachable (then the replica carries on alone: no cross-replica dedup, cache, reloads)")
    config_version: int | None = Field(description="the newest reload version this replica has seen")
    config_digest: str | None = Field(description="SHA-256 of the config file it runs (equal on every replica in sync)")


class Ready(BaseModel):
    status: str
    review_depth: int
    tiers: list[str]
    labels: int
    shared: SharedStatus | None = None


__all__ = [
    "BatchRequest", "BatchResponse", "Feedback", "FeedbackRequest", "Health", "Ready", "ReloadResponse",
    "ResolveRequest", "ReviewItem", "ReviewList", "RouteRequest", "RouteResponse", "SharedStatus", "TargetOut",
]
