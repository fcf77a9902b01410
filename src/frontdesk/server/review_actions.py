"""The service side of actions: run them after the commit, release held ones through the review API.

Kept apart from :mod:`frontdesk.server.app` so the HTTP layer only calls two functions:
:func:`run_actions` after a route request's decisions are committed, and :func:`resolve_review`
for ``POST /v1/review/{id}`` — which, for a decision whose action is held (``requires_human``, or
``on_review: hold``), needs the reviewer's verdict: ``"action": "approve"`` runs it (once),
``"reject"`` never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from frontdesk.errors import FrontdeskError
from frontdesk.pipeline import Pipeline, Routed
from frontdesk.server.metrics import Metrics
from frontdesk.store.store import ReviewItem, Store, StoreError
from frontdesk.types import Decision


class ReviewActionError(FrontdeskError):
    """A review request the actions cannot accept; ``status`` and ``kind`` are the HTTP error to answer."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


def run_actions(results: Sequence[Routed], pipeline: Pipeline, store: Store) -> None:
    """Run the pending actions of committed decisions (the store is the ledger: at most once each)."""
    for routed in results:
        if routed.decision.actions:
            pipeline.run_actions(routed, store)


def resolve_review(store: Store, pipeline: Pipeline, decision: Decision, labels: list[str], *, reviewer: str | None,
                   action: Literal["approve", "reject"] | None, note: str | None = None,
                   metrics: Metrics | None = None) -> ReviewItem:
    """Resolve a review item and give the decision's held actions the reviewer's verdict.

    A decision with held actions needs ``action``; without held actions, ``action`` is ignored.
    Approving runs the actions of the confirmed labels once (a relabelled message runs its new label's
    action; the old label's is cancelled). Repeating an approval after the review was resolved (a
    retry after a lost answer) releases what is still held, and runs nothing twice.
    """
    held = [a.name for a in decision.actions if a.status == "held"]
    if held and action is None:
        raise ReviewActionError(422, "action_required",
                                f"decision {decision.id} holds action(s) {held} until a reviewer decides: send "
                                "\"action\": \"approve\" (run it) or \"reject\" (never run it) with the labels")
    try:
        item = store.resolve_review(decision.id, labels, reviewer=reviewer, note=note)
    except StoreError as exc:
        if not (held and action is not None and "already resolved" in str(exc)):
            raise ReviewActionError(409, "conflict", str(exc)) from exc
        item = store.review_item(decision.id)
        if item is None:
            raise ReviewActionError(409, "conflict", str(exc)) from exc
    if not held:
        return item
    actions = pipeline.actions.review(decision, store, approve=action == "approve", labels=item.labels or labels,
                                      reviewer=reviewer)
    if metrics is not None:  # the verdict's outcome counts like a route-time run (done, failed, rejected, cancelled)
        for a in actions:
            if a.name in held and a.status != "held":
                metrics.actions.labels(a.name, a.status).inc()
    return item.model_copy(update={"decision": item.decision.model_copy(update={"actions": actions})})
