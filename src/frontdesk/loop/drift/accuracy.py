"""Accepted accuracy measured in service: labelled decisions that a model tier accepted, per tier.

Feedback and review resolutions give the true labels of some decisions. For those a model tier
answered (its gate accepted or flagged the message) the monitor keeps whether the answer was right,
over the last ``window`` such labelled decisions; the estimate carries a two-sided Clopper–Pearson
interval (:func:`~frontdesk.gating.guarantee.accuracy_interval`). A decision labelled twice (feedback,
then a review) counts once, with its latest labels.

Selection bias: these labels are not a random sample of the traffic. Users mostly send corrections
and the review queue holds the flagged (least confident) decisions, so the measured accuracy is
biased *low* and the alert on it errs towards firing. Confirmations sent as feedback reduce the bias.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from frontdesk.gating.guarantee import accuracy_interval
from frontdesk.loop.drift.values import AcceptedAccuracy
from frontdesk.types import Decision

ALL_TIERS = "all"
"""The ``tier`` value of the estimate over every answering tier together."""


def accepting_tier(decision: Decision) -> str | None:
    """The model tier whose gate accepted (or flagged) the decision, None when none did (human review,
    a fallback to the unknown label, every tier failed)."""
    if decision.tier == "human":
        return None
    for entry in reversed(decision.trace):
        if entry.tier == decision.tier:
            return decision.tier if entry.verdict in ("accept", "flag") else None
    return None


class AcceptedAccuracyWindow:
    """The last ``window`` labelled accepted decisions: (tier, correct) by decision id, with running counts.

    Not thread-safe on its own: the drift monitor calls it under its lock.
    """

    def __init__(self, window: int) -> None:
        self.window = window
        self._items: OrderedDict[str, tuple[str, bool]] = OrderedDict()
        self._counts: dict[str, list[int]] = {}  # tier → [correct, labelled]
        self._anonymous = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, decision: Decision, labels: Sequence[str]) -> bool:
        """Record the true ``labels`` of ``decision``; False (nothing recorded) when no model tier accepted it."""
        tier = accepting_tier(decision)
        if tier is None:
            return False
        key = decision.id
        if not key:  # a decision without an id cannot be labelled twice
            self._anonymous += 1
            key = f"#{self._anonymous}"
        old = self._items.pop(key, None)
        if old is not None:
            self._count(*old, -1)
        correct = set(decision.labels) == set(labels)
        self._items[key] = (tier, correct)
        self._count(tier, correct, +1)
        while len(self._items) > self.window:
            _, (t, c) = self._items.popitem(last=False)
            self._count(t, c, -1)
        return True

    def _count(self, tier: str, correct: bool, step: int) -> None:
        for scope in (tier, ALL_TIERS):
            c = self._counts.setdefault(scope, [0, 0])
            c[0] += step * correct
            c[1] += step

    def estimate(self, tier: str, *, confidence: float, target: float | None = None) -> AcceptedAccuracy:
        """The estimate and interval for ``tier`` (or :data:`ALL_TIERS`); None values with no labels."""
        correct, n = self._counts.get(tier, (0, 0))
        if n == 0:
            return AcceptedAccuracy(tier=tier, labelled=0, correct=0, confidence=confidence, target=target)
        low, high = accuracy_interval(correct, n, confidence)
        return AcceptedAccuracy(tier=tier, labelled=n, correct=correct, estimate=correct / n, low=low, high=high,
                                confidence=confidence, target=target)

    def tiers(self) -> list[str]:
        """Tiers with labelled decisions in the window (:data:`ALL_TIERS` excluded)."""
        return sorted(t for t, (_, n) in self._counts.items() if n > 0 and t != ALL_TIERS)
