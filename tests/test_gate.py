from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from frontdesk import ConfigError, GatePolicy, Objective, fit_gate
from frontdesk.gating.gate import apply_threshold


def test_three_bands() -> None:
    gate = GatePolicy(threshold=0.5, flag_threshold=0.8)
    assert gate.judge([("a", 0.9), ("b", 0.05)]).verdict == "accept"
    flagged = gate.judge([("a", 0.6), ("b", 0.1)])
    assert flagged.verdict == "flag" and "review band [0.50, 0.80)" in flagged.reason
    esc = gate.judge([("a", 0.41), ("b", 0.3)])
    assert esc.verdict == "escalate" and esc.reason == "confidence 0.41 for 'a' < threshold 0.50"
    assert esc.labels == ["a"] and esc.confidence == pytest.approx(0.41)


def test_per_label_threshold_overrides_global() -> None:
    gate = GatePolicy(threshold=0.5, label_thresholds={"legal": 0.95})
    res = gate.judge([("legal", 0.9), ("other", 0.1)])
    assert res.verdict == "escalate" and "label threshold 0.95" in res.reason
    assert gate.judge([("other", 0.9), ("legal", 0.1)]).verdict == "accept"


def test_margin_rule_escalates_ambiguous() -> None:
    gate = GatePolicy(threshold=0.3, min_margin=0.1)
    res = gate.judge([("refund", 0.46), ("billing", 0.41), ("x", 0.13)])
    assert res.verdict == "escalate" and res.reason.startswith("ambiguous: margin 0.05 between 'refund' (0.46) and 'billing' (0.41)")
    assert gate.judge([("refund", 0.56), ("billing", 0.31)]).verdict == "accept"


def test_multi_label_gate_accepts_every_label_over_its_threshold() -> None:
    gate = GatePolicy(threshold=0.3, flag_threshold=0.5, multi_label=True, label_thresholds={"b": 0.7})
    res = gate.judge([("a", 0.9), ("b", 0.75), ("c", 0.4)])
    # set confidence = 0.9 (a in) * 0.75 (b in) * 0.6 (c out)
    assert res.verdict == "flag" and res.labels == ["a", "b"] and res.confidence == pytest.approx(0.405)
    assert gate.judge([("a", 0.99), ("b", 0.98), ("c", 0.01)]).verdict == "accept"
    none = gate.judge([("b", 0.65), ("a", 0.3)])
    assert none.verdict == "escalate" and none.reason == "no label reached its threshold: best 'b' 0.65 < 0.70"
    low = GatePolicy(threshold=0.8, multi_label=True).judge([("a", 0.6), ("b", 0.45)])
    assert low.verdict == "escalate" and low.labels == ["a"] and "set confidence 0.33" in low.reason


def test_invalid_policies() -> None:
    with pytest.raises(ValidationError, match="flag_threshold"):
        GatePolicy(threshold=0.8, flag_threshold=0.5)
    with pytest.raises(ValidationError):
        GatePolicy(threshold=1.5)
    with pytest.raises(ValidationError):
        GatePolicy(threshhold=0.5)  # typo: unknown fields are rejected, not ignored
    with pytest.raises(ConfigError, match=r"unknown label\(s\) \['nope'\]"):
        GatePolicy(label_thresholds={"nope": 0.5}).check_labels(["a", "b"])
    with pytest.raises(ValidationError, match="not both"):
        Objective(target_accuracy=0.9, max_escalation=0.2)


def _synthetic(n: int = 3000, seed: int = 1) -> tuple[np.ndarray, list[tuple[str, ...]], list[str]]:
    """Probabilities where higher confidence really means more likely correct."""
    rng = np.random.default_rng(seed)
    labels = ["a", "b", "c", "d"]
    conf = rng.uniform(0.25, 1.0, n)
    truth = rng.integers(0, 4, n)
    correct = rng.uniform(size=n) < conf
    pred = np.where(correct, truth, (truth + rng.integers(1, 4, n)) % 4)
    probs = np.full((n, 4), 0.0)
    for i in range(n):
        probs[i] = (1 - conf[i]) / 3
        probs[i, pred[i]] = conf[i]
    return probs, [(labels[t],) for t in truth], labels


def test_fit_for_target_accuracy_meets_it_with_fewest_escalations() -> None:
    probs, y, labels = _synthetic()
    gate, curve = fit_gate(probs, y, labels, Objective(target_accuracy=0.9, fit_margin=False))
    conf = probs.max(1)
    correct = np.array([labels[p] in t for p, t in zip(probs.argmax(1), y)])
    esc, acc = apply_threshold(conf, correct, gate.threshold)
    assert acc >= 0.9 and curve.chosen.accepted_accuracy == pytest.approx(acc)
    # one step lower would break the target: the threshold is the lowest that reaches it
    lower = conf[conf < gate.threshold].max()
    assert apply_threshold(conf, correct, lower)[1] < 0.9 or apply_threshold(conf, correct, lower)[0] >= esc


def test_fit_for_escalation_budget() -> None:
    probs, y, labels = _synthetic()
    gate, curve = fit_gate(probs, y, labels, Objective(max_escalation=0.2, fit_margin=False))
    conf = probs.max(1)
    correct = np.array([labels[p] in t for p, t in zip(probs.argmax(1), y)])
    esc, acc = apply_threshold(conf, correct, gate.threshold)
    assert 0.18 <= esc <= 0.2
    assert acc > correct.mean()  # escalating the least confident raises accuracy on the rest
    assert [p.target_escalation for p in curve.standard] == [0.05, 0.1, 0.15, 0.2, 0.3]
    assert all(p.escalation_rate <= p.target_escalation + 1e-9 for p in curve.standard)


def test_per_label_fit_and_flag_band() -> None:
    probs, y, labels = _synthetic()
    gate, curve = fit_gate(probs, y, labels, Objective(max_escalation=0.25, per_label=True, flag_accuracy=0.97))
    assert set(gate.label_thresholds) == set(labels)
    assert curve.chosen.escalation_rate <= 0.25 + 1e-9
    assert gate.flag_threshold is not None and gate.flag_threshold > gate.threshold


def test_unreachable_target_is_reported_not_hidden() -> None:
    probs, y, labels = _synthetic()
    _, curve = fit_gate(probs, y, labels, Objective(target_accuracy=1.0, fit_margin=False))
    assert "not reachable" in curve.note or curve.chosen.accepted_accuracy == 1.0


def test_fit_needs_validation_examples() -> None:
    with pytest.raises(ConfigError, match="validation"):
        fit_gate(np.zeros((0, 3)), [], ["a", "b", "c"])
