from __future__ import annotations

from pathlib import Path

import pytest

from frontdesk import Dataset, GatePolicy, Router, RouterSettings
from frontdesk.data.dataset import Example
from frontdesk.evaluation.evaluate import evaluate
from frontdesk.evaluation.report import write_html_report


def test_report_numbers_are_consistent(router: Router, support: Dataset) -> None:
    report, decisions = evaluate(router, support.test)
    assert report.n == len(support.test) == len(decisions)
    manual = sum(d.labels[0] == ex.labels[0] for d, ex in zip(decisions, support.test)) / report.n
    assert report.accuracy == pytest.approx(manual)
    assert sum(report.tier_share.values()) == pytest.approx(1.0)
    assert report.escalation_rate == pytest.approx(report.tier_share.get("human", 0.0))
    answered = [(d, ex) for d, ex in zip(decisions, support.test) if d.tier != "human"]
    assert report.accepted_accuracy == pytest.approx(sum(d.labels[0] == ex.labels[0] for d, ex in answered) / len(answered))
    assert 0 <= report.ece <= 1 and 0 < report.macro_f1 <= 1
    assert report.latency_ms.p50 <= report.latency_ms.p95 <= report.latency_ms.p99
    assert [p.target_escalation for p in report.operating_points] == [0.05, 0.1, 0.15, 0.2, 0.3]
    assert report.in_scope_accuracy is None and report.oos_recall is None
    keys = set(report.model_dump())
    assert {"accuracy", "macro_f1", "ece", "escalation_rate", "accepted_accuracy", "tier_share", "latency_ms", "operating_points"} <= keys


def test_oos_metrics(router: Router, support: Dataset) -> None:
    r = Router(router.tiers, {"linear": GatePolicy(threshold=0.999)}, RouterSettings(fallback="unknown", unknown_label="oos"))
    examples = list(support.test[:20]) + [Example("tell me a joke about penguins", ("oos",)), Example("what is 2+2", ("oos",))]
    report, decisions = evaluate(r, examples)
    assert report.oos_recall == 1.0  # a threshold of 0.999 sends nearly everything to 'oos'
    assert report.in_scope_accuracy is not None and report.in_scope_accuracy < 0.5
    assert all(d.labels == ["oos"] for d in decisions[-2:])


def test_html_report(router: Router, support: Dataset, tmp_path: Path) -> None:
    report, _ = evaluate(router, support.test)
    out = write_html_report(report, router, tmp_path / "r.html")
    html = out.read_text()
    assert html.count("data:image/png;base64,") == 2
    assert "Most confused label pairs" in html and "Per-label F1" in html and "accuracy on accepted" in html


def test_multi_intent_metrics_measure_lost_intents(router: Router) -> None:
    from frontdesk import Decision
    from frontdesk.evaluation.evaluate import report_from_decisions

    gold = [Example("a and b", ("refund_request", "cancel_subscription")), Example("a and c", ("refund_request", "shipping_status")),
            Example("b", ("cancel_subscription",)), Example("c", ("shipping_status",))]
    predicted = [["refund_request", "cancel_subscription"], ["refund_request"], ["cancel_subscription"], ["shipping_status", "billing_issue"]]
    decisions = [Decision(text=g.text, labels=p, confidence=0.9, tier="linear", escalated=False, flagged=False) for g, p in zip(gold, predicted)]
    report = report_from_decisions(router, gold, decisions)
    assert report.exact_match == pytest.approx(0.5) and report.accuracy == report.exact_match
    assert report.multi_intent_exact_match == pytest.approx(0.5) and report.lost_intent_rate == pytest.approx(0.5)
    assert report.per_label_f1["refund_request"] == pytest.approx(1.0)
    assert report.per_label_f1["shipping_status"] == pytest.approx(2 / 3)  # one of two found, no false positive
