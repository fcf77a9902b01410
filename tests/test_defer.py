"""A gate hands the next local model tier the messages that tier judges better (``Objective.defer``)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from frontdesk import Dataset, Objective, Router
from frontdesk.evaluation.evaluate import evaluate
from frontdesk.gating.gate import defer_threshold, fit_gate
from frontdesk.tiers.base import Tier, register_tier, unregister_tier
from frontdesk.types import TierResult


# -- defer_threshold / fit_gate on known data -----------------------------------------------------------
def _pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confidences, this tier's correctness (right with probability = confidence) and a next tier right on 97 %."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.3, 1.0, n)
    return conf, rng.uniform(size=n) < conf, rng.uniform(size=n) < 0.97


def test_the_threshold_is_where_the_next_tier_stops_being_better() -> None:
    conf, mine, theirs = _pair(20_000, 0)
    t, pair_acc, keep_all = defer_threshold(conf, mine, theirs)
    # this tier is right with probability conf, the next one with 0.97: the break-even confidence is 0.97, and
    # the tolerance (0.1 % of validation) buys back the flat stretch just below it
    assert 0.9 < t < 0.995, t
    assert pair_acc > keep_all + 0.05
    accepted = conf >= t
    assert abs(pair_acc - np.where(accepted, mine, theirs).mean()) < 1e-12


def test_a_worse_next_tier_takes_nothing_and_a_perfect_one_takes_almost_everything() -> None:
    conf, mine, _ = _pair(5_000, 1)
    t, pair_acc, keep_all = defer_threshold(conf, mine, np.zeros(len(conf), dtype=bool))
    assert t == -np.inf and pair_acc == keep_all
    t, pair_acc, _ = defer_threshold(conf, mine, np.ones(len(conf), dtype=bool))
    assert t > 0.9 and pair_acc >= 0.999 - 1e-12  # within the tolerance (0.1 %) of all right


def test_fit_gate_raises_the_threshold_never_lowers_it_and_says_why() -> None:
    conf, mine, theirs = _pair(4_000, 2)
    labels = ["a", "b"]
    probs = np.c_[conf, 1 - conf]
    targets = [["a"] if ok else ["b"] for ok in mine]  # column a is right exactly where this tier is right
    plain, plain_curve = fit_gate(probs, targets, labels, Objective())
    deferred, curve = fit_gate(probs, targets, labels, Objective(), next_correct=theirs, next_tier="the encoder tier")
    assert deferred.threshold > plain.threshold + 0.1
    assert "raised from" in curve.note and "the encoder tier" in curve.note
    assert curve.chosen.escalation_rate > plain_curve.chosen.escalation_rate
    assert curve.chosen.accepted_accuracy > plain_curve.chosen.accepted_accuracy
    off, off_curve = fit_gate(probs, targets, labels, Objective(defer=False), next_correct=theirs)
    assert off == plain and "raised" not in off_curve.note
    # a next tier that is never right leaves the objective's threshold alone
    same, same_curve = fit_gate(probs, targets, labels, Objective(), next_correct=np.zeros(len(conf), dtype=bool))
    assert same == plain and "raised" not in same_curve.note
    # a stricter objective already above the break-even point is kept as it is
    strict, _ = fit_gate(probs, targets, labels, Objective(target_accuracy=0.995))
    kept, _ = fit_gate(probs, targets, labels, Objective(target_accuracy=0.995), next_correct=theirs)
    assert kept.threshold == strict.threshold


def test_per_label_thresholds_are_raised_too() -> None:
    conf, mine, theirs = _pair(6_000, 3)
    labels = ["a", "b"]
    probs = np.c_[conf, 1 - conf]
    targets = [["a"] if ok else ["b"] for ok in mine]
    obj = Objective(per_label=True, min_label_support=5)
    gate, _ = fit_gate(probs, targets, labels, obj, next_correct=theirs)
    t, _, _ = defer_threshold(conf, mine, theirs)
    assert gate.threshold >= t and all(v >= t for v in gate.label_thresholds.values())


# -- in a trained cascade -----------------------------------------------------------------------------------
class RecallTier(Tier):
    """A test model tier much better than TF-IDF on this data: it remembers every train and validation text
    (a stand-in for a fine-tuned encoder) and answers 0.9 for the remembered label."""

    kind = "recall_test"
    calibrated = True
    score_is_proba = True

    def __init__(self, name: str | None = None, params: object = None) -> None:
        super().__init__(name)
        self.memory: dict[str, str] = {}

    def fit(self, data: Dataset, progress: object = None) -> RecallTier:
        self.labels_ = data.labels
        self.memory = {ex.text: ex.labels[0] for ex in [*data.train, *data.validation]}
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        out = np.full((len(texts), len(self.labels_)), 0.1 / max(1, len(self.labels_) - 1))
        for i, text in enumerate(texts):
            out[i, self.labels_.index(self.memory.get(text, self.labels_[0]))] = 0.9
        return out

    def score(self, text: str, candidates: Sequence[str] | None = None) -> TierResult:
        p = self.predict_proba([text])[0]
        order = np.argsort(-p)[:3]
        return TierResult([(self.labels_[j], float(p[j])) for j in order])

    def save(self, path: Path) -> None:
        (path / "recall.json").write_text(json.dumps({"labels": list(self.labels_), "memory": self.memory}))

    @classmethod
    def load(cls, path: Path, name: str) -> RecallTier:
        tier = cls(name)
        state = json.loads((path / "recall.json").read_text())
        tier.labels_, tier.memory = tuple(state["labels"]), state["memory"]
        return tier


@pytest.fixture()
def recall_tier() -> Iterator[None]:
    register_tier("recall_test", RecallTier)
    yield
    unregister_tier("recall_test")


def test_the_cheap_tier_hands_the_better_tier_what_it_judges_better(recall_tier: None, support: Dataset, tmp_path: Path) -> None:
    on = Router.train(support, tiers=("linear", "recall_test"))
    off = Router.train(support, tiers=("linear", "recall_test"), objective=Objective(defer=False))
    assert on.gates["linear"].threshold > off.gates["linear"].threshold
    assert "raised from" in on.curves["linear"].note and "recall_test" in on.curves["linear"].note
    assert on.gates["recall_test"] == off.gates["recall_test"]  # the last model tier has nobody to defer to
    (with_defer, _), (without, _) = evaluate(on, support.validation), evaluate(off, support.validation)
    assert with_defer.accuracy > without.accuracy
    assert with_defer.tier_share.get("recall_test", 0.0) > without.tier_share.get("recall_test", 0.0)
    # the raised gate is what the saved model carries
    assert Router.load(on.save(tmp_path / "m")).gates["linear"].threshold == on.gates["linear"].threshold


def test_adding_a_better_tier_to_a_trained_model_refits_the_gate_before_it(recall_tier: None, support: Dataset) -> None:
    alone = Router.train(support, tiers=("linear",))
    joined = alone.with_tier(RecallTier("recall_test"), data=support)
    assert [t.name for t in joined.tiers] == ["linear", "recall_test"]
    assert joined.gates["linear"].threshold > alone.gates["linear"].threshold
    assert "raised from" in joined.curves["linear"].note
    assert alone.gates["linear"].threshold == Router.train(support, tiers=("linear",)).gates["linear"].threshold  # a copy
    no_defer = Router.train(support, tiers=("linear",), objective=Objective(defer=False))
    kept = no_defer.with_tier(RecallTier("recall_test"), data=support)
    assert kept.gates["linear"] == no_defer.gates["linear"]


def test_a_certified_gate_is_never_moved(recall_tier: None, support: Dataset) -> None:
    objective = Objective(target_accuracy=0.9, guarantee=0.9, on_uncertified="plain")
    certified = Router.train(support, tiers=("linear", "recall_test"), objective=objective)
    alone = Router.train(support, tiers=("linear",), objective=objective)
    assert certified.gates["linear"].threshold == alone.gates["linear"].threshold
    assert "raised" not in certified.curves["linear"].note
    assert certified.curves["linear"].guarantee is not None
