from __future__ import annotations

from pathlib import Path

import pytest

from frontdesk import ConfigError, Dataset, GatePolicy, Router
from frontdesk.tiers.rules import RulesTier, fold

RULES = {
    "rules": [
        {"label": "legal_threat", "keywords": ["lawyer*", "sue", "attorney", "small claims court", "advogado"]},
        {"label": "abuse", "patterns": [r"\bkill (?:you|u)\b", r"\bi know where you live\b"]},
    ]
}


@pytest.fixture(scope="module")
def tier(support: Dataset) -> RulesTier:
    return RulesTier("rules", RULES).fit(support)


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("I'm calling my LAWYER about this", "legal_threat"),
        ("my lawyers will hear about it", "legal_threat"),
        ("I will sue you!", "legal_threat"),
        ("Sue. Me. Then.", "legal_threat"),
        ("see you in small   claims\ncourt", "legal_threat"),
        ("vou falar com o meu ADVOGÁDO", "legal_threat"),  # diacritics-insensitive
        ("I know where you live", "abuse"),
    ],
)
def test_rules_match_case_and_diacritics_insensitively(tier: RulesTier, text: str, label: str) -> None:
    res = tier.score(text)
    assert res.ranked and res.ranked[0] == (label, 1.0) and res.rationale.startswith("matched")


@pytest.mark.parametrize("text", ["there is an issue with my suede jacket", "pursue a refund", "my order never arrived", "skill issue"])
def test_word_boundaries_prevent_false_matches(tier: RulesTier, text: str) -> None:
    res = tier.score(text)
    assert res.ranked == [] and res.rationale == "no rule matched"


def test_fold() -> None:
    assert fold("Ünïcödé ADVOGÁDO") == "unicode advogado"


def test_rules_preroute_before_the_model_and_others_pass_through(router: Router, support: Dataset, tmp_path: Path) -> None:
    rules = RulesTier("rules", RULES).fit(support)
    cascade = Router([rules, *router.tiers], {"rules": GatePolicy(threshold=0.1), **router.gates})
    d = cascade.route("I was double charged and I will sue you")
    assert d.labels == ["legal_threat"] and d.tier == "rules" and not d.escalated
    d = cascade.route("where is my parcel, order 1234?")
    assert d.tier in ("linear", "human") and d.trace[0].verdict == "escalate" and d.trace[0].reason == "the tier proposed no label"
    assert "rules" not in d.reason  # the empty rules step does not clutter the reason
    cascade.save(tmp_path / "m")
    loaded = Router.load(tmp_path / "m")
    assert loaded.route("talk to my attorney").labels == ["legal_threat"] and loaded.primary.name == "linear"


def test_train_with_rules_tier(support: Dataset) -> None:
    r = Router.train(support, ["rules", "linear"], tier_params={"rules": RULES})
    assert "legal_threat" in r.tiers[0].labels_ and "rules" not in r.curves and "linear" in r.curves
    assert r.route("lawyer!").tier == "rules"


def test_bad_rules_are_config_errors(support: Dataset) -> None:
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        RulesTier("rules", {"rules": [{"label": "x", "patterns": ["(unclosed"]}]})
    with pytest.raises(ConfigError, match="no keywords and no patterns"):
        RulesTier("rules", {"rules": [{"label": "x"}]})
    with pytest.raises(ConfigError, match="has no rules"):
        RulesTier("rules").fit(support)
