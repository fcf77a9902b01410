from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from frontdesk import ConfigError, Decision, LabelScore, Router, TierTrace
from frontdesk.routing.targets import LabelTarget, QueueRoute, RoutedTarget, TargetsConfig, check_labels, fan_out
from frontdesk.routing.tools import Tool, ToolCatalog

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def decision(labels: list[str], confidence: float = 0.95, tier: str = "linear", flagged: bool = False, **kw) -> Decision:
    return Decision(
        id="dec1", text="I was charged twice and want a refund", labels=labels, confidence=confidence, tier=tier,
        escalated=tier != "linear", flagged=flagged, created_at=T0, **kw,
    )


@pytest.fixture()
def config() -> TargetsConfig:
    return TargetsConfig(
        labels={
            "billing": LabelTarget(queue=QueueRoute(queue="billing", priority=2, sla_minutes=30), model_tier="tool_use", tools_max=3),
            "refund": LabelTarget(queue=QueueRoute(queue="payments", priority=1, sla_minutes=15)),
            "smalltalk": LabelTarget(model_tier="simple"),
        },
        review_queue=QueueRoute(queue="human-review", priority=2, sla_minutes=120),
    )


def test_single_label_fans_out_to_one_target(config: TargetsConfig) -> None:
    [t] = fan_out(decision(["billing"]), config)
    assert isinstance(t, RoutedTarget)
    assert (t.id, t.parent_id, t.label, t.queue, t.priority) == ("dec1:0", "dec1", "billing", "billing", 2)
    assert t.sla_minutes == 30 and t.due_at == T0 + timedelta(minutes=30) and t.created_at == T0
    assert (t.model_tier, t.model) == ("tool_use", "tool-model")
    assert t.needs_review is False and t.confidence == 0.95 and t.text.startswith("I was charged")
    assert t.tools_max == 3 and t.tools is None
    assert RoutedTarget.model_validate_json(t.model_dump_json()) == t


def test_multi_label_fans_out_one_target_per_label_linked_by_parent_id(config: TargetsConfig) -> None:
    trace = [TierTrace(tier="linear", kind="linear", verdict="accept", labels=["billing", "refund"],
                       top=[LabelScore(label="billing", score=0.9), LabelScore(label="refund", score=0.7)])]
    d = decision(["billing", "refund", "billing"], confidence=0.7, trace=trace)
    targets = fan_out(d, config)
    assert [t.id for t in targets] == ["dec1:0", "dec1:1"]  # the repeated label is dropped
    assert {t.parent_id for t in targets} == {"dec1"}
    assert [(t.label, t.queue, t.priority) for t in targets] == [("billing", "billing", 2), ("refund", "payments", 1)]
    assert [t.due_at for t in targets] == [T0 + timedelta(minutes=30), T0 + timedelta(minutes=15)]
    # each label keeps its own probability from the answering tier's trace
    assert [t.confidence for t in targets] == [0.9, 0.7]
    assert len({t.id for t in targets}) == 2


def test_unlisted_label_goes_to_default_queue_without_sla(config: TargetsConfig) -> None:
    [t] = fan_out(decision(["card_lost"]), config)
    assert (t.queue, t.priority, t.sla_minutes, t.due_at) == ("triage", 3, None, None)
    assert (t.model_tier, t.model) == ("simple", "small-model")


def test_human_tier_goes_to_review_queue_with_best_guess(config: TargetsConfig) -> None:
    d = decision(["refund", "billing"], confidence=0.41, tier="human", flagged=True)
    [t] = fan_out(d, config)
    assert (t.id, t.label, t.queue, t.priority) == ("dec1:0", "refund", "human-review", 2)
    assert t.needs_review is True and t.due_at == T0 + timedelta(minutes=120)
    assert (t.model_tier, t.model) == ("reasoning", "large-model")
    # a human decision is never a cheap-model job, even when confident
    [t2] = fan_out(decision(["smalltalk"], confidence=0.99, tier="human"), config)
    assert t2.queue == "human-review" and t2.model_tier == "reasoning" and t2.needs_review


def test_decision_without_labels_goes_to_review(config: TargetsConfig) -> None:
    [t] = fan_out(decision([], confidence=0.0, tier="human", flagged=True), config)
    assert t.label is None and t.queue == "human-review" and t.needs_review


def test_flagged_decision_is_carried_as_needs_review(config: TargetsConfig) -> None:
    targets = fan_out(decision(["billing", "refund"], flagged=True), config)
    assert [t.needs_review for t in targets] == [True, True]
    assert [t.queue for t in targets] == ["billing", "payments"]  # flagged ≠ human: still the team queues


def test_model_tier_mapping_and_low_confidence_fallback(config: TargetsConfig) -> None:
    assert fan_out(decision(["smalltalk"], confidence=0.9), config)[0].model_tier == "simple"
    assert fan_out(decision(["billing"], confidence=0.9), config)[0].model_tier == "tool_use"
    low = fan_out(decision(["smalltalk"], confidence=0.59), config)[0]
    assert (low.model_tier, low.model) == ("reasoning", "large-model")
    at = fan_out(decision(["smalltalk"], confidence=0.6), config)[0]
    assert at.model_tier == "simple"  # the threshold itself is confident enough
    custom = config.model_copy(update={"low_confidence": 0.95, "most_capable_tier": "tool_use"})
    assert fan_out(decision(["smalltalk"], confidence=0.9), custom)[0].model == "tool-model"
    # multi-label: only the weak label is upgraded
    trace = [TierTrace(tier="linear", kind="linear", verdict="accept",
                       top=[LabelScore(label="smalltalk", score=0.9), LabelScore(label="card_lost", score=0.5)])]
    ts = fan_out(decision(["smalltalk", "card_lost"], confidence=0.5, trace=trace), config)
    assert [t.model_tier for t in ts] == ["simple", "reasoning"]


def test_fan_out_with_a_tool_catalog_lists_the_labels_tools(config: TargetsConfig) -> None:
    catalog = ToolCatalog([
        Tool(name=f"billing_tool_{i}", description=f"billing tool {i}", intents=["billing"]) for i in range(5)
    ] + [Tool(name="search_kb", description="search the help centre", intents=["*"])])
    billing, refund = fan_out(decision(["billing", "refund"]), config, catalog=catalog)
    assert billing.tools == ["billing_tool_0", "billing_tool_1", "billing_tool_2"]  # tools_max=3
    assert refund.tools == ["search_kb"]  # no refund tools: only the general one


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="priority"):
        QueueRoute(queue="billing", priority=0)
    with pytest.raises(ValidationError, match="sla_minute"):
        QueueRoute(queue="billing", priority=1, sla_minutes=0)
    with pytest.raises(ValidationError, match="extra"):
        LabelTarget(queue=None, model="x")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match=r"labels\.billing\.model_tier: unknown model tier 'huge'"):
        TargetsConfig(labels={"billing": LabelTarget(model_tier="huge")})
    with pytest.raises(ValidationError, match="most_capable_tier"):
        TargetsConfig(most_capable_tier="genius")
    with pytest.raises(ValidationError, match="low_confidence"):
        TargetsConfig(low_confidence=1.5)
    with pytest.raises(ConfigError, match=r"labels\.billing\.queue\.priority") as err:
        TargetsConfig.parse({"labels": {"billing": {"queue": {"queue": "billing", "priority": 9}}}})
    assert err.value.field == "targets"
    with pytest.raises(ConfigError, match="default_queue"):
        TargetsConfig.parse({"default_queue": "triage"})


def test_load_from_yaml_and_json(tmp_path: Path) -> None:
    y = tmp_path / "frontdesk.yaml"
    y.write_text(
        "targets:\n  labels:\n    billing:\n      queue: {queue: billing, priority: 1, sla_minutes: 5}\n"
        "  model_tiers: {simple: s, reasoning: r}\n  low_confidence: 0.5\n"
    )
    cfg = TargetsConfig.load(y)
    assert cfg.labels["billing"].queue == QueueRoute(queue="billing", priority=1, sla_minutes=5)
    assert cfg.model_tiers == {"simple": "s", "reasoning": "r"} and cfg.low_confidence == 0.5
    j = tmp_path / "targets.json"
    j.write_text(json.dumps(cfg.model_dump()))
    assert TargetsConfig.load(j) == cfg
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        TargetsConfig.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        TargetsConfig.load(tmp_path / "missing.yaml")


def test_check_labels_rejects_unknown_labels(config: TargetsConfig) -> None:
    check_labels(config, ["billing", "refund", "smalltalk", "other"])
    with pytest.raises(ConfigError, match=r"unknown label\(s\) \['smalltalk'\]") as err:
        check_labels(config, ["billing", "refund"])
    assert err.value.field == "targets.labels"


def test_fan_out_of_a_real_router_decision(router: Router) -> None:
    labels = list(router.labels)
    cfg = TargetsConfig(labels={labels[0]: LabelTarget(queue=QueueRoute(queue="team-a", priority=1, sla_minutes=10))})
    check_labels(cfg, router.labels)
    d = router.route("I was charged twice for the same order, please fix the invoice")
    targets = fan_out(d, cfg)
    assert len(targets) == (1 if d.tier == "human" else len(d.labels))
    assert all(t.parent_id == d.id and t.id.startswith(d.id + ":") for t in targets)
    assert all(t.needs_review == d.needs_review and t.created_at == d.created_at for t in targets)
